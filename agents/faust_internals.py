"""Every use of faust-streaming's or aiokafka's internals, in one place.

Tally's worker depends on behaviour faust and aiokafka do not offer publicly (private attributes,
attributes outside faust's typed interfaces, a duck-typed producer message). Each function below
says why it is needed. They are checked against the versions pinned in pyproject.toml: importing
this module with other versions installed fails, so an upgrade starts by reviewing this file
(and running the kill -9, failover and transactions tests, which exercise every use).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping
from importlib.metadata import version
from typing import Any

import faust
from faust.types import TP

# The versions every use below was written and tested against (pyproject.toml pins them).
FAUST_VERSION = "0.15.3"
AIOKAFKA_VERSION = "0.14.0"


def check_versions() -> None:
    """Fail unless the pinned faust-streaming and aiokafka are installed."""
    installed = {"faust-streaming": version("faust-streaming"), "aiokafka": version("aiokafka")}
    expected = {"faust-streaming": FAUST_VERSION, "aiokafka": AIOKAFKA_VERSION}
    if installed != expected:
        raise RuntimeError(
            f"agents.faust_internals was written for {expected}, installed: {installed}; "
            "review every use in agents/faust_internals.py before changing the versions")


check_versions()


class TallyWorker(faust.Worker):
    """faust's worker without the terminal spinner. Why: at log levels from WARN up, mode's
    spinner sets the root logger to DEBUG so that it spins on every record, which costs ~7% of
    the CPU; ``spinner`` is mode's ``Worker`` attribute, with no option to turn it off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None


class _UnfilteredReadOffsets(defaultdict[TP, int | None]):
    """faust's per-partition read offsets (a ``defaultdict`` of None), reporting "unknown" for
    ``topics`` so that faust hands over every fetched record of those."""

    def __init__(self, topics: set[str], existing: Mapping[TP, int | None]) -> None:
        super().__init__(lambda: None, existing)
        self.topics = topics

    def __getitem__(self, tp: TP) -> int | None:
        if tp.topic in self.topics:
            return None
        return super().__getitem__(tp)


def unfilter_read_offsets(consumer: faust.types.ConsumerT, topics: set[str]) -> None:
    """Turn off faust's read-offset filter for ``topics``. Why: faust drops every fetched record
    below its own read offset (``Consumer._read_offset``), including the records Tally sought
    back to after a restart; ``ReadProgress`` filters replays instead. Call before the consumer
    starts."""
    existing = consumer._read_offset  # type: ignore[attr-defined]
    consumer._read_offset = _UnfilteredReadOffsets(  # type: ignore[attr-defined]
        topics, dict(existing))


def configure_fetch(consumer: faust.types.ConsumerT, *, fetch_max_wait_ms: int) -> None:
    """Make the aiokafka consumer faust creates read committed records only, and bound how long
    the broker may hold a fetch. Why: faust sets ``isolation_level`` only in its own exactly-once
    mode and hard-codes ``fetch_max_wait_ms=1500``; aiokafka reads both from the consumer's
    private attributes when it builds its ``Fetcher`` at start, and the consumer is created by
    faust's private ``_create_worker_consumer``.

    The wait matters once the worker is behind: aiokafka sends no new fetch for a partition
    whose fetched records are not consumed yet, so the next request may name only idle
    partitions (the movements topic when records are keyed as recommended, kit components),
    which the broker holds for the whole wait, and the busy partitions cannot be fetched until
    it returns. At 1.5 s that cycle kept a worker with spare CPU ~2 s behind for as long as the
    input lasted. Call before the consumer starts."""
    thread = consumer._thread  # type: ignore[attr-defined]
    create: Callable[[Any], Any] = thread._create_worker_consumer

    def create_configured(transport: Any) -> Any:
        kafka_consumer = create(transport)
        # Both read by start()'s Fetcher.
        kafka_consumer._isolation_level = "read_committed"
        kafka_consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return kafka_consumer

    thread._create_worker_consumer = create_configured


async def commit(consumer: faust.types.ConsumerT, offsets: Mapping[TP, int]) -> bool:
    """Commit exactly ``offsets``. Why: faust's public ``commit()`` commits what its acks say,
    which Tally turned off; ``Consumer._commit`` commits given offsets (True when it did)."""
    committed: bool = await consumer._commit(offsets)  # type: ignore[attr-defined]
    return committed


class _FlushMarker:
    """Stands for a faust ``FutureMessage`` (``message.channel.publish_message``) in the
    producer's buffer: when the buffer hands it on, every record queued before it has reached
    the Kafka producer."""

    def __init__(self) -> None:
        self.passed = asyncio.Event()
        self.message = self
        self.channel = self

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        self.passed.set()


async def producer_buffer_drained(producer: faust.types.ProducerT) -> None:
    """Return once every record queued so far in faust's producer buffer (the tables' changelog
    records) was handed to the Kafka producer. Why: faust's own ``flush()`` gives up after 0.1 s
    without progress, so it can return with records still queued; a marker queued behind them
    (``send_soon`` takes a duck-typed message) is handed on only after them."""
    marker = _FlushMarker()
    producer.send_soon(marker)  # type: ignore[arg-type]
    await marker.passed.wait()


async def batches_delivered(producer: faust.types.ProducerT) -> None:
    """Wait until every record faust's producer has handed to aiokafka so far is acknowledged
    by Kafka. Why: faust's ``flush()`` first waits for its buffer to be empty, which a busy agent
    keeps filling (a commit under a 1M-line snapshot's backlog took 9-13 s in it); aiokafka's
    own ``flush`` waits only for the batches that exist when it is called, which, once
    ``producer_buffer_drained`` returned, hold every record queued before it."""
    kafka_producer = producer._producer  # type: ignore[attr-defined]
    if kafka_producer is not None:
        await kafka_producer.flush()


async def refresh_metadata(consumer: Any) -> None:
    """Ask the broker for fresh metadata on an ``AIOKafkaConsumer``. Why: a topic created after
    the consumer started stays unknown (``partitions_for_topic`` is None) until the next
    periodic refresh; aiokafka offers the refresh only on its private client."""
    await consumer._client.force_metadata_update()


def tables_recovered(app: faust.App) -> bool:
    """True once the tables' changelogs were replayed. Why here: ``tables.recovery`` is faust's
    ``TableManager`` attribute, outside its typed ``TableManagerT`` interface."""
    recovered: bool = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
    return recovered


def flow_suspended(app: faust.App) -> bool:
    """True while faust's consumer drops records (its flow is suspended during a rebalance). Why
    here: ``suspend_flow`` is faust's ``Consumer`` attribute, outside ``ConsumerT``."""
    suspended: bool = app.consumer.suspend_flow.is_set()  # type: ignore[attr-defined]
    return suspended

