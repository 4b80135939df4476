"""The worker's C-backed producer (confluent-kafka, librdkafka) for the records no agent of the
worker reads back: pushes, audit history, unmapped and low-stock reports.

faust's pure-Python producer costs ~0.2-0.28 ms of worker CPU per record; librdkafka does the
same work on its own threads for a few microseconds of the event loop's. Records an agent reads
(movements, kit components) and the tables' changelogs stay on faust's producer.

* **Configuration.** ``pipeline.infra.kafka_write``: the partition aiokafka, faust and Java
  give a key; idempotent.
* **Hot path.** ``send`` enqueues the record and returns an awaitable that is already done (no
  coroutine or future per record). librdkafka reports only failed deliveries
  (``delivery.report.only.error``), served by the ``poll(0)`` after each send and by ``flush``.
  A full queue (``BufferError``) is waited out and the record sent again: nothing is dropped.
* **Checkpoints.** The reader (``agents/reading.py``) commits input offsets only after
  ``flush`` said everything sent so far was delivered. A failed delivery (librdkafka gave up
  after ``message.timeout.ms``, or the producer hit a fatal error) makes ``flush`` raise
  ``DeliveryFailed`` once: the reader then commits nothing and reads again from the last commit.
  The ledger's dedupe makes the records read again duplicates, which send the current value
  again (docs/ledger.md), so a lost push is replaced by one at least as new. The producer is
  rebuilt at that point (an idempotent producer that lost records can stay in a state it never
  leaves; see ``pipeline/webhooks/publisher.py``). A broker outage shorter than the delivery
  timeout needs none of this: librdkafka keeps retrying and commits simply wait.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter

from pipeline.infra.kafka_write import producer_config
from pipeline.infra.outbox import dispose

log = logging.getLogger("tally.worker.producer")
KAFKA_LOG = logging.getLogger("tally.worker.producer.kafka")  # librdkafka's own lines

DELIVERY_FAILURES = Counter(
    "tally_worker_delivery_failures_total",
    "Records the worker's C-backed producer could not deliver (offsets were not committed: the "
    "worker read its input again from the last commit).", ["topic"],
)
PRODUCER_REBUILDS = Counter(
    "tally_worker_producer_rebuilds_total",
    "Times the worker's C-backed producer was replaced after a failed delivery or fatal error.",
)
QUEUE_FULL_WAITS = Counter(
    "tally_worker_producer_queue_full_total",
    "Sends that found the C-backed producer's queue full and waited for room.",
)

QUEUE_FULL_WAIT_S = 0.005  # first wait for room in a full queue, doubling up to 0.1 s


class DeliveryFailed(Exception):
    """Records sent since the last flush were not delivered (the reason is the text)."""


class _Done:
    """An awaitable that is already done (``await`` gives None without suspending): what
    ``send`` returns, one shared object, no allocation per record."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]  # an empty iterator: done at once


DONE: Awaitable[None] = _Done()


def config(bootstrap: str, *, client_id: str, linger_ms: int,
           delivery_timeout_s: float) -> dict[str, Any]:
    """The producer's librdkafka configuration (without callbacks)."""
    return producer_config(bootstrap, client_id=client_id, linger_ms=linger_ms, extra={
        "delivery.report.only.error": True,  # no Python callback per delivered record
        "message.timeout.ms": max(1000, int(delivery_timeout_s * 1000)),
    })


