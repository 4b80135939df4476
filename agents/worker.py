"""The ledger worker: thin faust adapters around the pure ledger core.

``intake`` reads every source topic as raw bytes, decodes and validates with the core, dead-letters
rejects and re-keys good events to ``tally.movements.v1`` by ``sku@branch``. ``ledger`` owns the
matching partitions of the RocksDB ``positions`` table and applies each movement once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from agents.catalog_follower import CatalogFollower
from agents.guard import RecordGuard
from agents.kits import register_kits
from agents.reading import InOrderReader
from agents.settings import WorkerSettings
from pipeline.infra.kafka_topics import COMPACTED, create_missing, ensure_topics
from pipeline.ledger import codec
from pipeline.ledger.apply import ApplyContext, apply
from pipeline.ledger.ats import available_to_sell
from pipeline.ledger.decode import decode_event, load_schemas
from pipeline.ledger.events import Rejection
from pipeline.ledger.holds import expired_reservations
from pipeline.ledger.locations import Locations, load_locations
from pipeline.ledger.movements import (
    OP_HOLD,
    RESERVATION_EXPIRED,
    Movement,
    split_key,
    to_movements,
)
from pipeline.ledger.outputs import (
    BelowZero,
    ConflictingDuplicate,
    Duplicate,
    LowStock,
    PublishAvailable,
    ReportUnmapped,
    ReservationExpired,
    ReservationShort,
    SafetyBufferBreach,
    StaleSnapshotIgnored,
    TransferShortfall,
    UnknownHold,
)
from pipeline.ledger.position import LedgerPosition
from pipeline.observability import health, logs
from pipeline.observability import metrics as m
from pipeline.observability.health import Readiness

log = logging.getLogger("tally.worker")

# Omnichannel metrics (conventions of pipeline/observability/metrics.py).
RESERVATIONS_ACTIVE = Gauge(
    "tally_reservations_active", "Soft reservations held on this worker's partitions."
)
RESERVATIONS_EXPIRED = Counter(
    "tally_reservations_expired_total", "Soft reservations released by the expiry timer."
)
RESERVATION_RELEASE_LAG = Histogram(
    "tally_reservation_release_lag_seconds", "Time from a reservation's expiry to its release.",
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
RESERVATIONS_SHORT = Counter(
    "tally_reservations_short_total", "Reservations that asked for more than was available."
)
HOLDS_UNKNOWN = Counter(
    "tally_holds_unknown_total", "Releases, confirmations or receipts naming an unknown hold.",
    ["kind"],
)
CONFLICTING_DUPLICATES = Counter(
    "tally_conflicting_duplicates_total",
    "Lines sent again with the same source, transaction id and line but other content.",
    ["source"],
)
TRANSFER_SHORTFALL_UNITS = Counter(
    "tally_transfer_shortfall_units_total", "Units still in transit when a transfer was closed."
)
EXPIRY_RESEND_S = 30.0  # an expiry sent but not yet applied is sent again after this long
HELD_FULL_SCAN_S = 300.0  # the expiry timer reads every position this often (see HeldKeys)
REBALANCE_GRACE_S = 15.0  # a rebalance shorter than this does not make the worker unready
NO_PROGRESS_S = 60.0  # a partition with records waiting and none processed this long: unready


class ConsumerLag:
    """Consumer lag per agent, in records and in time (``tally_consumer_lag_*``)."""

    def __init__(self) -> None:
        self.last: dict[str, dict[Any, tuple[int, float]]] = {"intake": {}, "ledger": {}}
        self.gauges = {c: (m.LEDGER_LAG_SECONDS.labels(c), m.CONSUMER_LAG_OFFSETS.labels(c))
                       for c in self.last}

    def processed(self, consumer: str, msg: Any) -> None:
        self.last[consumer][msg.tp] = (msg.offset, msg.timestamp)

    def report(self, kafka_consumer: Any) -> None:
        """Records behind = highwater - next offset, over the partitions each agent has read;
        time behind = age of the last record processed while records wait (0 when caught up)."""
        try:
            assigned = kafka_consumer.assignment()
        except Exception:  # not started or rebalancing: report next time
            return
        for consumer, last in self.last.items():
            behind, oldest = 0, None
            for tp in assigned:
                if tp not in last:
                    continue
                highwater = kafka_consumer.highwater(tp)
                offset, ts = last[tp]
                if highwater is None:
                    continue
                waiting = max(0, highwater - offset - 1)
                behind += waiting
                if waiting and ts is not None:
                    oldest = ts if oldest is None else min(oldest, ts)
            seconds, records = self.gauges[consumer]
            records.set(behind)
            seconds.set(max(0.0, time.time() - oldest) if oldest is not None else 0.0)


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


def history_record(movement: Movement, position: LedgerPosition, outputs: list[Any]) -> bytes:
    """One audit-trail entry: the movement applied and the position it produced."""
    return codec.dumps({
        "sku": position.sku, "branch": position.branch, "source": movement.source,
        "type": movement.type, "mark": movement.mark, "op": movement.op,
        "changes": dict(movement.changes), "quantity": movement.quantity,
        "as_of": movement.as_of, "occurred_at": movement.occurred_at,
        "observed_at": movement.observed_at, "applied_at": time.time(),
        "version": position.version, "components": position.components(),
        "outcome": sorted({type(o).__name__ for o in outputs}) or ["Applied"],
    })


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


class TallyWorker(faust.Worker):
    """faust's worker without the terminal spinner: at log levels from WARN up the spinner sets
    the root logger to DEBUG so that it spins on every record, which costs ~7% of the CPU."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None


