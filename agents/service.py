"""The worker as a service: the catalog follower, the reader's rebalance hooks and timers,
readiness, consumer lag and the web pages every service has (``/metrics``, ``/healthz``,
``/readyz``)."""

from __future__ import annotations

import asyncio
import time
from signal import SIGUSR1
from typing import TYPE_CHECKING, Any

from faust.types import TP, Message
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents import faust_internals
from pipeline.observability import health, heap, logs
from pipeline.observability import metrics as m

if TYPE_CHECKING:
    from agents.bootstrap import Worker

REBALANCE_GRACE_S = 15.0  # a rebalance shorter than this does not make the worker unready
NO_PROGRESS_S = 60.0  # a partition with records waiting and none processed this long: unready


class ConsumerLag:
    """Consumer lag per agent, in records and in time (``tally_consumer_lag_*``)."""

    def __init__(self) -> None:
        self.last: dict[str, dict[TP, tuple[int, float | None]]] = {"intake": {}, "ledger": {}}
        self.gauges = {c: (m.LEDGER_LAG_SECONDS.labels(c), m.CONSUMER_LAG_OFFSETS.labels(c))
                       for c in self.last}

    def processed(self, consumer: str, msg: Message) -> None:
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


def report_readiness(w: Worker) -> None:
    """The worker's own readiness conditions, as they are now."""
    readiness, catalog, app = w.readiness, w.catalog, w.app
    readiness.set("catalog", catalog.ready.is_set(), "catalog topic not read to its end yet")
    readiness.set("tables_recovered", faust_internals.tables_recovered(app),
                  "table recovery (changelog replay) under way")
    readiness.set("assignment", not app.rebalancing, "consumer group rebalancing",
                  grace_s=REBALANCE_GRACE_S)
    stuck = w.reader.stuck(time.monotonic(), NO_PROGRESS_S)
    readiness.set("progress", not stuck, f"records wait but none was processed for "
                  f"{NO_PROGRESS_S:.0f} s: {', '.join(stuck[:5])}")


def register(w: Worker) -> None:
    """The catalog follower, the reader's hooks and timers, health and consumer lag."""
    app, reader, catalog, held = w.app, w.reader, w.catalog, w.held

    @app.task
    async def follow_catalog() -> None:
        await catalog.run()

    @app.on_worker_init.connect
    def take_over_reading(app_: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        reader.install()  # before the consumer starts fetching

    @app.on_partitions_revoked.connect
    async def commit_revoked(app_: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[TP] = args[0]  # mode's signals pass it positionally
        # Hand over exactly what was processed; the next owner starts there.
        await reader.commit(revoked)
        reader.restart(revoked)
        held.reset()

    @app.on_partitions_assigned.connect
    async def restart_assigned(app_: Any, /, *args: Any, signal: Any,
                               **kwargs: Any) -> None:
        assigned: set[TP] = args[0]
        # Every assignment starts again at the group's committed offset.
        reader.restart(assigned)
        held.reset()

    @app.timer(interval=w.settings.commit_interval_s)
    async def commit_processed() -> None:
        await reader.commit()

    @app.on_before_shutdown.connect
    async def close_direct_producer(app_: Any, /, *args: Any, signal: Any,
                                    **kwargs: Any) -> None:
        # After the consumer stopped (and the revoked partitions were committed): deliver
        # what is still queued, then close.
        if w.emitter.direct is not None:
            await w.emitter.direct.close()

    settled = False

    @app.timer(interval=1.0)
    async def watch_reading() -> None:
        nonlocal settled
        if not app.rebalancing and catalog.ready.is_set():  # agents hold records until ready
            await reader.watch()
            if not settled and faust_internals.tables_recovered(app):
                settled = True  # the catalog and faust's own state loaded: out of GC's way
                heap.settle("worker")
        report_readiness(w)

    @app.task
    async def watch_health() -> None:
        health.LoopWatchdog(w.readiness).start()
        # kill -USR1 <pid>: every task's stack in the log, to see where a stuck worker waits.
        asyncio.get_running_loop().add_signal_handler(SIGUSR1, logs.dump_tasks)
        # One topic's metadata, not the cluster's: the cost stays flat on a shared cluster.
        await health.probe_kafka(w.readiness, w.settings.bootstrap,
                                 topic=w.settings.topics.movements)

    @app.timer(interval=5.0)
    async def report_consumer_lag() -> None:
        w.lag.report(app.consumer)


def register_pages(w: Worker) -> None:
    """``/metrics``, ``/healthz`` (liveness) and ``/readyz``."""
    app, readiness = w.app, w.readiness

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        status, body = readiness.liveness()
        return web.json(body, status=status)

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        report_readiness(w)
        status, body = readiness.report()
        return web.json(body, status=status)
