"""``tally sink``: the asyncio shell around the sink core (see docs/sink.md).

Every decision is the core's: ``core.SinkCore`` (what a record changes, what a shop sends next,
what an answer resolves, backpressure) and ``steps`` (what to do with each Shopify answer); this
module only executes them (Kafka, HTTP, sleeps, metrics, logs). One confluent-kafka consumer
(group member, manual commits) feeds the core; one asyncio task per shop flushes, reads levels and
calls Shopify, so a throttled or failing shop never delays another. Offsets are committed only when
the core's OffsetTracker says a record is done *and* the acks / dead letters produced for it are
flushed (producer.flush before every commit).

Every Shopify request has a deadline (``TALLY_SINK_HTTP_TIMEOUT_S``, connect to last byte); a
request that misses it counts as a transport timeout, and the retry after a transport failure
waits at most that long again, so a hung Shopify freezes its own shop's loop for at most one
deadline at a time and never another shop's. Backpressure: a partition holding more than
``TALLY_SINK_MAX_HELD_RECORDS`` unfinished records (a halted or slow shop) is paused and resumed
below half of it, so memory is bounded by keys plus that many records per partition.
``/readyz`` (``pipeline.observability.health``): 503 while Kafka is unreachable, a shop is halted,
or the sink is starting; ``/healthz``: 503 only while the event loop is blocked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from pipeline.infra.kafka_read import latest_by_key
from pipeline.infra.kafka_write import producer_config
from pipeline.infra.outbox import Outbox
from pipeline.messages import DeadLetter, ShopifyAck
from pipeline.observability import health, heap, logs
from pipeline.observability import metrics as m
from pipeline.settings import add_flags, load
from pipeline.shopify.backoff import Backoff
from pipeline.shopify.budget import CostReport
from pipeline.shopify.client import HttpResult, ShopClient
from pipeline.shopify.levels import levels_query
from pipeline.shopify.shops import ShopConfig
from pipeline.sink import steps
from pipeline.sink.batching import BatchItem, BatchRequest, build_request
from pipeline.sink.coalescing import Coalescer, Entry
from pipeline.sink.compare_and_set import CasPolicy, KeyState, Push
from pipeline.sink.config import SinkSettings
from pipeline.sink.core import (
    AckedItem,
    Again,
    DeadItem,
    FlushPolicy,
    Idle,
    Pace,
    ReadLevels,
    Send,
    ShopState,
    SinkCore,
)
from pipeline.sink.offsets import OffsetTracker, SourceRef
from pipeline.sink.records import ack_record, parse_ack_record, parse_push_record
from pipeline.sink.responses import Outcome, classify, classify_transport_error

log = logging.getLogger("tally.sink")
KAFKA_LOG = logging.getLogger("tally.sink.kafka")  # librdkafka's own lines, as JSON logs
SERVICE = "sink"
READ_STALL_S = 30.0  # a read loop silent this long (e.g. stuck in a client call): not ready


REASSERTS = Counter(
    "tally_sink_reasserts_total", "Forced re-checks (reconciliation --fix) accepted, by shop.",
    ["shop"],
)
PAUSED_PARTITIONS = m.SINK_PAUSED_PARTITIONS


# -- per shop --------------------------------------------------------------------------------


@dataclass
class ShopWorker:
    """A shop's effects: its HTTP client, its task and the event that wakes it. What the sink
    knows of the shop is ``state`` (the core's)."""

    config: ShopConfig
    client: ShopClient
    state: ShopState
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    busy: int = 0  # calls (sends or level reads) in flight

    @property
    def domain(self) -> str:
        return self.config.domain

    @property
    def halted(self) -> str | None:
        return self.state.halted


@dataclass
class SinkStats:
    calls: int = 0
    items_acked: int = 0
    throttled: int = 0
    retries: int = 0
    reads: int = 0
    dead_letters: int = 0
    drift: int = 0
    cost_requested: float = 0.0
    cost_actual: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)


