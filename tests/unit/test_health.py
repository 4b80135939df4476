"""The shared readiness shape (pipeline/observability/health.py): grace, liveness, watchdog,
Kafka error callback, and the Prometheus export."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import generate_latest

from pipeline.observability.health import LoopWatchdog, Readiness, kafka_error_callback


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeKafkaError:
    def __init__(self, name: str, text: str, fatal: bool = False) -> None:
        self._name, self._text, self._fatal = name, text, fatal

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._text

    def fatal(self) -> bool:
        return self._fatal


def test_ready_until_a_condition_fails_and_the_body_names_it() -> None:
    clock = FakeClock()
    r = Readiness("svc-a", clock)
    r.set("kafka", True)
    r.set("catalog", True)
    assert r.report() == (200, {"service": "svc-a", "ready": True,
                                "checks": {"catalog": True, "kafka": True}})
    r.set("catalog", False, "catalog topic read to offset 3 of 10")
    clock.now += 2
    status, body = r.report()
    assert status == 503
    assert body["failing"] == {"catalog": {"detail": "catalog topic read to offset 3 of 10",
                                           "for_s": 2.0}}
    assert body["checks"] == {"catalog": False, "kafka": True}
    # Readiness failures never fail liveness: a restart would not load the catalog faster.
    assert r.liveness()[0] == 200
    r.set("catalog", True)
    assert r.report()[0] == 200


def test_grace_counts_an_unbroken_failure_only() -> None:
    clock = FakeClock()
    r = Readiness("svc-b", clock)
    r.set("kafka", False, "all brokers down", grace_s=5)
    clock.now += 4
    r.set("kafka", False, "still down", grace_s=5)  # repeated reports keep the start time
    assert r.report()[0] == 200
    clock.now += 1.5
    status, body = r.report()
    assert status == 503 and body["failing"]["kafka"]["detail"] == "still down"
    r.set("kafka", True)
    clock.now += 1
    r.set("kafka", False, "down again", grace_s=5)  # a new failure starts a new grace
    assert r.report()[0] == 200


def test_live_conditions_fail_healthz_too() -> None:
    clock = FakeClock()
    r = Readiness("svc-c", clock)
    r.set("producer", False, "fatal: out of order sequence", live=True)
    assert r.report()[0] == 503
    status, body = r.liveness()
    assert status == 503 and body["failing"]["producer"]["detail"].startswith("fatal")


def test_kafka_error_callback_maps_librdkafka_errors() -> None:
    clock = FakeClock()
    r = Readiness("svc-d", clock)
    on_error = kafka_error_callback(r, grace_s=3)
    on_error(FakeKafkaError("_ALL_BROKERS_DOWN", "1/1 brokers are down"))
    assert r.report()[0] == 200  # within the grace
    clock.now += 3
    status, body = r.report()
    assert status == 503 and "_ALL_BROKERS_DOWN" in body["failing"]["kafka"]["detail"]
    assert r.liveness()[0] == 200
    on_error(FakeKafkaError("_MSG_TIMED_OUT", "a message timed out"))  # not a reachability error
    assert "_ALL_BROKERS_DOWN" in r.report()[1]["failing"]["kafka"]["detail"]
    on_error(FakeKafkaError("_FATAL", "idempotence violated", fatal=True))
    assert r.liveness()[0] == 503


def test_watchdog_holds_a_stall_then_recovers() -> None:
    clock = FakeClock()
    r = Readiness("svc-e", clock)
    dog = LoopWatchdog(r, threshold_s=2.0, hold_s=10.0)
    dog.observe(0.01)
    assert r.liveness()[0] == 200
    dog.observe(3.5)
    status, body = r.liveness()
    assert status == 503 and "3.5 s" in body["failing"]["event_loop"]["detail"]
    clock.now += 5
    dog.observe(0.01)
    assert r.liveness()[0] == 503  # still within the hold
    clock.now += 6
    dog.observe(0.01)
    assert r.liveness()[0] == 200


async def test_watchdog_sees_a_really_blocked_loop() -> None:
    r = Readiness("svc-f")
    dog = LoopWatchdog(r, interval_s=0.05, threshold_s=0.3, hold_s=60)
    dog.start()
    await asyncio.sleep(0.1)
    time.sleep(0.5)  # block the loop
    await asyncio.sleep(0.2)
    await dog.stop()
    assert dog.max_lag_s >= 0.3
    assert r.liveness()[0] == 503


def test_conditions_are_exported_to_prometheus() -> None:
    r = Readiness("svc-metrics")
    r.set("kafka", False, "down")
    r.set("catalog", True)
    text = generate_latest().decode()
    assert 'tally_readiness_condition_ok{condition="kafka",service="svc-metrics"} 0.0' in text
    assert 'tally_readiness_condition_ok{condition="catalog",service="svc-metrics"} 1.0' in text
    assert 'tally_ready{service="svc-metrics"} 0.0' in text


def test_a_closed_readiness_is_no_longer_exported() -> None:
    r = Readiness("svc-stopped")
    r.set("started", False, "stopping")
    assert 'service="svc-stopped"' in generate_latest().decode()
    r.close()  # the service stopped: a dead one must not keep an alert firing
    assert 'service="svc-stopped"' not in generate_latest().decode()
