"""The ledger agent: owns the partitions of ``tally.movements.v1`` and of the RocksDB
``positions`` table, applies each movement once (the core's ``apply``) and sends what the
change calls for (``handlers``); the reservation-expiry timer; ``/ledger/{sku@branch}/``."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import faust
from aiokafka.partitioner import murmur2
from faust.types import TP, Message, TableT
from faust.types.assignor import PartitionAssignorT
from faust.web import Request, Response, View
from prometheus_client import Gauge

from agents import faust_internals
from agents.emitter import Emitter
from agents.handlers import Applied, Env, handle_movement_outputs
from agents.reading import read
from pipeline.ledger.apply import ApplyContext, apply
from pipeline.ledger.ats import available_to_sell
from pipeline.ledger.holds import expired_reservations
from pipeline.ledger.locations import Locations
from pipeline.ledger.movements import OP_HOLD, RESERVATION_EXPIRED, Movement, split_key
from pipeline.ledger.position import LedgerPosition
from pipeline.observability import logs
from pipeline.observability import metrics as m

if TYPE_CHECKING:
    from agents.bootstrap import Worker
    from agents.kits import KitsHandle
    from agents.settings import WorkerSettings

RESERVATIONS_ACTIVE = Gauge(
    "tally_reservations_active", "Soft reservations held on this worker's partitions."
)
EXPIRY_RESEND_S = 30.0  # an expiry sent but not yet applied is sent again after this long
HELD_FULL_SCAN_S = 300.0  # the expiry timer reads every position this often (see HeldKeys)


class HeldKeys:
    """Keys of this worker's positions that have holds, so the expiry timer reads those and not
    every position: a scan of 100,000 positions every 5 s cost 2.5 CPU-s per 30 s of an idle
    worker (~8 % of a core; 1M keys, most of one). The ledger agent, the one writer, notes each
    write; a full scan rebuilds the set after every assignment (and every ``full_scan_s``, as a
    safety net)."""

    def __init__(self, full_scan_s: float = HELD_FULL_SCAN_S) -> None:
        self.keys: set[bytes] = set()
        self.full_scan_s = full_scan_s
        self.full_due = True
        self.last_full = float("-inf")

    def written(self, key: bytes, position: LedgerPosition) -> None:
        if position.holds:
            self.keys.add(key)
        else:
            self.keys.discard(key)

    def reset(self) -> None:
        """Partitions moved: the set is rebuilt by the next full scan."""
        self.keys.clear()
        self.full_due = True

    def needs_full_scan(self, now: float) -> bool:
        return self.full_due or now - self.last_full >= self.full_scan_s

    def rebuilt(self, keys: set[bytes], now: float) -> None:
        self.keys = keys
        self.full_due = False
        self.last_full = now


def position_view(position: LedgerPosition, locations: Locations) -> dict[str, Any]:
    """The operator's view of one position: components, ATS with breakdown, version, times."""
    rules = locations.rules(position.branch)
    ats = available_to_sell(position, rules)
    return {
        "sku": position.sku,
        "branch": position.branch,
        "components": position.components(),
        "pending_entries": len(position.pending),
        "safety_buffer_override": position.safety_buffer_override,
        "available_to_sell": ats.value,
        "breakdown": ats.as_dict(),
        "version": position.version,
        "on_hand_as_of": position.on_hand_as_of,
        "snapshot_as_of": dict(position.snapshot_as_of),
        "last_applied": dict(position.last_applied),
        "last_published_ats": position.last_published_ats,
        "unpublished_since": position.unpublished_since,
        "dedupe_marks": len(position.marks),
        "holds": {key: {"kind": h.kind, "quantity": h.quantity, "expires_at": h.expires_at,
                        "payment": h.payment} for key, h in position.holds.items()},
    }


class Ledger:
    """The ledger agent's step for one movement record."""

    def __init__(self, env: Env, positions: MutableMapping[bytes, bytes],
                 settings: WorkerSettings, kits: KitsHandle, held: HeldKeys) -> None:
        self.env = env
        self.positions = positions
        self.settings = settings
        self.kits = kits
        self.held = held
        self.applied = Applied()  # refilled per record (see Applied)

    async def apply_movement(self, msg: Message, value: Any) -> None:
        """Apply one movement record (``tally.movements.v1``) to its position."""
        try:
            movement = Movement.from_json(value)
        except (ValueError, KeyError, TypeError) as exc:
            await self.env.emitter.dead_letter("bad_movement", f"{type(exc).__name__}: {exc}",
                                               msg)
            return
        await self.apply(msg, movement, msg.key)  # type: ignore[arg-type]  # raw keys: bytes

    async def apply(self, msg: Message, movement: Movement, key: bytes) -> None:
        """Apply ``movement`` (from the record ``msg``, being processed on the partition of
        ``key`` in the positions table) and send what the change calls for."""
        env = self.env
        started = time.perf_counter()
        raw = self.positions.get(key)
        position = LedgerPosition.from_json(raw) if raw is not None else None
        rules = env.locations.rules(movement.branch)
        settings = self.settings
        ctx = ApplyContext(
            now=time.time(), rules=rules,
            mapping=env.catalog.mapping_for(rules, movement.sku),
            dedupe_retention_s=settings.dedupe_retention_s,
            unmapped_report_interval_s=settings.unmapped_report_interval_s,
            reservation_ttl_s=settings.reservation_ttl_s,
            min_publish_threshold=self.kits.min_publish_threshold(movement.sku,
                                                                  movement.branch),
        )
        new, outputs = apply(position, movement, ctx)
        logs.correlation_id.set(movement.mark)
        # Written even for a duplicate: a crash may have left the local store ahead of the
        # changelog, and rewriting makes the changelog catch up (see docs/ledger.md).
        self.positions[key] = new.to_json()
        self.held.written(key, new)
        m.ATS_COMPUTE_SECONDS.observe(time.perf_counter() - started)
        await handle_movement_outputs(env, self.applied, msg, movement, new, outputs)
        await self.kits.after_apply(position, new, rules, outputs)


