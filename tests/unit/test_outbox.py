"""The outbox keeps every record until Kafka confirms it: a failed delivery is sent again, and a
producer that stopped delivering is replaced and its records sent through the new one, in order.
A fake producer stands in for librdkafka (the real broker's outages are in tests/chaos)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from pipeline.infra.outbox import Outbox


class FakeMessage:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic


class FakeProducer:
    """librdkafka's producer as the outbox uses it. ``mode``: "deliver" (flush confirms what it
    holds), "trickle" (confirms ``allowance`` records, then holds the rest), "fail" (flush
    reports a delivery timeout for each), "stuck" (holds everything)."""

    def __init__(self, log: list[tuple[str, bytes | None, bytes]], mode: str = "deliver",
                 full_for: int = 0) -> None:
        self.log, self.mode, self.full_for = log, mode, full_for
        self.queue: list[tuple[str, bytes | None, bytes, Callable[..., None]]] = []
        self.purged = False
        self.allowance = 1
        self.during_flush: Callable[[], None] | None = None  # another thread sending meanwhile

    def produce(self, topic: str, value: bytes, key: bytes | None,
                on_delivery: Callable[..., None]) -> None:
        if self.mode == "fatal":
            raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
        if self.full_for:
            self.full_for -= 1
            raise BufferError("queue full")
        self.queue.append((topic, key, value, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        if self.mode == "stuck" and not self.purged:
            return len(self.queue)
        if self.during_flush is not None:
            held = self.queue
            self.queue = []
            self.during_flush()  # queued after this flush's records: held for the next
            self.queue, pending = held, self.queue
            self.flush_now()
            self.queue = pending
            return len(self.queue)
        return self.flush_now()

    def flush_now(self) -> int:
        if self.mode == "trickle" and not self.purged:
            n, self.allowance = self.allowance, 0
            held, self.queue = self.queue[:n], self.queue[n:]
        else:
            held, self.queue = self.queue, []
        for topic, key, value, report in held:
            if self.purged:
                report(KafkaError(KafkaError._PURGE_QUEUE), FakeMessage(topic))
            elif self.mode == "fail":
                report(KafkaError(KafkaError._MSG_TIMED_OUT), FakeMessage(topic))
            else:
                self.log.append((topic, key, value))
                report(None, FakeMessage(topic))
        return 0

    def purge(self, **_: Any) -> None:
        self.purged = True

    def list_topics(self, topic: str | None, timeout: float) -> str:
        return f"metadata for {topic}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outbox(modes: list[str], clock: Clock | None = None, full_for: int = 0
           ) -> tuple[Outbox, list[tuple[str, bytes | None, bytes]], list[FakeProducer]]:
    """An outbox whose n-th producer behaves as ``modes[n]``; the topic log Kafka would hold."""
    log: list[tuple[str, bytes | None, bytes]] = []
    built: list[FakeProducer] = []

    def factory(config: dict[str, Any]) -> FakeProducer:
        built.append(FakeProducer(log, modes[len(built)], full_for if not built else 0))
        return built[-1]

    return Outbox({}, service="test", factory=factory, clock=clock or Clock(),
                  stuck_after_s=30.0), log, built


def test_confirmed_records_are_forgotten() -> None:
    box, log, _ = outbox(["deliver"])
    box.send("acks", b"k1", b"v1")
    box.send("dlq", None, b"letter")
    assert box.unconfirmed == 2
    assert box.flush(0.2)
    assert log == [("acks", b"k1", b"v1"), ("dlq", None, b"letter")]
    assert box.unconfirmed == 0 and box.resent == 0


def test_a_record_librdkafka_gave_up_on_is_sent_again_and_flush_says_so_until_then() -> None:
    box, log, built = outbox(["fail"])
    box.send("acks", b"SKU-OUTAGE-LONGER-THAN-TIMEOUT", b"v1")
    assert not box.flush(0.2)  # reported failed, sent again: still unconfirmed
    assert box.unconfirmed == 1 and box.resent == 1 and log == []
    built[0].mode = "deliver"  # the broker is back
    assert box.flush(0.2)
    assert log == [("acks", b"SKU-OUTAGE-LONGER-THAN-TIMEOUT", b"v1")]


def test_a_stuck_producer_is_replaced_and_its_records_arrive_in_order() -> None:
    clock = Clock()
    box, log, built = outbox(["stuck", "deliver"], clock)
    for i in range(3):
        box.send("acks", f"SKU-WEDGED-{i}".encode(), b"v")
        clock.now += 1
    assert not box.flush(0.2)
    assert box.replacements == 0  # 3 s: not stuck yet
    clock.now += 30
    assert not box.flush(0.2)  # replaced now; the new producer's records wait for a flush
    assert box.replacements == 1 and built[0].purged
    assert box.flush(0.2)
    assert [key for _, key, _ in log] == [b"SKU-WEDGED-0", b"SKU-WEDGED-1", b"SKU-WEDGED-2"]
    assert box.resent == 3


def test_the_replaced_producers_late_reports_change_nothing() -> None:
    clock = Clock()
    box, log, built = outbox(["stuck", "stuck"], clock)
    box.send("acks", b"SKU-LATE-REPORT", b"v")
    clock.now += 31
    box.flush(0.2)
    assert box.replacements == 1
    built[0].flush(0)  # the old producer reports its purged record: ignored
    assert box.unconfirmed == 1 and log == []


def test_no_replacement_while_records_are_confirmed() -> None:
    # Slow but delivering (the broker just came back after a long outage): records 40 s old
    # wait, but one was just confirmed, so the producer is not replaced.
    clock = Clock()
    box, log, _ = outbox(["trickle", "deliver"], clock)
    for i in range(3):
        box.send("acks", f"SKU-OLD-BUT-MOVING-{i}".encode(), b"v")
    clock.now += 40
    assert not box.flush(0.2)
    assert box.replacements == 0 and len(log) == 1
    clock.now += 31  # nothing confirmed since: stuck after all
    box.producer.mode = "stuck"
    box.flush(0.2)
    assert box.replacements == 1


def test_a_full_queue_is_waited_out_never_dropped() -> None:
    box, log, _ = outbox(["deliver"], full_for=3)
    box.send("acks", b"SKU-QUEUE-FULL", b"v")
    assert box.flush(0.2) and log == [("acks", b"SKU-QUEUE-FULL", b"v")]


def test_close_reports_what_was_left_unconfirmed() -> None:
    box, _, built = outbox(["stuck"])
    box.send("acks", b"SKU-LEFT-AT-STOP", b"v")
    assert box.close(0.1) == 1 and built[0].purged


def test_close_neither_replaces_a_stuck_producer_nor_sends_again() -> None:
    # What a new producer would send is dropped at once: the input is read again after the
    # restart, so replacing the producer during close only costs a connection.
    clock = Clock()
    box, _, built = outbox(["stuck", "deliver"], clock)
    box.send("acks", b"SKU-STUCK-AT-STOP", b"v")
    clock.now += 60
    assert box.close(0.1) == 1
    assert len(built) == 1 and box.replacements == 0 and box.resent == 0


def test_flush_waits_for_the_records_sent_before_it_not_for_those_sent_meanwhile() -> None:
    # A busy sink keeps sending while it flushes for a commit: the commit needs only the
    # records of the offsets it commits.
    box, log, built = outbox(["deliver"])
    box.send("acks", b"SKU-BEFORE-THE-COMMIT", b"v")
    built[0].during_flush = lambda: box.send("acks", b"SKU-DURING-THE-COMMIT", b"v")
    assert box.flush(0.2)
    assert log == [("acks", b"SKU-BEFORE-THE-COMMIT", b"v")] and box.unconfirmed == 1


def test_a_producer_with_a_fatal_error_is_replaced_at_the_next_flush() -> None:
    box, log, built = outbox(["fatal", "deliver"])
    box.send("acks", b"SKU-AFTER-A-FATAL-ERROR", b"v")  # refused: waits, unconfirmed
    assert box.unconfirmed == 1
    assert not box.flush(0.2)  # replaced at its end; the record went to the new producer
    assert box.replacements == 1 and built[0].purged
    assert box.flush(0.2) and log == [("acks", b"SKU-AFTER-A-FATAL-ERROR", b"v")]