class Sink:
    """The running sink. ``await start()`` / ``await stop()``, or ``async with run_sink(...)``."""

    def __init__(self, settings: SinkSettings, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.clock, self.wall = clock, wall
        self.core = SinkCore.for_shops(
            [shop.domain for shop in settings.shops],
            policy=CasPolicy(hold_for=settings.hold_for_s),
            flush=FlushPolicy(settings.window_s, settings.max_reads_per_call,
                              settings.max_calls_in_flight,
                              quick_window_s=settings.quick_window_s or None))
        self.backoff = Backoff(base=settings.backoff_base_s, cap=settings.backoff_cap_s)
        self.workers: dict[str, ShopWorker] = {}
        self.stats = SinkStats()
        self.ready = False
        self._stopping = False
        self._last_commit = 0.0
        self._superseded_seen = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: Consumer | None = None
        self._outbox: Outbox | None = None
        self._web: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.readiness = health.Readiness(SERVICE)
        self.readiness.set("started", False, "starting: reading the acks topic")
        self.readiness.set("kafka", False, "no Kafka metadata answer yet")
        self._watchdog: health.LoopWatchdog | None = None
        self.paused: set[tuple[str, int]] = set()  # partitions paused for backpressure
        self._last_read = self.clock()  # the read loop's last round, for ``read_loop``

    @property
    def offsets(self) -> OffsetTracker:
        return self.core.offsets

    @property
    def coalescer(self) -> Coalescer:
        return self.core.coalescer

    @property
    def states(self) -> dict[str, KeyState]:
        return self.core.states

    # -- lifecycle ---------------------------------------------------------------------------

    def _error_cb(self) -> Callable[[KafkaError], None]:
        """librdkafka's error callback (on a client thread) → the readiness, on the loop."""
        assert self._loop is not None
        loop, on_error = self._loop, health.kafka_error_callback(self.readiness)

        def error_cb(err: KafkaError) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed while stopping
                loop.call_soon_threadsafe(on_error, err)
        return error_cb

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        s = self.settings
        self._watchdog = health.LoopWatchdog(self.readiness)
        self._watchdog.start()
        if s.web_port is not None:
            await self._start_web()
        self._outbox = Outbox(producer_config(
            s.bootstrap, client_id=s.client_id,
            extra={"error_cb": self._error_cb(), "logger": KAFKA_LOG}), service=SERVICE)
        seeded = await self._read_acks_until_read()
        for key, raw in seeded.items():
            try:
                _, state = parse_ack_record(raw)
            except (ValueError, TypeError, KeyError):
                log.warning("ignoring malformed acks record", extra={"fields": {"key": key}})
                continue
            self.core.seed(key, state)
        for shop in s.shops:
            self.workers[shop.domain] = ShopWorker(
                shop, ShopClient(shop, s.http_timeout_s), self.core.shops[shop.domain])
        self._consumer = Consumer({
            "bootstrap.servers": s.bootstrap, "group.id": s.group_id, "client.id": s.client_id,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
            "reconnect.backoff.max.ms": 1000, "error_cb": self._error_cb(), "logger": KAFKA_LOG,
            "on_commit": self._on_commit,
        })
        self._consumer.subscribe([self.topics.shopify_push], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke)
        for w in self.workers.values():
            w.task = asyncio.create_task(self._shop_loop(w), name=f"sink-shop-{w.domain}")
            self._tasks.append(w.task)
        self._last_read = self.clock()
        self._tasks.append(asyncio.create_task(self._kafka_loop(), name="sink-kafka"))
        self._tasks.append(asyncio.create_task(self._probe_kafka(), name="sink-kafka-probe"))
        self.ready = True
        self.readiness.set("started", True)
        self.readiness.set("kafka", True)  # the acks topic was just read
        log.info("sink started", extra={"fields": {"shops": list(self.workers),
                                                   "seeded_keys": len(seeded)}})

    async def _read_acks_until_read(self) -> dict[str, bytes]:
        """The acks topic read to its end, tried again (backoff up to 5 s) while Kafka cannot
        answer: a sink started during a broker outage waits, not ready, instead of exiting."""
        delay = 0.5
        while True:
            try:
                return await asyncio.to_thread(latest_by_key, self.settings.bootstrap,
                                               self.topics.shopify_acks, timeout=30.0,
                                               group_prefix="tally-sink-seed")
            except Exception as exc:  # KafkaException (broker away, leader moving), timeout
                self.readiness.set("started", False,
                                   f"starting: acks topic not readable yet: {exc}"[:300])
                log.warning("acks topic not readable yet; retrying",
                            extra={"fields": {"error": str(exc)[:300], "retry_in_s": delay}})
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    async def stop(self) -> None:
        self._stopping = True
        self.ready = False
        self.readiness.set("started", False, "stopping")
        if self._watchdog is not None:
            await self._watchdog.stop()
        for w in self.workers.values():
            w.wake.set()
        # Shop loops are cancelled mid-call if need be: whatever is in flight stays uncommitted
        # and is resent with the same idempotency key after a restart.
        for w in self.workers.values():
            if w.task is not None:
                w.task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._consumer is not None:
            # librdkafka's synchronous commit (and close) can wait forever for a group
            # coordinator after a broker restart: both run on daemon threads with a deadline,
            # so a stopping sink never hangs (what is not committed is re-read, idempotently).
            consumer = self._consumer
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._commit(force=True, blocking=_on_daemon_thread),
                                       15)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_on_daemon_thread(consumer.close), 15)
        if self._outbox is not None:
            left = await asyncio.to_thread(self._outbox.close, 10)
            if left:
                log.warning("stopped with %d records not confirmed by Kafka (their offsets were "
                            "not committed: read again at the next start)", left)
        for w in self.workers.values():
            await w.client.close()
        if self._web is not None:
            await self._web.cleanup()
        self.readiness.close()
        log.info("sink stopped")

    # -- Kafka side --------------------------------------------------------------------------

    async def _kafka_loop(self) -> None:
        assert self._consumer is not None
        while not self._stopping:
            # A batch never exceeds the backpressure limit, so a paused partition overshoots
            # it by one batch at most.
            batch = max(1, min(1000, self.settings.max_held_records))
            msgs = await asyncio.to_thread(self._consumer.consume, batch, 0.1)
            now = self.clock()
            touched: set[str] = set()
            for msg in msgs:
                err = msg.error()
                if err:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer error: %s", err)
                    continue
                shop = self._ingest(msg, now)
                if shop is not None:
                    touched.add(shop)
            for shop in touched:
                self.workers[shop].wake.set()
            self._backpressure()
            if self.clock() - self._last_commit >= self.settings.commit_interval_s:
                await self._commit()
            self._last_read = self.clock()

    async def _probe_kafka(self) -> None:
        """Forever, beside the read loop (never behind it): a cheap metadata request sets the
        ``kafka`` condition, and a read loop that has not come round for ``READ_STALL_S``
        sets ``read_loop`` failing."""
        assert self._outbox is not None
        while not self._stopping:
            try:
                md = await asyncio.to_thread(self._outbox.list_topics,
                                             self.topics.shopify_push, 2.0)
                ok, detail = bool(md.brokers), "no broker in the metadata answer"
            except Exception as exc:  # KafkaException: timed out, transport
                ok, detail = False, str(exc)
            if ok:
                self.readiness.set("kafka", True)
            else:
                self.readiness.set("kafka", False, f"Kafka metadata request failed: {detail}",
                                   grace_s=health.KAFKA_GRACE_S)
            stalled = self.clock() - self._last_read
            # Stuck this long in one client call, the process will not get out by itself.
            self.readiness.set("read_loop", stalled < READ_STALL_S,
                               f"the push topic has not been polled for {stalled:.0f} s",
                               live=stalled >= 4 * READ_STALL_S)
            await asyncio.sleep(self.settings.kafka_probe_interval_s)

    def _backpressure(self) -> None:
        """Pause partitions holding too many unfinished records; resume them below half."""
        assert self._consumer is not None
        pause, resume = self.core.backpressure(self.paused, self.settings.max_held_records)
        if pause:
            self._consumer.pause([TopicPartition(t, p) for t, p in pause])
            self.paused |= pause
            log.warning("partitions paused: too many records waiting for Shopify",
                        extra={"fields": {"partitions": sorted(f"{t}/{p}" for t, p in pause),
                                          "limit": self.settings.max_held_records}})
        if resume:
            self._consumer.resume([TopicPartition(t, p) for t, p in resume])
            self.paused -= resume
            log.info("partitions resumed", extra={"fields": {
                "partitions": sorted(f"{t}/{p}" for t, p in resume)}})
        PAUSED_PARTITIONS.set(len(self.paused))

    def _ingest(self, msg: Any, now: float) -> str | None:
        ref = SourceRef(msg.topic(), msg.partition(), msg.offset())
        if not self.core.track(ref):
            return None
        raw = msg.value() or b""
        try:
            push, reassert = parse_push_record(raw)
        except (ValueError, TypeError) as exc:
            self._dead_letter_raw(ref, raw, "bad_push_record", str(exc))
            return None
        if push.shop not in self.core.shops:
            self._dead_letter_raw(ref, raw, "unknown_shop", f"shop {push.shop} not configured",
                                  correlation_id=push.correlation_id)
            return None
        if self.core.ingest(push, ref, now, reassert=reassert).reasserted:
            REASSERTS.labels(push.shop).inc()
        delta = self.coalescer.superseded - self._superseded_seen
        if delta:
            m.PUSHES_SUPERSEDED.inc(delta)
            self._superseded_seen = self.coalescer.superseded
        return push.shop

    async def _commit(self, force: bool = False,
                      blocking: Callable[..., Any] = asyncio.to_thread) -> None:
        assert self._consumer is not None and self._outbox is not None
        self._last_commit = self.clock()
        positions = self.offsets.uncommitted()
        if not positions:
            return
        # Acks and dead letters for every done record must be durable before its offset is.
        if not await asyncio.to_thread(self._outbox.flush, 10):
            log.warning("records not yet confirmed by Kafka; commit postponed",
                        extra={"fields": {"unconfirmed": self._outbox.unconfirmed}})
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        if not force:
            # Asynchronous: a commit waiting for a group coordinator (broker away) must not
            # hold the read loop. Counted as committed now; ``_on_commit`` forgets a failed one
            # so the next round sends it again.
            try:
                self._consumer.commit(offsets=tps, asynchronous=True)
            except Exception as exc:  # e.g. no assignment any more: the next round retries
                log.warning("commit failed: %s", exc)
                return
            self.offsets.committed(positions)
            return
        try:
            await blocking(self._consumer.commit, offsets=tps, asynchronous=False)
        except Exception as exc:  # e.g. rebalance in progress: the next commit retries
            log.warning("commit failed: %s", exc)
            return
        self.offsets.committed(positions)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's commit result (inside consume(), on a worker thread)."""
        failed = [(p.topic, p.partition, p.offset) for p in partitions
                  if err is not None or p.error is not None]
        if not failed or self._loop is None:
            return

        def forget() -> None:
            for topic, partition, offset in failed:
                self.offsets.commit_failed((topic, partition), offset)
            log.warning("commit failed; sent again on the next round",
                        extra={"fields": {"error": str(err), "partitions": len(failed)}})
        with contextlib.suppress(RuntimeError):  # loop closed while stopping
            self._loop.call_soon_threadsafe(forget)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A newly assigned partition starts unpaused: forget a pause from an earlier assignment.
        for p in partitions:
            self.paused.discard((p.topic, p.partition))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside consume() on a worker thread: compute positions on the event loop.
        assert self._loop is not None and self._outbox is not None
        tps = [(p.topic, p.partition) for p in partitions]

        async def positions() -> dict[tuple[str, int], int]:
            return self.core.revoke(tps)

        try:
            pos = asyncio.run_coroutine_threadsafe(positions(), self._loop).result(10)
            if pos and self._outbox.flush(10):
                consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in pos.items()],
                                asynchronous=False)
        except Exception as exc:
            log.warning("commit on revoke failed: %s", exc)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        assert self._outbox is not None
        self._outbox.send(topic, key.encode(), value)

    def _dead_letter_raw(self, ref: SourceRef, raw: bytes, reason: str, detail: str,
                         extra: dict[str, Any] | None = None, correlation_id: str = "") -> None:
        original, enc = DeadLetter.encode_original(raw)
        dl = DeadLetter(reason=reason, detail=detail, source_topic=ref.topic,
                        source_partition=ref.partition, source_offset=ref.offset,
                        original=original, original_encoding=enc, service=SERVICE,
                        at=self.wall(), extra=extra or {})
        self._produce(self.topics.dead_letter, f"{ref.topic}/{ref.partition}/{ref.offset}",
                      dl.to_json())
        m.DEAD_LETTERS.labels(SERVICE, reason).inc()
        self.stats.dead_letters += 1
        log.warning("dead letter: %s", reason, extra={
            "correlation_id": correlation_id, "fields": {
                "reason": reason, "topic": ref.topic, "partition": ref.partition,
                "offset": ref.offset}})
        self.core.done([ref])  # durable before commit: _commit flushes the producer first

    def _dead_letter_entry(self, dead: DeadItem, reason: str, detail: str,
                           extra: dict[str, Any]) -> None:
        """Produce the dead letter of an entry the core has resolved (its records are done; the
        commit flushes the producer first)."""
        entry, refs = dead.entry, dead.refs
        first = min(refs) if refs else None
        dl = DeadLetter(reason=reason, detail=detail,
                        source_topic=first.topic if first else self.topics.shopify_push,
                        source_partition=first.partition if first else None,
                        source_offset=first.offset if first else None,
                        original=entry.push.to_json().decode(), service=SERVICE,
                        at=self.wall(), extra={**extra, "key": entry.key,
                                               "records": len(refs)})
        self._produce(self.topics.dead_letter, entry.key, dl.to_json())
        m.DEAD_LETTERS.labels(SERVICE, reason).inc()
        self.stats.dead_letters += 1
        log.warning("dead letter: %s", reason, extra={
            "correlation_id": entry.push.correlation_id, "fields": {
                "reason": reason, "shop": entry.push.shop, "key": entry.key,
                "ledger_version": entry.push.ledger_version, "records": len(refs)}})

    # -- shop side ---------------------------------------------------------------------------

    async def _shop_loop(self, w: ShopWorker) -> None:
        self.readiness.set(f"shop:{w.domain}", True)
        try:
            # One lane per call allowed in flight; the core keeps them apart (a key is in one
            # batch at a time) and says when a lane beside a busy one may send.
            lanes = max(1, self.settings.max_calls_in_flight)
            await asyncio.gather(*(self._shop_rounds(w) for _ in range(lanes)))
        finally:
            if w.halted is not None:
                self.readiness.set(f"shop:{w.domain}", False, f"halted: {w.halted}")

    async def _shop_rounds(self, w: ShopWorker) -> None:
        while not self._stopping and w.halted is None:
            try:
                timeout = await self._shop_round(w)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("shop round failed", extra={"fields": {"shop": w.domain}})
                timeout = 1.0
            if timeout is None:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(w.wake.wait(), timeout=max(0.01, min(timeout, 1.0)))
            w.wake.clear()

    async def _shop_round(self, w: ShopWorker) -> float | None:
        """One flush decision (the core's), executed; returns seconds to wait for a wake-up
        (None = go again at once)."""
        m.SINK_PENDING_KEYS.labels(w.domain).set(self.coalescer.pending_count(w.domain))
        plan = self.core.plan_round(w.domain, self.clock(), busy=w.busy)
        for up in plan.acks:
            assert up.state.acked is not None and up.state.acked_version is not None
            ack = ShopifyAck(w.domain, up.entry.push.inventory_item_id,
                             up.entry.push.location_id, up.state.acked,
                             up.state.acked_version, self.wall())
            self._produce(self.topics.shopify_acks, up.entry.key, ack_record(ack, up.state))
        action = plan.action
        if isinstance(action, Idle):
            return action.timeout
        if isinstance(action, Pace):
            await asyncio.sleep(action.seconds)
        elif isinstance(action, ReadLevels | Send):
            w.busy += 1
            try:
                if isinstance(action, ReadLevels):
                    await self._read_levels(w, list(action.entries))
                else:
                    await self._send(w, list(action.items), action.pushes)
            finally:
                w.busy -= 1
                w.wake.set()  # a lane waiting beside this call may go now
        else:
            assert isinstance(action, Again)
        return None

    async def _read_levels(self, w: ShopWorker, entries: list[Entry]) -> None:
        pairs = [(e.push.inventory_item_id, e.push.location_id) for e in entries]
        body = {"query": levels_query(pairs)}
        shop = w.state
        budget = shop.budget
        for attempt in range(steps.READ_ATTEMPTS):
            now = self.clock()
            cost = shop.read_cost_per_item * len(pairs)
            wait = budget.wait_for(cost, now) if budget.known else 0.0
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            ticket = budget.reserve(cost, now)
            res = await w.client.post(body)
            now = self.clock()
            report = CostReport.from_extensions(res.body)
            if res.error is not None:
                budget.lost(ticket, now)
            else:
                budget.observe(ticket, report, 0, now)
            self._observe_cost(w, report)
            self.stats.reads += 1
            shop.read_cost_per_item = steps.read_cost_per_item(report, len(pairs),
                                                               shop.read_cost_per_item)
            step = steps.read_step(res.status, res.body, res.error, len(pairs), attempt,
                                   self.backoff)
            if isinstance(step, steps.HaltRead):
                log.error("shop halted: %s", step.reason, extra={"fields": {
                    "shop": w.domain, "detail": step.detail}})
                self.core.halt(w.domain, step.reason)
                return
            if isinstance(step, steps.RetryRead):
                m.SHOPIFY_RETRIES.labels(w.domain, step.reason[:40]).inc()
                if step.throttled:
                    m.SHOPIFY_THROTTLED.labels(w.domain).inc()
                    self.stats.throttled += 1
                if step.delay is not None:
                    await asyncio.sleep(step.delay)
                continue
            for drift in self.core.levels_read(w.domain, entries, step.levels, self.clock()):
                self._report_drift(w, drift.entry, drift.expected, drift.actual,
                                   "shopify_above_ledger", None)
            return

    def _observe_cost(self, w: ShopWorker, report: CostReport | None) -> None:
        if report is None:
            return
        m.SHOPIFY_COST_AVAILABLE.labels(w.domain).set(report.currently_available)
        if report.actual is not None:
            m.SHOPIFY_COST_SPENT.labels(w.domain).inc(report.actual)
            self.stats.cost_actual += report.actual
        if report.requested is not None:
            self.stats.cost_requested += report.requested

    async def _send(self, w: ShopWorker, items: list[BatchItem],
                    pushes: Mapping[str, Push]) -> None:
        """Send one batch until Shopify gives a final answer for every item: each answer's
        step (``steps.send_step``) executed."""
        attempt = steps.SendAttempt()
        req = build_request(w.domain, items, salt=attempt.salt)
        while True:
            res, outcome = await self._call(w, req)
            attempt, step = steps.send_step(attempt, outcome, len(req.items), self.backoff,
                                            self.settings.http_timeout_s)
            if not isinstance(step, steps.Retry):
                await self._finish(w, req, res.body, step, pushes)
                return
            m.SHOPIFY_RETRIES.labels(w.domain, step.reason[:40]).inc()
            self.stats.retries += 1
            if step.throttled:
                m.SHOPIFY_THROTTLED.labels(w.domain).inc()
                self.stats.throttled += 1
            if step.delay is not None:
                await asyncio.sleep(step.delay)
            if step.new_key:
                req = build_request(w.domain, items, salt=attempt.salt)

    async def _call(self, w: ShopWorker, req: BatchRequest) -> tuple[HttpResult, Outcome]:
        """One call of ``req`` once the budget allows it, its answer classified and counted."""
        budget = w.state.budget
        while True:
            now = self.clock()
            cost = budget.estimate_cost(len(req.items))
            wait = budget.wait_for(cost, now)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        ticket = budget.reserve(cost, now)
        res = await w.client.post(req.body())
        now = self.clock()
        if res.error is not None:
            outcome: Outcome = classify_transport_error(res.error)
            budget.lost(ticket, now)
        else:
            outcome = classify(res.status, res.body, res.headers, len(req.items))
            budget.observe(ticket, getattr(outcome, "cost", None), len(req.items), now)
        self._observe_cost(w, getattr(outcome, "cost", None))
        name = steps.outcome_name(outcome)
        m.SHOPIFY_CALLS.labels(w.domain, name).inc()
        self.stats.calls += 1
        self.stats.outcomes[name] = self.stats.outcomes.get(name, 0) + 1
        return res, outcome

    async def _finish(self, w: ShopWorker, req: BatchRequest, body: dict[str, Any] | None,
                      step: steps.SendStep, pushes: Mapping[str, Push]) -> None:
        """Execute a batch's final step."""
        if isinstance(step, steps.AckAll):
            self._on_applied(w, req, self.core.applied(req.items, pushes))
        elif isinstance(step, steps.HandleRejected):
            for dead in self.core.rejected(w.domain, req.items, step.outcome):
                assert dead.error is not None
                err = dead.error
                self._dead_letter_entry(dead, err.code.lower(), err.message, {
                    "shopify_error": {"code": err.code, "message": err.message,
                                      "field": list(err.field) if err.field else None},
                    "shopify_response": body, "idempotency_key": req.idempotency_key})
        elif isinstance(step, steps.SplitHalves):
            half = len(req.items) // 2
            for part in (list(req.items[:half]), list(req.items[half:])):
                await self._send(w, part, pushes)
        elif isinstance(step, steps.DeadLetterAll):
            for dead in self.core.dead_letter_all(req.items):
                self._dead_letter_entry(dead, step.reason.lower(), step.detail, {
                    "shopify_response": body, "idempotency_key": req.idempotency_key})
        else:
            assert isinstance(step, steps.HaltShop)
            log.error("shop halted: %s", step.reason,
                      extra={"fields": {"shop": w.domain, "detail": step.detail[:500]}})
            self.core.halt(w.domain, step.reason, req.items)

    def _on_applied(self, w: ShopWorker, req: BatchRequest, acked: list[AckedItem]) -> None:
        wall = self.wall()
        for a in acked:
            item, entry = a.item, a.entry
            ack = ShopifyAck(w.domain, item.inventory_item_id, item.location_id, item.quantity,
                             item.ledger_version, wall, req.idempotency_key)
            self._produce(self.topics.shopify_acks, item.key, ack_record(ack, a.state))
            if a.push.drift is not None and entry is not None:
                self._report_drift(w, entry, a.push.drift.expected, a.push.drift.actual,
                                   "hold_expired", a.push.drift.held_since)
            if entry is not None and entry.oldest_event_at > 0:
                m.END_TO_END_SECONDS.labels("shopify").observe(
                    max(0.0, wall - entry.oldest_event_at))
            m.SHOPIFY_ITEMS_PUSHED.labels(w.domain, item.location_id).inc()
            if entry is not None and log.isEnabledFor(logging.DEBUG):  # one line per item
                log.debug("pushed", extra={"correlation_id": entry.push.correlation_id,
                                           "fields": {"shop": w.domain, "key": item.key,
                                                      "available": item.quantity,
                                                      "ledger_version": item.ledger_version,
                                                      "records": len(entry.sources)}})
        self.stats.items_acked += len(req.items)
        m.SHOPIFY_ITEMS_PER_CALL.observe(len(req.items))
        m.LAST_PUSH_TIMESTAMP.labels(w.domain).set(wall)

    def _report_drift(self, w: ShopWorker, entry: Entry, expected: int, actual: int,
                      cause: str, held_since: float | None) -> None:
        record = {"shop": w.domain, "inventory_item_id": entry.push.inventory_item_id,
                  "location_id": entry.push.location_id, "sku": entry.push.sku,
                  "expected": expected, "actual": actual, "difference": expected - actual,
                  "cause": cause, "ledger_version": entry.push.ledger_version,
                  "held_for_s": None if held_since is None else self.clock() - held_since,
                  "detected_at": self.wall()}
        self._produce(self.topics.drift, entry.key, json.dumps(record).encode())
        m.DRIFT_DETECTED.labels(cause).inc()
        self.stats.drift += 1
        log.info("drift", extra={"correlation_id": entry.push.correlation_id,
                                 "fields": {k: v for k, v in record.items() if k != "sku"}})

    # -- web ---------------------------------------------------------------------------------

    async def _start_web(self) -> None:
        app = web.Application()

        async def metrics(_: web.Request) -> web.Response:
            resp = web.Response(body=generate_latest())
            resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
            return resp

        async def stats(_: web.Request) -> web.Response:
            return web.json_response(self.stats.__dict__)

        app.router.add_get("/metrics", metrics)
        health.add_routes(app, self.readiness)
        app.router.add_get("/stats", stats)
        self._web = web.AppRunner(app, access_log=None)
        await self._web.setup()
        await web.TCPSite(self._web, self.settings.web_host, self.settings.web_port).start()


