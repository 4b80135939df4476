"""The worker's input discipline on faust: each record once, in offset order, commits owned.

faust-streaming 0.15 tracks processed offsets with acks and counts a forward jump in offsets as
a "gap" it may commit; after a restart or rebalance it can hand an agent records past the
committed offset (it resumes partitions before seeking), and it silently drops records below its
own read offset after a seek. Together that lets a range be committed unprocessed (seen in the
kill -9 test). So Tally's input topics are consumed with faust's acks off, faust's read-offset
filter off, and commits made here from ``ReadProgress`` (pipeline/reading/progress.py): the
committed offset is one past the last record processed in order, after the producers flushed
everything those records produced: first the C-backed producer of the records written for others
(pushes, history; ``agents/direct_producer.py``), then faust's (ledger changelog, movements). If
one of the former was not delivered, nothing is committed and every partition is read again
from its last commit (the ledger's dedupe makes them duplicates that send the current value
again). A jump forward is read again; only a hole the broker itself confirms (a probe) is passed
over.

Input is read committed (``isolation.level=read_committed``, which faust only sets for its own
exactly-once mode): records of an aborted upstream transaction are never applied, and the offsets
they and the transaction markers occupy are holes the probe confirms on the first jump.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from faust.types import TP, Message
from prometheus_client import Counter, Histogram

from agents import faust_internals
from agents.direct_producer import DeliveryFailed, DirectProducer
from agents.guard import RecordGuard
from pipeline.observability import metrics as m
from pipeline.reading.progress import Action, ReadProgress

log = logging.getLogger("tally.worker.reading")

FLUSH_TIMEOUT_S = 30.0
REWINDS = Counter(
    "tally_worker_rewinds_total",
    "Times the worker read its input again from the last commit because records it had "
    "produced since were not delivered.",
)
COMMIT_SECONDS = Histogram(
    "tally_worker_commit_seconds",
    "Time from taking the processed offsets to their commit: both producers flushed, then the "
    "commit request.", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SLOW_COMMIT_S = 5.0  # a commit slower than this is logged with the time of each step
_NO_COMMIT = -1001  # librdkafka's OFFSET_INVALID: the group never committed this partition


class InOrderReader:
    """Admits records to agents and commits their offsets (see module docstring)."""

    def __init__(self, app: faust.App, bootstrap: str, topics: Iterable[str],
                 contiguous: Iterable[str] = (), direct: DirectProducer | None = None, *,
                 fetch_max_wait_ms: int) -> None:
        """``topics``: the input topics; ``contiguous``: those of them that Tally writes itself
        (no transaction markers or compaction), where a hole means records were lost;
        ``direct``: the C-backed producer, flushed before every commit too;
        ``fetch_max_wait_ms``: the worker's setting, see ``faust_internals.configure_fetch``."""
        self.app = app
        self.direct = direct
        self.bootstrap = bootstrap
        self.topics = set(topics)
        self.contiguous = set(contiguous)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.progress: ReadProgress[TP] = ReadProgress()
        self._offsets = self._offsets_client()
        self._lookup = asyncio.Lock()
        self._probe: Consumer | None = None  # one, kept: a probe per commit marker is common
        self._probe_lock = threading.Lock()

    def _offsets_client(self) -> Consumer:
        return Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": self.app.conf.id,
            "enable.auto.commit": False, "client.id": f"{self.app.conf.id}-offsets",
        })

    def install(self) -> None:
        """Take over from faust's read-offset filter, read committed records only and bound
        the fetch wait; call before the consumer starts."""
        faust_internals.unfilter_read_offsets(self.app.consumer, self.topics)
        faust_internals.configure_fetch(self.app.consumer,
                                        fetch_max_wait_ms=self.fetch_max_wait_ms)

    def topic(self, *names: str, **kwargs: Any) -> faust.TopicT:
        """An input topic read through this reader (faust's acks off: we commit)."""
        return self.app.topic(*names, key_serializer="raw", value_serializer="raw", acks=False,
                              **kwargs)

    async def admit(self, msg: Message) -> bool:
        """True when ``msg`` is the next record of its partition: process it, then ``done``."""
        tp = msg.tp
        if not self.progress.known(tp):
            await self._start(tp)
        verdict = self.progress.admit(tp, msg.offset, time.monotonic(),
                                      holes_expected=tp.topic not in self.contiguous)
        if verdict.seek_to is None:
            return verdict.process
        seek_to = verdict.seek_to
        if verdict.action is Action.PROBE:
            seek_to = await self._pass_hole(tp, seek_to)
            if not self.progress.known(tp):
                return False  # revoked while asking: the next owner reads it
            if seek_to == msg.offset:  # the hole ends right here: no need to read it again
                return self.progress.admit(tp, msg.offset, time.monotonic()).process
        if seek_to == verdict.seek_to:  # no hole: records were skipped, or still drain
            m.RECORDS_REREAD.inc(msg.offset - seek_to)
            log.warning("records %s..%s of %s were not handed to the worker; reading them "
                        "again", seek_to, msg.offset - 1, tp)
        # On the consumer's own thread, between fetches: a plain seek from this thread
        # races with the fetcher, which can move the position forward again.
        self.progress.seeked(tp, time.monotonic())
        await self._seek(tp, seek_to)
        return False

    async def _seek(self, tp: TP, offset: int) -> None:
        """Seek, or leave it to the watchdog when the consumer cannot now (broker away,
        rebalancing): nothing after ``offset`` is processed before it is read."""
        try:
            await self.app.consumer.seek_wait({tp: offset})
        except Exception as exc:  # the consumer's own errors: timeouts, unknown partitions
            log.warning("seek of %s to %s failed (%s); the watchdog reads it again", tp,
                        offset, exc)

    async def _pass_hole(self, tp: TP, offset: int) -> int:
        """Ask the broker for the first record at or after ``offset`` (or the end, if none);
        pass over the hole before it, if any. Returns where reading goes on."""
        try:
            first = await asyncio.get_running_loop().run_in_executor(None, self._first_offset,
                                                                     tp, offset)
        except KafkaException as exc:  # the broker away: no answer, so no hole is passed
            log.warning("probe of %s at %s failed (%s)", tp, offset, exc)
            first = None
        if first is None or first <= offset or not self.progress.known(tp):
            return offset  # the record is there (records fetched before a seek still drain)
        passed = self.progress.hole(tp, first, time.monotonic())
        m.OFFSET_GAPS.inc(passed)
        if tp.topic in self.contiguous:  # Tally wrote these: only retention deletes them
            log.error("records %s..%s of %s are gone (deleted by retention before they were "
                      "read?); going on at %s", offset, first - 1, tp, first)
        else:
            log.warning("offsets %s..%s of %s hold no records (transaction markers or "
                        "compaction upstream); going on", offset, first - 1, tp)
        return first

    def _first_offset(self, tp: TP, offset: int) -> int | None:
        """The offset of the broker's first committed record at or after ``offset`` in ``tp``,
        the end offset if there is none, or None if the broker did not answer in time."""
        with self._probe_lock:
            if self._probe is None:
                self._probe = Consumer({
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"{self.app.conf.id}-probe", "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "isolation.level": "read_committed",  # as the worker reads
                    "fetch.wait.max.ms": 10,  # answer in ~20 ms, not librdkafka's 500
                })
            probe = self._probe
            probe.assign([TopicPartition(tp.topic, tp.partition, offset)])
            try:
                deadline = time.monotonic() + 10.0
                while time.monotonic() < deadline:
                    msg = probe.poll(0.2)
                    if msg is None:
                        continue
                    at = msg.offset()  # None only for errors without a position
                    if (msg.topic() != tp.topic or msg.partition() != tp.partition
                            or at is None or at < offset):  # left over from an earlier probe
                        continue
                    error = msg.error()
                    if error is None:
                        return at
                    if error.code() == KafkaError._PARTITION_EOF:
                        return at  # no record from ``offset`` to the end
                self._probe = None  # no answer: the next probe uses a fresh client
                probe.close()
                return None
            finally:
                if self._probe is probe:
                    probe.unassign()

    def done(self, msg: Message) -> None:
        """``msg`` (admitted) is processed: its offset may be committed."""
        self.progress.done(msg.tp, msg.offset, time.monotonic())

    async def _start(self, tp: TP) -> None:
        async with self._lookup:
            if self.progress.known(tp):
                return
            delay = 0.5
            while True:
                try:
                    committed, low = await asyncio.get_running_loop().run_in_executor(
                        None, self._committed_and_low, tp)
                    break
                except KafkaException as exc:  # the broker away: wait for it, never crash
                    log.warning("committed offset of %s unknown (%s); asking again in %.1f s "
                                "with a new client", tp, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    # A client's view of the cluster can stay stale after a broker restart
                    # (_UNKNOWN_PARTITION for good): the next attempt uses a fresh one.
                    old, self._offsets = self._offsets, self._offsets_client()
                    await asyncio.get_running_loop().run_in_executor(None, old.close)
            # Nothing committed, or the committed record expired: the consumer starts at the
            # earliest record (auto.offset.reset=earliest), and so do we.
            start = low if committed == _NO_COMMIT else max(committed, low)
            self.progress.start(tp, start, time.monotonic())

    def _committed_and_low(self, tp: TP) -> tuple[int, int]:
        """(the group's committed offset or -1001, the partition's first offset)."""
        ktp = TopicPartition(tp.topic, tp.partition)
        committed = self._offsets.committed([ktp], timeout=10)[0].offset
        low, _ = self._offsets.get_watermark_offsets(ktp, timeout=10, cached=False)
        return committed, low

    async def commit(self, tps: Iterable[TP] | None = None) -> None:
        """Commit processed offsets, after flushing everything their records produced."""
        lost = self._lost()
        offsets = self.progress.to_commit(tps)
        if not offsets:
            return
        started = time.monotonic()
        phases: dict[str, float] = {}
        try:
            flushed = await asyncio.wait_for(self._flush(phases), timeout=FLUSH_TIMEOUT_S)
        except TimeoutError:
            flushed = False
        except DeliveryFailed as exc:
            await self.rewind(str(exc))
            return
        if not flushed:
            log.warning("producer did not flush within %s s; offsets not committed this time "
                        "(%s)", FLUSH_TIMEOUT_S, _split(phases))
            return
        if self._lost() != lost:  # a concurrent commit (revoke, timer) found records lost
            return
        at = time.monotonic()
        if await faust_internals.commit(self.app.consumer, offsets):
            self.progress.committed(offsets)
        phases["commit"] = time.monotonic() - at
        took = time.monotonic() - started
        COMMIT_SECONDS.observe(took)
        if took > SLOW_COMMIT_S:
            log.warning("commit took %.1f s (%s)", took, _split(phases))

    def _lost(self) -> int:
        """How many times the C-backed producer lost records so far."""
        return self.direct.rebuilds if self.direct is not None else 0

    async def _flush(self, phases: dict[str, float]) -> bool:
        """Wait until everything sent so far (table changelog included) is in Kafka: the
        C-backed producer first, then faust's (quix-streams' order: sinks, then the producer).
        False if the C-backed one did not finish in time; ``DeliveryFailed`` if it lost a
        record. ``phases``: seconds each step took, filled in as they end."""
        at = time.monotonic()
        if self.direct is not None and not await self.direct.flush(FLUSH_TIMEOUT_S):
            return False
        phases["direct"], at = time.monotonic() - at, time.monotonic()
        await faust_internals.producer_buffer_drained(self.app.producer)
        phases["faust_buffer"], at = time.monotonic() - at, time.monotonic()
        await faust_internals.batches_delivered(self.app.producer)
        phases["faust_flush"] = time.monotonic() - at
        return True

    async def rewind(self, reason: str) -> None:
        """Records produced since the last commit may be lost: read every partition again from
        its last commit (nothing after it is committed before it is processed again)."""
        now = time.monotonic()
        offsets = self.progress.rewind(now)
        REWINDS.inc()
        log.error("reading %s partitions again from their last commit: %s", len(offsets), reason)
        for tp, offset in offsets.items():
            self.progress.seeked(tp, now)
            await self._seek(tp, offset)

    async def watch(self) -> None:
        """Re-read partitions where records wait but nothing arrives (dropped by the consumer)."""
        consumer = self.app.consumer
        now = time.monotonic()
        for tp in list(self.progress.partitions):
            try:
                end = consumer.highwater(tp)
            except Exception:  # rebalancing: next time
                continue
            if end is None:
                continue
            seek_to = self.progress.stalled(tp, end, now)
            if seek_to is None:
                continue
            # A hole at the end (e.g. compacted away) holds no record and none follows it: the
            # probe says so and reading moves past it, so the commit (and the lag) reach the end.
            go_on = await self._pass_hole(tp, seek_to)
            if go_on == seek_to:
                log.warning("records wait in %s from offset %s but none arrived; reading again "
                            "(%s)", tp, seek_to, self.flow_state())
            self.progress.seeked(tp, time.monotonic())
            await self._seek(tp, go_on)

    def flow_state(self) -> str:
        """faust's flow switches: records are dropped while its flow is suspended."""
        return (f"flow {'suspended' if faust_internals.flow_suspended(self.app) else 'on'}, "
                f"{'rebalancing' if self.app.rebalancing else 'assigned'}, recovery "
                f"{'done' if faust_internals.tables_recovered(self.app) else 'running'}")

    def stuck(self, now: float, after_s: float) -> list[str]:
        """Partitions with records waiting where none was processed for ``after_s``."""
        out = []
        for tp, p in list(self.progress.partitions.items()):
            try:
                end = self.app.consumer.highwater(tp)
            except Exception:  # rebalancing: not known now
                continue
            if end is not None and end > p.next_offset and now - p.progressed_at > after_s:
                out.append(f"{tp.topic}/{tp.partition}@{p.next_offset}")
        return out

    def restart(self, tps: Iterable[TP]) -> None:
        """Forget these partitions: their next record is checked against Kafka's commit."""
        self.progress.forget(tps)

    def close(self) -> None:
        self._offsets.close()
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()


def _split(phases: dict[str, float]) -> str:
    split = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())
    return split or "no step ended"


Step = Callable[[Message, Any], Awaitable[None]]


async def read(stream: faust.StreamT[Any], agent: str, step: Step, *, reader: InOrderReader,
               guard: RecordGuard, ready: asyncio.Event | None = None,
               processed: Callable[[str, Message], None] | None = None) -> None:
    """The loop of every input agent: each record of ``stream`` that ``reader`` admits runs
    ``step(message, value)`` in ``guard``, then is marked done. With ``ready``, wait for it
    while holding a record (never before iterating: faust's stream must be read to rebalance);
    ``processed(agent, message)`` (consumer lag) is told of each admitted record."""
    async for event in stream.events():
        if ready is not None and not ready.is_set():
            await ready.wait()
        msg = event.message
        if not await reader.admit(msg):
            continue
        if processed is not None:
            processed(agent, msg)
        await guard.run(agent, msg, step, msg, event.value)
        reader.done(msg)
