"""The webhook intake's Kafka producer: publish-and-wait, rebuilt when it cannot go on.

An idempotent producer that lost messages in an outage can be left in a state it never leaves
(sequence numbers out of order, a fatal error): every later send fails until the process is
restarted. So this publisher treats its producer as disposable: any publish that fails (timeout,
delivery error, fatal error) marks it *dirty*, and the next use closes it (purging whatever it
still holds: those webhooks were answered 503 and Shopify retries them) and builds a fresh one,
no sooner than a backoff (``backoff_s`` doubling up to ``backoff_cap_s``, reset by a success).
``check()`` (called about every second by the intake) asks the broker for metadata, reports
reachability and rebuilds a dirty producer as soon as the broker answers, so the first webhook
after an outage finds a connected producer.

Readiness conditions it reports: ``kafka`` (metadata answered, or no reachability error for
``KAFKA_GRACE_S``) and ``producer`` (not dirty).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline.infra.kafka_write import producer_config
from pipeline.observability.health import KAFKA_GRACE_S, Readiness, kafka_error_callback

log = logging.getLogger("tally.webhooks")
KAFKA_LOG = logging.getLogger("tally.webhooks.kafka")  # librdkafka's own lines, as JSON logs


class PublishFailed(Exception):
    """Kafka did not acknowledge in time (the reason is the exception's text)."""


class _Client:
    """One confluent-kafka producer with the thread that serves its callbacks."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.producer = Producer(config)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="webhooks-producer-poll",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def close(self) -> None:
        """Stop serving callbacks and drop whatever the producer still holds."""
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.producer.purge(in_queue=True, in_flight=True, blocking=False)
        with contextlib.suppress(Exception):
            self.producer.poll(0)  # purged messages' reports fail their waiting publishes now
        with contextlib.suppress(Exception):
            self.producer.close()  # else librdkafka keeps reconnecting until garbage collected


class KafkaPublisher:
    def __init__(self, bootstrap: str, *, timeout_s: float, readiness: Readiness,
                 probe_topic: str, client_id: str = "tally-webhooks",
                 backoff_s: float = 0.25, backoff_cap_s: float = 4.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.readiness = readiness
        self.probe_topic = probe_topic
        self.client_id = client_id
        self.backoff_s, self.backoff_cap_s = backoff_s, backoff_cap_s
        self.clock = clock
        self.rebuilds = 0  # producers replaced after a failure
        self._client: _Client | None = None
        self._dirty: str | None = None
        self._next_build = 0.0
        self._delay = backoff_s
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        readiness.set("producer", True)

    @property
    def dirty(self) -> str | None:
        return self._dirty

    def _config(self) -> dict[str, Any]:
        assert self._loop is not None
        loop = self._loop
        on_error = kafka_error_callback(self.readiness)

        def error_cb(err: KafkaError) -> None:  # poll thread -> event loop
            def handle() -> None:
                on_error(err)
                if err.fatal():
                    self._mark_dirty(f"fatal {err.name()}")
            with contextlib.suppress(RuntimeError):  # loop closed while stopping
                loop.call_soon_threadsafe(handle)

        ms = int(self.timeout_s * 1000)
        return producer_config(self.bootstrap, client_id=self.client_id, linger_ms=1, extra={
            # librdkafka gives up on a message at the same deadline as the HTTP answer, so
            # nothing of a webhook answered 503 is delivered later by this producer.
            "message.timeout.ms": max(ms, 1000), "request.timeout.ms": max(ms, 1000),
            "socket.connection.setup.timeout.ms": max(ms, 1000),
            "error_cb": error_cb, "logger": KAFKA_LOG,
        })

    def _mark_dirty(self, reason: str) -> None:
        if self._dirty is None:
            self._dirty = reason
            self._next_build = self.clock() + self._delay
            self._delay = min(self.backoff_cap_s, self._delay * 2)
            log.warning("Kafka producer will be rebuilt: %s", reason)
        self.readiness.set("producer", False, f"cannot publish: {reason}")

    async def _current(self) -> _Client:
        if self._client is not None and self._dirty is None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is not None and self._dirty is None:
                return self._client
            if self._dirty is not None and self.clock() < self._next_build:
                raise PublishFailed(f"producer rebuild in {self._next_build - self.clock():.1f}"
                                    f" s (after {self._dirty})")
            old, self._client = self._client, None
            if old is not None:
                await asyncio.to_thread(old.close)
                self.rebuilds += 1
                log.info("Kafka producer rebuilt", extra={"fields": {"after": self._dirty,
                                                                     "rebuilds": self.rebuilds}})
            self._loop = asyncio.get_running_loop()
            self._client = _Client(self._config())
            self._dirty = None
            self.readiness.set("producer", True)
            return self._client

    def _succeeded(self) -> None:
        self._delay = self.backoff_s
        self.readiness.set("kafka", True)

    async def publish(self, records: list[tuple[str, str, bytes]]) -> None:
        """Send (topic, key, value) records; return once Kafka acknowledged every one."""
        if not records:
            return
        client = await self._current()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []

        def delivered(fut: asyncio.Future[None]) -> Callable[[Any, Any], None]:
            def settle(err: Any) -> None:
                if fut.done():
                    return
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(PublishFailed(err.name()))

            def on_delivery(err: Any, _msg: Any) -> None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle, err)
            return on_delivery

        try:
            for topic, key, value in records:
                fut: asyncio.Future[None] = loop.create_future()
                client.producer.produce(topic, key=key.encode(), value=value,
                                        on_delivery=delivered(fut))
                futures.append(fut)
            await asyncio.wait_for(asyncio.gather(*futures), self.timeout_s)
        except TimeoutError:
            self._mark_dirty("publish timed out")
            raise PublishFailed("timeout") from None
        except PublishFailed as exc:
            self._mark_dirty(f"delivery failed: {exc}")
            raise
        except (BufferError, KafkaException) as exc:
            self._mark_dirty(f"{type(exc).__name__}: {exc}")
            raise PublishFailed(type(exc).__name__) from exc
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()
                elif not f.cancelled():
                    f.exception()  # retrieved: no "never retrieved" warnings
        self._succeeded()

    async def check(self) -> bool:
        """Ask the broker for metadata (about 2 s at most); rebuild a dirty producer when due.
        Reports ``kafka`` reachability; returns whether the broker answered."""
        client = self._client  # a dirty producer can still ask for metadata
        if client is None or (self._dirty is not None and self.clock() >= self._next_build):
            try:
                client = await self._current()
            except PublishFailed:
                return False  # backing off: the next check tries again
        try:
            md = await asyncio.to_thread(client.producer.list_topics, self.probe_topic, 2.0)
            answered = bool(md.brokers)
        except KafkaException as exc:
            answered = False
            detail = str(exc)
        else:
            detail = "no broker in the metadata answer"
        if answered:
            self.readiness.set("kafka", True)
            if self._dirty is not None:  # the broker is back: rebuild now, not after the backoff
                self._next_build = self.clock()
                self._delay = self.backoff_s
                with contextlib.suppress(PublishFailed):
                    await self._current()
        else:
            self.readiness.set("kafka", False, f"Kafka metadata request failed: {detail}",
                               grace_s=KAFKA_GRACE_S)
        return answered

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.producer.flush, 5)
            await asyncio.to_thread(client.close)