async def _on_daemon_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on a daemon thread: a call that never returns cannot keep the
    process (or ``asyncio.run``'s executor shutdown) from ending."""
    import threading

    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            (fut.set_result if ok else fut.set_exception)(value)

    def run() -> None:
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, False, exc)
        else:
            loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=run, name="sink-blocking-call", daemon=True).start()
    return await fut


@contextlib.asynccontextmanager
async def run_sink(settings: SinkSettings) -> AsyncIterator[Sink]:
    """``async with run_sink(settings) as sink:`` — started on entry, stopped on exit."""
    sink = Sink(settings)
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


# -- CLI -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tally sink", description=__doc__.splitlines()[0])
    add_flags(p, SinkSettings)
    for name, topic in (("push", "shopify_push"), ("acks", "shopify_acks"), ("drift", "drift"),
                        ("dlq", "dead_letter")):
        p.add_argument(f"--topic-{name}", dest=f"topics.{topic}",
                       help=f"override the {name} topic")
    return p


def settings_from_args(argv: list[str] | None) -> SinkSettings:
    """The sink's settings: flags > environment > settings file > defaults."""
    return load(SinkSettings, flags=build_parser().parse_args(argv))


async def _serve(settings: SinkSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_sink(settings):
        heap.settle(SERVICE)  # the acks seeded, every key's state loaded
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tally sink``."""
    settings = settings_from_args(argv)
    secrets: list[str] = []
    for shop in settings.shops:
        with contextlib.suppress(Exception):
            secrets.append(shop.token())
    logs.configure(SERVICE, level=settings.log_level, secrets=secrets)
    heap.watch_pauses()
    if not settings.shops:
        log.error("no shops configured (TALLY_SHOPS_FILE or --shops-file)")
        return 2
    asyncio.run(_serve(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