def build_app(settings: WorkerSettings) -> faust.App:
    """Create the faust app with its tables, agents and web pages."""
    locations = load_locations(settings.locations_file)
    schemas = load_schemas()
    topics = settings.topics
    system_of_topic = {topic: system for system, topic in topics.sources().items()}

    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        broker_commit_interval=settings.commit_interval_s,
        # Batch produce requests (movements, changelog, pushes, history): without linger every
        # record is its own request and socket writes dominate the profile.
        producer_linger=settings.producer_linger_ms / 1000.0,
        consumer_auto_offset_reset="earliest",
        # A killed worker's partitions move after this long; faust's default is 60 s.
        broker_session_timeout=settings.session_timeout_s,
        consumer_group_instance_id=settings.instance_id,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 4),
        web_bind=settings.web_bind,
        web_port=settings.web_port,
        web_host=settings.web_host,
        Worker=TallyWorker,
        logging_config=logs.dict_config("worker"),  # JSON logs once faust sets up logging
    )
    catalog = CatalogFollower(settings.bootstrap, topics.catalog)

    def raw_topic(*names: str) -> faust.TopicT:
        return app.topic(*names, key_serializer="raw", value_serializer="raw")

    # Input topics are read through the reader, which owns their commits (agents/reading.py).
    reader = InOrderReader(app, settings.bootstrap, [
        *topics.sources().values(), topics.movements, topics.kit_components],
        contiguous=[topics.movements, topics.kit_components])
    sources = reader.topic(*topics.sources().values())
    movements = reader.topic(topics.movements, partitions=settings.partitions)
    push_topic = raw_topic(topics.shopify_push)
    dlq = raw_topic(topics.dead_letter)
    unmapped = raw_topic(topics.unmapped)
    low_stock = raw_topic(topics.low_stock)
    history = raw_topic(topics.history)
    readiness = Readiness("worker")
    readiness.set("kafka", False, "no Kafka metadata answer yet")
    guard = RecordGuard(dlq, readiness=readiness)
    guard.register("intake", "ledger", "kits")
    positions = app.Table(
        "positions", partitions=settings.partitions, key_type=bytes, value_type=bytes,
        options={"block_cache_size": settings.block_cache_bytes},
    )
    held = HeldKeys()
    kits = register_kits(app, settings, locations=locations, catalog=catalog, reader=reader,
                         guard=guard, push_topic=push_topic, unmapped_topic=unmapped)

    @app.task
    async def follow_catalog() -> None:
        await catalog.run()

    lag = ConsumerLag()

    @app.on_worker_init.connect
    def take_over_reading(app_: Any, **kwargs: Any) -> None:
        reader.install()  # before the consumer starts fetching

    @app.on_partitions_revoked.connect
    async def commit_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        # Hand over exactly what was processed; the next owner starts there.
        await reader.commit(revoked)
        reader.restart(revoked)
        held.reset()

    @app.on_partitions_assigned.connect
    async def restart_assigned(app_: Any, assigned: Any, **kwargs: Any) -> None:
        # Every assignment starts again at the group's committed offset.
        reader.restart(assigned)
        held.reset()

    @app.timer(interval=settings.commit_interval_s)
    async def commit_processed() -> None:
        await reader.commit()

    @app.timer(interval=1.0)
    async def watch_reading() -> None:
        if not app.rebalancing and catalog.ready.is_set():  # agents hold records until ready
            await reader.watch()
        report_readiness()

    def report_readiness() -> None:
        readiness.set("catalog", catalog.ready.is_set(), "catalog topic not read to its end yet")
        readiness.set("tables_recovered", app.tables.recovery.completed.is_set(),
                      "table recovery (changelog replay) under way")
        readiness.set("assignment", not app.rebalancing, "consumer group rebalancing",
                      grace_s=REBALANCE_GRACE_S)
        stuck = reader.stuck(time.monotonic(), NO_PROGRESS_S)
        readiness.set("progress", not stuck, f"records wait but none was processed for "
                      f"{NO_PROGRESS_S:.0f} s: {', '.join(stuck[:5])}")

    @app.task
    async def watch_health() -> None:
        health.LoopWatchdog(readiness).start()
        # kill -USR1 <pid>: every task's stack in the log, to see where a stuck worker waits.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, logs.dump_tasks)
        await health.probe_kafka(readiness, settings.bootstrap)

    @app.timer(interval=5.0)
    async def report_consumer_lag() -> None:
        lag.report(app.consumer)

    @app.agent(sources)
    async def intake(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            if not await reader.admit(msg):
                continue
            lag.processed("intake", msg)
            await guard.run("intake", msg, take_in, msg, event.value)
            reader.done(msg)

    async def take_in(msg: Any, value: Any) -> None:
        """Validate one source record: dead-letter it, or send its movements."""
        system = system_of_topic.get(msg.topic, "unknown")
        m.EVENTS_RECEIVED.labels(system).inc()
        raw = value if isinstance(value, bytes) else None
        result = (
            decode_event(raw, source_topic_system=system, known_locations=locations,
                         schemas=schemas)
            if raw is not None
            else Rejection("empty_record", "the record has no value (tombstone)")
        )
        if isinstance(result, Rejection):
            m.EVENTS_REJECTED.labels(system, result.code).inc()
            await guard.send(result.code, result.detail, msg)
            return
        for movement in to_movements(result, observed_at=msg.timestamp):
            await movements.send(key=movement.key.encode(), value=movement.to_json())

    async def publish(out: PublishAvailable, correlation_id: str) -> None:
        key, value = out.push_record(emitted_at=time.time(), correlation_id=correlation_id)
        await push_topic.send(key=key, value=value)
        m.PUSHES_EMITTED.inc()

    async def republish_current(position: LedgerPosition, correlation_id: str) -> None:
        """After a redelivered (duplicate) movement, send the current value again: the push
        emitted the first time may have been lost in a crash; the sink drops repeats."""
        rules = locations.rules(position.branch)
        mapping = catalog.catalog.mapping_for(rules, position.sku)
        if mapping is None or not rules.fulfills_online or position.last_published_ats is None:
            return
        await publish(PublishAvailable(
            sku=position.sku, branch=position.branch, shop=mapping.shop,
            inventory_item_id=mapping.inventory_item_id, location_id=mapping.location_id,
            available=position.last_published_ats, ledger_version=position.version,
            oldest_event_at=position.unpublished_since or time.time(),
        ), correlation_id)

    @app.agent(movements)
    async def ledger(stream: faust.StreamT) -> None:
        async for event in stream.events():
            # Wait for the catalog while holding an event, never before iterating.
            if not catalog.ready.is_set():
                await catalog.ready.wait()
            msg = event.message
            if not await reader.admit(msg):
                continue
            lag.processed("ledger", msg)
            await guard.run("ledger", msg, apply_movement, msg, event.value)
            reader.done(msg)

    async def apply_movement(msg: Any, value: Any) -> None:
        """Apply one movement to its position and send what the change calls for."""
        try:
            movement = Movement.from_json(value)
        except (ValueError, KeyError, TypeError) as exc:
            await guard.send("bad_movement", f"{type(exc).__name__}: {exc}", msg)
            return
        started = time.perf_counter()
        key = msg.key
        raw = positions.get(key)
        position = LedgerPosition.from_json(raw) if raw is not None else None
        rules = locations.rules(movement.branch)
        ctx = ApplyContext(
            now=time.time(), rules=rules,
            mapping=catalog.catalog.mapping_for(rules, movement.sku),
            dedupe_retention_s=settings.dedupe_retention_s,
            unmapped_report_interval_s=settings.unmapped_report_interval_s,
            reservation_ttl_s=settings.reservation_ttl_s,
            min_publish_threshold=kits.min_publish_threshold(movement.sku, movement.branch),
        )
        new, outputs = apply(position, movement, ctx)
        correlation_id = movement.mark
        logs.correlation_id.set(correlation_id)
        # Written even for a duplicate: a crash may have left the local store ahead of the
        # changelog, and rewriting makes the changelog catch up (see docs/ledger.md).
        positions[key] = new.to_json()
        held.written(key, new)
        m.ATS_COMPUTE_SECONDS.observe(time.perf_counter() - started)
        await handle_outputs(msg, outputs, new, movement, correlation_id)
        await kits.after_apply(position, new, rules, outputs)

    async def handle_outputs(msg: Any, outputs: list[Any], position: LedgerPosition,
                             movement: Movement, correlation_id: str) -> None:
        duplicate = False
        for out in outputs:
            if isinstance(out, PublishAvailable):
                await publish(out, correlation_id)
            elif isinstance(out, Duplicate):
                duplicate = True
                m.EVENTS_DUPLICATE.labels(movement.source).inc()
            elif isinstance(out, ConflictingDuplicate):
                CONFLICTING_DUPLICATES.labels(movement.source).inc()
                await guard.send("conflicting_duplicate", (
                    f"{out.mark} was applied with content digest {out.applied_digest}; this "
                    f"line has {out.digest}: refused, the first stays applied"), msg, extra={
                        "mark": out.mark, "applied_digest": out.applied_digest,
                        "digest": out.digest})
                return
            elif isinstance(out, ReportUnmapped):
                m.UNMAPPED.inc()
                await unmapped.send(key=position.key.encode(), value=json.dumps({
                    "sku": out.sku, "branch": out.branch, "shop": out.shop,
                    "available": out.available, "at": time.time(),
                }).encode())
            elif isinstance(out, StaleSnapshotIgnored):
                m.STALE_SNAPSHOTS.labels(movement.source).inc()
            elif isinstance(out, SafetyBufferBreach):
                m.SAFETY_BUFFER_BREACHES.inc()
            elif isinstance(out, BelowZero):
                m.BELOW_ZERO.inc()
            elif isinstance(out, ReservationExpired):
                RESERVATIONS_EXPIRED.inc()
                RESERVATION_RELEASE_LAG.observe(out.lag_s)
            elif isinstance(out, ReservationShort):
                RESERVATIONS_SHORT.inc()
            elif isinstance(out, UnknownHold):
                HOLDS_UNKNOWN.labels(out.kind).inc()
            elif isinstance(out, TransferShortfall):
                TRANSFER_SHORTFALL_UNITS.inc(out.quantity)
                log.warning("transfer %s closed %d units short at %s", out.ref, out.quantity,
                            out.branch)
            elif isinstance(out, LowStock):
                await low_stock.send(key=position.key.encode(), value=json.dumps(
                    {k: getattr(out, k) for k in out.__slots__} | {"at": time.time()}
                ).encode())
        if duplicate:
            await republish_current(position, correlation_id)
        else:
            m.EVENTS_APPLIED.labels(movement.source).inc()
            await history.send(key=position.key.encode(), value=history_record(
                movement, position, outputs))

    expiry_sent: dict[tuple[bytes, str], float] = {}

    @app.timer(interval=settings.reservation_scan_s)
    async def expire_reservations() -> None:
        """Send ``reservation.expired`` for due holds on this worker's partitions, so they are
        released even when no further event arrives; the ledger agent (the single writer of
        the key) applies them, and the expiry mark makes a repeat a no-op."""
        if app.rebalancing or not catalog.ready.is_set():
            return
        now = time.time()
        active = 0
        if held.needs_full_scan(time.monotonic()) and app.tables.recovery.completed.is_set():
            with_holds = [(key, raw) for key, raw in positions.items()
                          if raw is not None and b'"h":' in raw]  # no parse for most positions
            held.rebuilt({key for key, _ in with_holds}, time.monotonic())
        else:
            with_holds = [(key, positions.get(key)) for key in list(held.keys)]
        for key, raw in with_holds:
            if raw is None or b'"h":' not in raw:
                continue
            position = LedgerPosition.from_json(raw)
            active += sum(1 for h in position.holds.values() if h.kind == "reservation")
            for ref, _ in expired_reservations(position, now):
                if now - expiry_sent.get((key, ref), 0.0) < EXPIRY_RESEND_S:
                    continue
                expiry_sent[(key, ref)] = now
                movement = Movement(
                    sku=position.sku, branch=position.branch, mark=f"tally:expire:{ref}",
                    source="tally", type=RESERVATION_EXPIRED, occurred_at=now, op=OP_HOLD,
                    ref=ref, observed_at=now,
                )
                await movements.send(key=key, value=movement.to_json())
        RESERVATIONS_ACTIVE.set(active)
        for k in [k for k, at in expiry_sent.items() if now - at > 10 * EXPIRY_RESEND_S]:
            del expiry_sent[k]

    @app.page("/ledger/{key}/")
    @app.table_route(table=positions, match_info="key")
    async def ledger_lookup(web: View, request: Request, key: str) -> Response:
        raw = positions.get(key.encode())
        if raw is None:
            sku, branch = split_key(key)
            return web.json({"error": f"no ledger position for {sku} at {branch}"}, status=404)
        return web.json(position_view(LedgerPosition.from_json(raw), locations))

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        status, body = readiness.liveness()
        return web.json(body, status=status)

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        report_readiness()
        status, body = readiness.report()
        return web.json(body, status=status)

    app.tally_positions = positions  # type: ignore[attr-defined]
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """``tally worker``: create topics if needed, then run the faust worker."""
    parser = argparse.ArgumentParser(prog="tally worker", description=main.__doc__)
    parser.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info",
                                                                "debug"])
    from pipeline.settings import add_flags, load

    args = add_flags(parser, WorkerSettings).parse_args(list(argv or []))
    settings = load(WorkerSettings, flags=args)
    logs.configure("worker")
    ensure_topics(settings.bootstrap, settings.topics, settings.partitions,
                  settings.replication_factor)
    app = build_app(settings)
    # The tables' changelogs exist before the consumer subscribes: created by faust at start, a
    # changelog can be missing from the consumer's first metadata, and every table write then
    # fails with PartitionsMismatch until the metadata is refreshed minutes later.
    create_missing(settings.bootstrap, {
        table.changelog_topic_name: (table.partitions or settings.partitions, COMPACTED)
        for table in app.tables.values()}, settings.replication_factor)
    sys.argv = ["tally-worker", "worker", f"--loglevel={args.loglevel}",
                f"--web-port={settings.web_port}", f"--web-bind={settings.web_bind}",
                f"--web-host={settings.web_host}"]
    app.main()
    return 0
