"""Records for Kafka, kept until Kafka confirms them: nothing a service writes is lost to a
broker outage or to a producer that stopped delivering.

A service that commits its input only after its output is durable (the sink: acks, dead letters,
drift records) needs two things librdkafka does not give by itself:

* **A failed delivery is sent again.** librdkafka gives a record up after ``message.timeout.ms``
  (an outage longer than that); ``flush`` then returns 0 although the record never arrived, and
  an offset committed after it would lose it. The outbox keeps every record until its delivery
  report says it arrived and sends the failed ones again at the next ``flush``.
* **A producer that stopped delivering is replaced.** An idempotent producer can be left, after
  a broker restart, in a state it does not leave (see ``pipeline/webhooks/publisher.py``;
  a sink in CI held its acks for 80 s after the broker was back, until the test gave up). When
  a record has waited ``stuck_after_s`` and no record was confirmed for as long, the outbox
  builds a fresh producer,
  sends every unconfirmed record to it in the order they were first sent, and disposes of the
  old one (its late reports are ignored). At most once per ``stuck_after_s``: during a long
  outage that is a cheap rebuild now and then. A producer that reports a fatal error is replaced
  at the next flush.

Records sent again can arrive twice (a record in flight when its producer was replaced): every
record the sink writes is keyed and idempotent to read twice (the acks topic is compacted to
the latest value per key; a dead letter or drift record read twice says the same thing twice).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter

log = logging.getLogger("tally.kafka.outbox")

PRODUCER_REPLACEMENTS = Counter(
    "tally_kafka_producer_replacements_total",
    "Kafka producers replaced because they delivered nothing while records waited.", ["service"])
RECORDS_RESENT = Counter(
    "tally_kafka_records_resent_total",
    "Records sent to Kafka again after a failed delivery or a producer replacement.",
    ["service"])


@dataclass(slots=True)
class _Record:
    topic: str
    key: bytes | None
    value: bytes
    sent_at: float  # monotonic, when it was first sent


class Outbox:
    """A confluent-kafka producer whose records are kept until confirmed (module docstring).

    ``send`` is called from one thread (the event loop); ``flush`` may run on another. The
    producer's configuration is ``config`` (callbacks included, except ``on_delivery``)."""

    def __init__(self, config: dict[str, Any], *, service: str, stuck_after_s: float = 30.0,
                 factory: Callable[[dict[str, Any]], Any] = Producer,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.factory, self.clock = config, factory, clock
        self.stuck_after_s = stuck_after_s
        self._replaced = PRODUCER_REPLACEMENTS.labels(service)
        self._resent = RECORDS_RESENT.labels(service)
        self._lock = threading.Lock()
        self._records: dict[int, _Record] = {}  # unconfirmed, in the order first sent
        self._failed: set[int] = set()  # unconfirmed and given up by librdkafka: send again
        self._next = 0
        self._generation = 0
        self._progress = clock()  # the last confirmation, or the last producer built
        self._first_error: str | None = None  # of the failures since the last flush
        self._fatal: str | None = None  # the producer hit a fatal error: replace it now
        self.replacements = 0  # producers replaced because they stopped delivering
        self.resent = 0  # records sent again after a failed delivery or a rebuild
        self.producer = factory(config)

    @property
    def unconfirmed(self) -> int:
        """Records sent and not yet confirmed by Kafka."""
        return len(self._records)

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Enqueue one record; it is kept until Kafka confirms it. A full queue is waited out
        (``poll``), never dropped."""
        with self._lock:
            seq = self._next
            self._next += 1
            self._records[seq] = _Record(topic, key, value, self.clock())
        self._produce(seq)
        self.producer.poll(0)

    def _produce(self, seq: int) -> None:
        while True:
            with self._lock:
                record = self._records.get(seq)
                if record is None:
                    return
                producer, generation = self.producer, self._generation
                try:
                    producer.produce(record.topic, record.value, record.key,
                                     on_delivery=functools.partial(self._delivered, generation,
                                                                   seq))
                    return
                except BufferError:
                    pass
                except KafkaException as exc:
                    if not exc.args[0].fatal():
                        raise  # the record's own fault (e.g. too large): the caller's to handle
                    # A fatal producer takes nothing more: the record waits, unconfirmed, for
                    # the producer that replaces it at the next flush.
                    self._fatal = f"{exc.args[0].name()} ({exc.args[0].str()})"
                    return
            producer.poll(0.1)  # the queue is full: serve reports (outside the lock) and retry

    def _delivered(self, generation: int, seq: int, err: KafkaError | None, _msg: Message
                   ) -> None:
        # librdkafka's report, on whichever thread polls or flushes.
        with self._lock:
            if generation != self._generation or seq not in self._records:
                return  # a replaced producer's report: its records were sent again
            if err is None:
                del self._records[seq]
                self._failed.discard(seq)
                self._progress = self.clock()
            else:
                self._failed.add(seq)
                if self._first_error is None:
                    self._first_error = f"{err.name()} ({err.str()})"
                if err.fatal():
                    self._fatal = f"{err.name()} ({err.str()})"

    def flush(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` (call it off the event loop) until every record sent
        before this call is confirmed; True when they are. Records sent meanwhile are not
        waited for, so a busy service still commits. Sends the failed ones again, and replaces
        a producer that has been stuck ``stuck_after_s``."""
        upto = self._next
        self._wait_confirmed(upto, timeout_s)
        # Once per flush, never in a loop: a record refused at once must not spin.
        self._send_failed_again()
        self._replace_if_stuck()
        return self._confirmed_before(upto)

    def _wait_confirmed(self, upto: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._confirmed_before(upto):
            left = deadline - time.monotonic()
            if left <= 0 or self._failed:  # a failed record waits for a flush's re-send
                break
            # Returns early once librdkafka's queue is empty; serves delivery reports.
            self.producer.flush(min(left, 0.1))

    def _confirmed_before(self, upto: int) -> bool:
        with self._lock:
            return not self._records or next(iter(self._records)) >= upto

    def _send_failed_again(self) -> None:
        with self._lock:
            failed = sorted(self._failed)
            self._failed.clear()
            first_error, self._first_error = self._first_error, None
        if not failed:
            return
        # One line per round: a long outage can fail every record held.
        log.warning("%d records not delivered (first: %s); they are sent again", len(failed),
                    first_error)
        self.resent += len(failed)
        self._resent.inc(len(failed))
        for seq in failed:
            self._produce(seq)

    def _replace_if_stuck(self) -> None:
        now = self.clock()
        with self._lock:
            fatal, self._fatal = self._fatal, None
            if not fatal:
                if not self._records or now - self._progress < self.stuck_after_s:
                    return
                oldest = next(iter(self._records.values())).sent_at
                if now - oldest < self.stuck_after_s:
                    return
            old = self.producer
            self.producer = self.factory(self.config)
            self._generation += 1
            self._progress = now
            self.replacements += 1
            pending = list(self._records)
            self._failed.clear()
        why = (f"fatal error {fatal}" if fatal else
               f"none confirmed for {self.stuck_after_s:.0f} s")
        log.warning("Kafka producer replaced (%s); its %d unconfirmed records are sent again "
                    "through a new producer", why, len(pending))
        self.resent += len(pending)
        self._resent.inc(len(pending))
        self._replaced.inc()
        for seq in pending:
            self._produce(seq)
        dispose(old)

    def list_topics(self, topic: str | None, timeout_s: float) -> Any:
        """The current producer's metadata request (a reachability probe)."""
        return self.producer.list_topics(topic, timeout_s)

    def close(self, timeout_s: float) -> int:
        """Deliver what it can within ``timeout_s``, then close; returns how many records were
        left unconfirmed (their input was not committed: it is read again after a restart).
        Nothing is sent again and no producer replaced: what they would send is dropped now."""
        self._wait_confirmed(self._next, timeout_s)
        left = self.unconfirmed
        with self._lock:
            self._generation += 1
        dispose(self.producer)
        return left


def dispose(producer: Any) -> None:
    """Drop what ``producer`` holds and close it (else librdkafka keeps reconnecting); its
    reports of the dropped records are served here."""
    with contextlib.suppress(Exception):
        producer.purge(in_queue=True, in_flight=True, blocking=False)
    with contextlib.suppress(Exception):
        producer.poll(0)
    with contextlib.suppress(Exception):
        producer.close()