class DirectProducer:
    """Sends records to Kafka through librdkafka (module docstring); one per worker process."""

    def __init__(self, bootstrap: str, *, client_id: str, linger_ms: int,
                 delivery_timeout_s: float = 300.0,
                 factory: Callable[[dict[str, Any]], Producer] = Producer) -> None:
        self.config = config(bootstrap, client_id=client_id, linger_ms=linger_ms,
                             delivery_timeout_s=delivery_timeout_s)
        self.factory = factory
        self.failed = 0  # failed deliveries since the last flush
        self._reason: str | None = None  # the first of them
        self._lock = threading.Lock()  # callbacks run on the loop and on flush's thread
        self._flushing = asyncio.Lock()
        self.rebuilds = 0  # producers replaced so far
        self._generation = 0  # the current producer's: reports of older ones are not counted
        self._disposing: asyncio.Future[None] | None = None  # the last replaced one's closing
        self._build()

    def _build(self) -> None:
        generation = self._generation

        def delivered(err: KafkaError | None, msg: Message) -> None:
            # librdkafka's delivery report (failures only), on whichever thread polls. Reports
            # of a replaced producer (its purged records) are not counted again.
            if err is not None and generation == self._generation:
                DELIVERY_FAILURES.labels(msg.topic() or "?").inc()
                self._failure(f"delivery to {msg.topic()} [{msg.partition()}] failed: "
                              f"{err.name()} ({err.str()})")

        def error(err: KafkaError) -> None:
            # A broker away is retried by librdkafka itself; a fatal error loses what the
            # producer holds.
            if err.fatal() and generation == self._generation:
                self._failure(f"fatal producer error {err.name()} ({err.str()})")
            else:
                log.debug("producer: %s (%s)", err.name(), err.str())

        self.producer = self.factory({**self.config, "on_delivery": delivered,
                                      "error_cb": error, "logger": KAFKA_LOG})
        # Bound once: the hot path looks up nothing.
        self._produce = self.producer.produce
        self._poll = self.producer.poll

    def _failure(self, reason: str) -> None:
        with self._lock:
            self.failed += 1
            first = self._reason is None
            if first:
                self._reason = reason
        if first:  # one line per episode: a long outage can fail every queued record
            log.error("%s; offsets will not be committed, the worker reads again from the last "
                      "commit", reason)

    def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        """Enqueue one record; the awaitable returned is done (``flush`` says it arrived)."""
        try:
            self._produce(topic, value, key)
        except BufferError:  # the queue is full: wait for room, never drop
            return self._send_when_room(topic, key, value)
        except KafkaException as exc:
            if not exc.args[0].fatal():
                raise  # the record's own (e.g. too large): the record guard decides
            self._failure(f"fatal producer error {exc.args[0].name()}")
            return self._send_when_room(topic, key, value)  # through the rebuilt producer
        self._poll(0)
        return DONE

    async def _send_when_room(self, topic: str, key: bytes | None, value: bytes) -> None:
        QUEUE_FULL_WAITS.inc()
        delay = QUEUE_FULL_WAIT_S
        while True:
            await asyncio.sleep(delay)
            self._poll(0)
            try:
                self._produce(topic, value, key)
                return
            except BufferError:
                delay = min(delay * 2, 0.1)
            except KafkaException as exc:
                if not exc.args[0].fatal():
                    raise
                # A fatal producer takes nothing more: the next flush rebuilds it.
                self._failure(f"fatal producer error {exc.args[0].name()}")
                delay = min(delay * 2, 0.1)

    async def flush(self, timeout_s: float) -> bool:
        """Wait (on a thread) until everything sent so far is delivered: True when it was,
        False when ``timeout_s`` passed first. Raises ``DeliveryFailed`` (once per failure)
        when a record sent since the last flush was not delivered, after replacing the
        producer."""
        async with self._flushing:
            loop = asyncio.get_running_loop()
            producer = self.producer
            left = await loop.run_in_executor(None, producer.flush, timeout_s)
            with self._lock:
                failed, reason = self.failed, self._reason
                self.failed, self._reason = 0, None
            if failed:
                # Replaced here, on the loop (the only thread that sends): no record goes to
                # the old producer from now on; what it still holds is dropped, and the reader
                # reads its sources again.
                # Nothing awaited from taking the failure to raising: a cancelled flush cannot
                # swallow it.
                self.rebuilds += 1
                self._generation += 1
                self._build()
                PRODUCER_REBUILDS.inc()
                self._disposing = loop.run_in_executor(None, dispose, producer)
                raise DeliveryFailed(f"{failed} records not delivered; first: {reason}")
            return bool(left == 0)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), then close; what is still queued then
        is dropped (its offsets were not committed: it is produced again after the restart)."""
        producer = self.producer
        loop = asyncio.get_running_loop()
        left = await loop.run_in_executor(None, producer.flush, timeout_s)
        if left:
            log.warning("producer closed with %s records not delivered (their offsets were not "
                        "committed: read again at the next start)", left)
        self._generation += 1  # the purged records' reports are not failures
        await loop.run_in_executor(None, dispose, producer)