class HomePartition:
    """Whether a movement may be applied where its source record was read (one hop, no
    re-keying through ``tally.movements.v1``): only when that record's partition is the one the
    movements topic's partitioner (Java's and aiokafka's murmur2, as faust sends) gives the
    movement's key, and this worker is the active owner of that partition of the positions
    table. Then the table write and its changelog land on the key's own partition and the key
    keeps one writer. Checked per movement, never assumed: librdkafka's default partitioner
    (CRC32) puts the same key on another partition, other keys share the record, and a source
    topic may have another partition count."""

    def __init__(self, assignor: PartitionAssignorT, changelog_topic: str,
                 partitions: int) -> None:
        """``assignor``: the app's (``is_active``); ``changelog_topic``: the positions
        table's; ``partitions``: the movements topic's (and the table's) partition count."""
        self.assignor = assignor
        self.changelog_topic = changelog_topic
        self.partitions = partitions

    def of(self, key: bytes) -> int:
        """The movements topic's partition for ``key`` (aiokafka's ``DefaultPartitioner``)."""
        return (murmur2(key) & 0x7FFFFFFF) % self.partitions

    def here(self, key: bytes, partition: int) -> bool:
        """True when a movement keyed ``key`` read on ``partition`` may be applied there."""
        return (self.of(key) == partition
                and self.assignor.is_active(TP(self.changelog_topic, partition)))


class ReservationExpiry:
    """Sends ``reservation.expired`` for due holds on this worker's partitions, so they are
    released even when no further event arrives; the ledger agent (the single writer of the
    key) applies them, and the expiry mark makes a repeat a no-op."""

    def __init__(self, app: faust.App, positions: TableT[bytes, bytes], held: HeldKeys,
                 emitter: Emitter, catalog_ready: Any) -> None:
        self.app = app
        self.positions = positions
        self.held = held
        self.emitter = emitter
        self.catalog_ready = catalog_ready
        self.sent: dict[tuple[bytes, str], float] = {}

    def _with_holds(self) -> list[tuple[bytes, bytes | None]]:
        """(key, raw) of the positions that may hold holds: every position after a
        rebalance (and now and then), else those ``held`` knows of."""
        held, positions = self.held, self.positions
        if held.needs_full_scan(time.monotonic()) and faust_internals.tables_recovered(self.app):
            with_holds: list[tuple[bytes, bytes | None]] = [
                (key, raw) for key, raw in positions.items()
                if raw is not None and b'"h":' in raw]  # no parse for most positions
            held.rebuilt({key for key, _ in with_holds}, time.monotonic())
            return with_holds
        return [(key, positions.get(key)) for key in list(held.keys)]

    async def run(self) -> None:
        if self.app.rebalancing or not self.catalog_ready.is_set():
            return
        now = time.time()
        active = 0
        for key, raw in self._with_holds():
            if raw is None or b'"h":' not in raw:
                continue
            position = LedgerPosition.from_json(raw)
            active += sum(1 for h in position.holds.values() if h.kind == "reservation")
            await self._expire(key, position, now)
        RESERVATIONS_ACTIVE.set(active)
        for k in [k for k, at in self.sent.items() if now - at > 10 * EXPIRY_RESEND_S]:
            del self.sent[k]

    async def _expire(self, key: bytes, position: LedgerPosition, now: float) -> None:
        """Send the expiry of each due reservation of ``position`` not sent in the last
        ``EXPIRY_RESEND_S``."""
        for ref, _ in expired_reservations(position, now):
            if now - self.sent.get((key, ref), 0.0) < EXPIRY_RESEND_S:
                continue
            self.sent[(key, ref)] = now
            movement = Movement(
                sku=position.sku, branch=position.branch, mark=f"tally:expire:{ref}",
                source="tally", type=RESERVATION_EXPIRED, occurred_at=now, op=OP_HOLD,
                ref=ref, observed_at=now,
            )
            await self.emitter.send("movements", key, movement.to_json())


def register(w: Worker, kits: KitsHandle) -> None:
    """The ``ledger`` agent, the expiry timer and ``/ledger/{sku@branch}/``."""
    app, positions, catalog = w.app, w.positions, w.catalog
    step = Ledger(w.env, positions, w.settings, kits, w.held).apply_movement

    @app.agent(w.movements, name="agents.worker.ledger")  # its name before the split
    async def ledger(stream: faust.StreamT[Any]) -> None:
        # Waits for the catalog while holding an event, never before iterating.
        await read(stream, "ledger", step, reader=w.reader, guard=w.guard, ready=catalog.ready,
                   processed=w.lag.processed)

    expiry = ReservationExpiry(app, positions, w.held, w.emitter, catalog.ready)

    @app.timer(interval=w.settings.reservation_scan_s)
    async def expire_reservations() -> None:
        await expiry.run()

    @app.page("/ledger/{key}/")
    @app.table_route(table=positions, match_info="key")
    async def ledger_lookup(web: View, request: Request, key: str) -> Response:
        raw = positions.get(key.encode())
        if raw is None:
            sku, branch = split_key(key)
            return web.json({"error": f"no ledger position for {sku} at {branch}"}, status=404)
        return web.json(position_view(LedgerPosition.from_json(raw), w.locations))
