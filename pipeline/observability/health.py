"""One readiness and liveness shape for every Tally service. Pure, apart from the watchdog task.

A service keeps one :class:`Readiness` and reports named conditions into it::

    readiness = Readiness("webhooks")
    readiness.set("kafka", False, "all brokers down", grace_s=5)   # not ready after 5 s of this
    readiness.set("catalog", True)
    status, body = readiness.report()    # -> /readyz: 200 or 503, JSON body naming every cause
    status, body = readiness.liveness()  # -> /healthz: 503 only for ``live=True`` conditions

Rules:

- ``/readyz`` is 503 while any condition is failing, and its body names each failing condition
  with its detail and for how long it has failed. A condition set with ``grace_s`` counts as
  failing only once it has been failing for that long without a break (a broker blip of a second
  is not an outage).
- ``/healthz`` is 503 only for conditions set with ``live=True``: states a restart would cure (the
  event loop blocked, a client that cannot leave a fatal state). Anything that a restart would
  not help (Kafka down, a shop halted) is readiness only, so an orchestrator does not restart a
  whole fleet because the broker is away.
- :class:`LoopWatchdog` measures how late the event loop wakes up; a wake-up later than
  ``threshold_s`` sets the live condition ``event_loop`` failing for ``hold_s`` seconds, so a
  liveness probe that gets through between two stalls still sees it.

Every condition is also exported as ``tally_readiness_condition_ok{service,condition}`` (1/0)
and ``tally_ready{service}`` (1/0) when scraped, for the "not ready for N minutes" alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import REGISTRY, GaugeMetricFamily

Clock = Callable[[], float]


@dataclass
class Condition:
    ok: bool
    detail: str
    since: float  # when the condition last changed between ok and failing
    grace_s: float
    live: bool

    def failing(self, now: float) -> bool:
        return not self.ok and now - self.since >= self.grace_s


class Readiness:
    """Named conditions of one service → ``/readyz`` and ``/healthz`` answers."""

    def __init__(self, service: str, clock: Clock = time.monotonic) -> None:
        self.service = service
        self.clock = clock
        self._conditions: dict[str, Condition] = {}
        _LIVE.add(self)

    def set(self, name: str, ok: bool, detail: str = "", *, grace_s: float = 0.0,
            live: bool = False) -> None:
        """Report condition ``name``. A failing condition keeps the time it started failing
        across repeated ``set`` calls, so ``grace_s`` measures an unbroken failure."""
        now = self.clock()
        old = self._conditions.get(name)
        since = old.since if old is not None and old.ok == ok else now
        self._conditions[name] = Condition(ok, "" if ok else detail, since, grace_s, live)

    def close(self) -> None:
        """The service stopped: its conditions are no longer exported to Prometheus (a process
        that runs a service more than once, such as a test run, would report the dead one)."""
        _LIVE.discard(self)

    def clear(self, name: str) -> None:
        """Forget a condition (e.g. a shop no longer configured)."""
        self._conditions.pop(name, None)

    def failing(self, *, live_only: bool = False) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {name: {"detail": c.detail, "for_s": round(now - c.since, 1)}
                for name, c in sorted(self._conditions.items())
                if c.failing(now) and (c.live or not live_only)}

    def conditions(self) -> Iterator[tuple[str, bool]]:
        """(name, counted as ok now) for every condition."""
        now = self.clock()
        for name, c in sorted(self._conditions.items()):
            yield name, not c.failing(now)

    def ready(self) -> bool:
        return not self.failing()

    def report(self) -> tuple[int, dict[str, Any]]:
        """``/readyz``: (200 or 503, body). The body names every failing condition."""
        failing = self.failing()
        body: dict[str, Any] = {"service": self.service, "ready": not failing,
                                "checks": {n: ok for n, ok in self.conditions()}}
        if failing:
            body["failing"] = failing
        return (503 if failing else 200), body

    def liveness(self) -> tuple[int, dict[str, Any]]:
        """``/healthz``: 503 only while a condition that a restart would cure is failing."""
        failing = self.failing(live_only=True)
        body: dict[str, Any] = {"service": self.service, "alive": not failing}
        if failing:
            body["failing"] = failing
        return (503 if failing else 200), body


class LoopWatchdog:
    """Sets the live condition ``event_loop`` failing while the loop wakes up late.

    ``start()`` inside the running loop; ``stop()`` (or cancel) when the service stops.
    """

    def __init__(self, readiness: Readiness, *, interval_s: float = 0.5,
                 threshold_s: float = 5.0, hold_s: float = 30.0) -> None:
        self.readiness = readiness
        self.interval_s = interval_s
        self.threshold_s = threshold_s
        self.hold_s = hold_s
        self.max_lag_s = 0.0
        self._last_stall: float | None = None
        self._task: asyncio.Task[None] | None = None
        readiness.set("event_loop", True, live=True)

    def observe(self, lag_s: float) -> None:
        """Record one measured lateness (pure: the loop below feeds it, tests may too)."""
        now = self.readiness.clock()
        self.max_lag_s = max(self.max_lag_s, lag_s)
        if lag_s >= self.threshold_s:
            self._last_stall = now
            self.readiness.set("event_loop", False,
                               f"the event loop was blocked for {lag_s:.1f} s", live=True)
        elif self._last_stall is None or now - self._last_stall >= self.hold_s:
            self.readiness.set("event_loop", True, live=True)

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.observe(max(0.0, time.monotonic() - before - self.interval_s))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- Kafka reachability, from confluent-kafka's error callback --------------------------------

#: librdkafka error names that mean "no broker can be reached right now".
KAFKA_DOWN_ERRORS = frozenset({"_ALL_BROKERS_DOWN", "_TRANSPORT", "_RESOLVE", "_TIMED_OUT"})
#: how long Kafka may be unreachable before a service stops saying it is ready.
KAFKA_GRACE_S = 5.0


def kafka_error_callback(readiness: Readiness, name: str = "kafka",
                         grace_s: float = KAFKA_GRACE_S) -> Callable[[Any], None]:
    """An ``error_cb`` for confluent-kafka clients: reachability errors set ``name`` failing
    (after ``grace_s``); a fatal error sets it failing at once and live (restart needed).
    A metadata request or delivery that succeeds again sets it back."""

    def on_error(err: Any) -> None:
        code = err.name() if hasattr(err, "name") else str(err)
        if getattr(err, "fatal", lambda: False)():
            readiness.set(name, False, f"fatal Kafka client error {code}: {err.str()}",
                          live=True)
        elif code in KAFKA_DOWN_ERRORS:
            detail = err.str() if hasattr(err, "str") else str(err)
            readiness.set(name, False, f"Kafka unreachable ({code}: {detail})",
                          grace_s=grace_s)

    return on_error


async def probe_kafka(readiness: Readiness, bootstrap: str, *, interval_s: float = 2.0,
                      name: str = "kafka", grace_s: float = KAFKA_GRACE_S,
                      topic: str | None = None) -> None:
    """Forever: a cheap metadata request every ``interval_s`` (on a thread) sets ``name``.
    With ``topic``, the request asks for that topic only: metadata for every topic of a shared
    cluster costs the caller CPU that grows with the cluster (3.6 % of a busy worker's samples
    on a broker with a few thousand partitions). Never creates the topic."""
    import logging

    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "reconnect.backoff.max.ms": 1000,
                              "allow.auto.create.topics": False,
                              "logger": logging.getLogger("tally.kafka")}
    admin = AdminClient(config)
    while True:
        try:
            md = await asyncio.to_thread(admin.list_topics, topic, timeout=2.0)
            ok, detail = bool(md.brokers), "no broker in the metadata answer"
        except Exception as exc:  # KafkaException: transport, timed out
            ok, detail = False, str(exc)
        if ok:
            readiness.set(name, True)
        else:
            readiness.set(name, False, f"Kafka metadata request failed: {detail}",
                          grace_s=grace_s)
        await asyncio.sleep(interval_s)


# -- Prometheus ---------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[Readiness] = weakref.WeakSet()


class _Collector:
    """Exports the conditions of every live Readiness at scrape time (grace applied then)."""

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        cond = GaugeMetricFamily("tally_readiness_condition_ok",
                                 "1 while a readiness condition holds, 0 while it fails.",
                                 labels=["service", "condition"])
        ready = GaugeMetricFamily("tally_ready", "1 while the service reports ready (/readyz).",
                                  labels=["service"])
        return cond, ready

    def collect(self) -> Iterator[GaugeMetricFamily]:
        cond, ready = self._families()
        for r in list(_LIVE):
            for name, ok in r.conditions():
                cond.add_metric([r.service, name], 1.0 if ok else 0.0)
            ready.add_metric([r.service], 1.0 if r.ready() else 0.0)
        yield cond
        yield ready

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families())  # registers the names (duplicates are refused)


REGISTRY.register(_Collector())


# -- aiohttp handlers ---------------------------------------------------------------------------

def add_routes(app: Any, readiness: Readiness) -> None:
    """``GET /readyz`` and ``GET /healthz`` on an aiohttp application."""
    from aiohttp import web

    async def readyz(_: web.Request) -> web.Response:
        status, body = readiness.report()
        return web.json_response(body, status=status)

    async def healthz(_: web.Request) -> web.Response:
        status, body = readiness.liveness()
        return web.json_response(body, status=status)

    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", healthz)
