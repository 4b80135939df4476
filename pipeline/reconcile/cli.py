"""``tally reconcile``: one run (``--shop S [--fix] [--threshold N]``) or ``serve`` (a nightly
schedule per shop plus on-demand runs over HTTP: ``POST /reconcile/{shop}?fix=1&threshold=N``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.observability import health, logs
from pipeline.reconcile.service import (
    ReconcileSettings,
    _print_progress,
    report_history,
    run_reconcile,
)
from pipeline.settings import add_flags, load

log = logging.getLogger("tally.reconcile")


def next_run(now: float, at: str) -> float:
    """Epoch seconds of the next ``HH:MM`` (UTC) strictly after ``now``."""
    hour, minute = (int(x) for x in at.split(":"))
    today = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=hour, minute=minute, second=0,
                                                           microsecond=0)
    candidate = today.timestamp()
    return candidate if candidate > now else candidate + 86400.0


class Scheduler:
    """Runs at most one reconciliation per shop at a time; on demand or at the daily time."""

    def __init__(self, settings: ReconcileSettings, at: str) -> None:
        self.settings, self.at = settings, at
        self.locks: dict[str, asyncio.Lock] = {s.domain: asyncio.Lock() for s in settings.shops}
        self.last: dict[str, dict[str, Any]] = {}
        self.readiness = health.Readiness("reconcile")
        self.readiness.set("shops", bool(self.locks), "no shops configured")
        self.readiness.set("kafka", False, "no Kafka metadata answer yet")
        self.retry_delays_s: tuple[float, ...] = (60, 120, 240, 480, 960, 1920)

    async def run(self, shop: str, fix: bool, threshold: int) -> dict[str, Any]:
        lock = self.locks[shop]
        async with lock:
            result = await run_reconcile(self.settings, shop, fix=fix, threshold=threshold,
                                         progress=log.info)
        self.last[shop] = {**result.summary.as_dict(), "json": str(result.json_path),
                           "csv": str(result.csv_path)}
        return self.last[shop]

    async def nightly(self, fix: bool, threshold: int) -> None:
        while True:
            wall = dt.datetime.now(dt.UTC).timestamp()
            await asyncio.sleep(max(1.0, next_run(wall, self.at) - wall))
            for shop in self.locks:
                await self.run_with_retries(shop, fix, threshold)

    async def run_with_retries(self, shop: str, fix: bool, threshold: int) -> bool:
        """A scheduled run, tried again after each delay of ``retry_delays_s`` when it fails
        (e.g. Kafka or Shopify away at the scheduled time), instead of waiting a day."""
        for delay in (*self.retry_delays_s, None):
            try:
                await self.run(shop, fix, threshold)
                return True
            except Exception:
                log.exception("scheduled reconciliation failed", extra={"fields": {
                    "shop": shop, "retry_in_s": delay}})
            if delay is not None:
                await asyncio.sleep(delay)
        return False


def build_web(scheduler: Scheduler) -> web.Application:
    app = web.Application()

    async def trigger(request: web.Request) -> web.Response:
        shop = request.match_info["shop"]
        if shop not in scheduler.locks:
            return web.json_response({"error": f"unknown shop {shop}"}, status=404)
        if scheduler.locks[shop].locked():
            return web.json_response({"error": "a run is in progress"}, status=409)
        fix = request.query.get("fix", "0") in {"1", "true", "yes"}
        threshold = int(request.query.get("threshold", "0"))
        return web.json_response(await scheduler.run(shop, fix, threshold))

    async def last(request: web.Request) -> web.Response:
        shop = request.match_info["shop"]
        return web.json_response({"last": scheduler.last.get(shop), "history": report_history(
            scheduler.settings.report_dir, shop)[-20:]})

    async def metrics(_: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app.router.add_post("/reconcile/{shop}", trigger)
    app.router.add_get("/reconcile/{shop}", last)
    app.router.add_get("/metrics", metrics)
    # Ready: shops configured, Kafka answering (a run reads the changelog and writes fixes).
    health.add_routes(app, scheduler.readiness)
    return app


async def _serve(settings: ReconcileSettings, fix: bool, threshold: int) -> None:
    scheduler = Scheduler(settings, settings.at)
    runner = web.AppRunner(build_web(scheduler), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watchdog = health.LoopWatchdog(scheduler.readiness)
    watchdog.start()
    tasks = [asyncio.create_task(scheduler.nightly(fix, threshold)),
             asyncio.create_task(health.probe_kafka(scheduler.readiness,
                                                    settings.bootstrap, interval_s=5.0))]
    await stop.wait()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await watchdog.stop()
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tally reconcile``."""
    args_in = list(argv or [])
    parser = argparse.ArgumentParser(prog="tally reconcile", description=__doc__)
    parser.add_argument("--shop", help="shop domain (one run)")
    parser.add_argument("--fix", action="store_true",
                        help="re-assert differences above the threshold through the sink")
    parser.add_argument("--threshold", type=int, default=0,
                        help="only fix differences whose size exceeds this many units")
    parser.add_argument("--serve", action="store_true",
                        help="run the nightly schedule and the HTTP trigger instead")
    args = add_flags(parser, ReconcileSettings).parse_args(args_in)
    settings = load(ReconcileSettings, flags=args)
    secrets = []
    for shop in settings.shops:
        with contextlib.suppress(Exception):
            secrets.append(shop.token())
    logs.configure("reconcile", level=settings.log_level, secrets=secrets)
    if args.serve:
        asyncio.run(_serve(settings, args.fix, args.threshold))
        return 0
    if not args.shop:
        parser.error("--shop is required (or --serve)")
    result = asyncio.run(run_reconcile(settings, args.shop, fix=args.fix,
                                       threshold=args.threshold, progress=_print_progress))
    print(result.summary.line())
    print(json.dumps({"json": str(result.json_path), "csv": str(result.csv_path)}))
    unexplained = result.summary.by_cause.get("unexplained", 0)
    return 1 if unexplained else 0
