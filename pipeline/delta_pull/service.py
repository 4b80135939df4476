"""``tally delta-pull``: poll a source without events for movements since a stored watermark.

Sources: an HTTP JSON endpoint (``GET URL?since=…&until=…`` → ``{"events": [...], "next": url}``
or a bare list) or a folder of CSV exports (one event per row, envelope fields as columns). Each
record is an ordinary v1 event (``schemas/``); ``recorded_at`` (when the source recorded it, the
watermark's clock; ``occurred_at`` if absent) is used for the window and removed before publishing.
Events go to the source's ordinary topic; the watermark advances only after Kafka acknowledged
every one of them (see ``core``). ``refresh`` turns a legacy on-hand export into snapshots.

``poll`` keeps going through failures: a window that cannot be fetched or published is tried
again after a backoff (2, 4, 8 … s, at most 60 s or the interval), with a fresh producer each
time, so a broker or source outage heals by itself. With ``--web-port`` it serves ``/readyz``
(conditions ``kafka`` and ``last_poll``), ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import json
import logging
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.delta_pull.config import DeltaPullSettings
from pipeline.delta_pull.core import Window, advance, next_window
from pipeline.infra.kafka_write import new_producer
from pipeline.observability import health
from pipeline.settings import add_flags, load
from pipeline.topics import Topics

log = logging.getLogger("tally.delta_pull")

INT_FIELDS = {"line", "quantity", "delta", "voided_line"}


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("z", "Z")).timestamp()


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def record_time(event: dict[str, Any]) -> float:
    return parse_time(str(event.get("recorded_at") or event["occurred_at"]))


def to_event(record: dict[str, Any], system: str) -> dict[str, Any]:
    """A source record as a v1 event: typed integers, no empty cells, no ``recorded_at``."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if v is None or v == "" or k == "recorded_at":
            continue
        out[k] = int(v) if k in INT_FIELDS and isinstance(v, str) else v
    out.setdefault("schema_version", "1")
    out.setdefault("source", system)
    out.setdefault("line", 1)
    return out


class Source(Protocol):
    def fetch(self, window: Window) -> list[dict[str, Any]]: ...


@dataclass
class HttpSource:
    url: str
    timeout_s: float = 30.0

    def fetch(self, window: Window) -> list[dict[str, Any]]:
        sep = "&" if "?" in self.url else "?"
        url: str | None = (f"{self.url}{sep}since={urllib.parse.quote(iso(window.since))}"
                           f"&until={urllib.parse.quote(iso(window.until))}")
        out: list[dict[str, Any]] = []
        while url:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as r:
                body = json.loads(r.read())
            if isinstance(body, list):
                out.extend(body)
                break
            out.extend(body.get("events") or [])
            url = body.get("next")
        # The endpoint filters; filtering again keeps the window exact whatever it does.
        return [e for e in out if window.contains(record_time(e))]


@dataclass
class CsvFolderSource:
    directory: Path

    def fetch(self, window: Window) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.directory.glob("*.csv")):
            with path.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    rec = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                    if window.contains(record_time(rec)):
                        out.append(rec)
        return out


@dataclass
class WatermarkStore:
    """One JSON file per poller; written atomically (temp file + rename)."""

    path: Path

    def load(self) -> float | None:
        if not self.path.exists():
            return None
        return float(json.loads(self.path.read_text())["watermark"])

    def save(self, watermark: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"watermark": watermark, "iso": iso(watermark)}))
        os.replace(tmp, self.path)


def publish_events(bootstrap: str, topics: Topics, events: Iterable[dict[str, Any]],
                   on_record: Callable[[int], None] | None = None) -> int:
    """Produce events to their source topics and wait for every acknowledgment."""
    by_system = topics.sources()
    p = new_producer(bootstrap, linger_ms=10, extra={"message.timeout.ms": 60000, "logger": log})
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    n = 0
    for ev in events:
        key = f"{ev.get('sku')}@{ev.get('location')}".encode()
        p.produce(by_system[str(ev["source"])], key=key, value=json.dumps(ev).encode(),
                  on_delivery=on_delivery)
        p.poll(0)
        n += 1
        if on_record is not None:
            on_record(n)  # fault injection in tests: a crash mid-window
    remaining = p.flush(60)
    if remaining or failures:
        with contextlib.suppress(Exception):
            p.purge()  # nothing of a failed window may arrive later: it is re-read whole
            p.flush(0)
        raise RuntimeError(f"{len(failures) + remaining} events not acknowledged: "
                           f"{(failures or ['timed out'])[:3]}")
    return n


@dataclass
class Poller:
    source: Source
    store: WatermarkStore
    bootstrap: str
    system: str
    topics: Topics
    overlap_s: float = 300.0
    settle_s: float = 5.0
    initial_s: float = 0.0

    def poll_once(self, now: float | None = None,
                  on_record: Callable[[int], None] | None = None) -> tuple[Window | None, int]:
        """One window: fetch, publish, wait for acks, then advance the watermark."""
        watermark = self.store.load()
        window = next_window(watermark, time.time() if now is None else now,
                             overlap_s=self.overlap_s, settle_s=self.settle_s,
                             initial_s=self.initial_s)
        if window is None:
            return None, 0
        events = [to_event(r, self.system) for r in self.source.fetch(window)]
        n = publish_events(self.bootstrap, self.topics, events, on_record)
        self.store.save(advance(watermark, window))  # only now: every event is acknowledged
        return window, n


def legacy_snapshots(rows: Iterable[dict[str, str]], as_of: str, system: str = "erp"
                     ) -> list[dict[str, Any]]:
    """A legacy on-hand export (``sku,location,on_hand``) as snapshot events ``as_of`` a time.

    Transaction IDs are ``REFRESH-<as_of>-<location>`` with one line per SKU in SKU order, so
    importing the same export twice is applied once.
    """
    stamp = dt.datetime.fromtimestamp(parse_time(as_of), dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    by_location: dict[str, list[tuple[str, int]]] = {}
    for row in rows:
        raw_qty = row.get("on_hand", row.get("quantity", ""))
        by_location.setdefault(row["location"].strip(), []).append(
            (row["sku"].strip(), int(str(raw_qty).strip())))
    kind = "3pl.on_hand_snapshot" if system == "3pl" else "erp.on_hand_snapshot"
    events = []
    for location in sorted(by_location):
        for line, (sku, qty) in enumerate(sorted(by_location[location]), start=1):
            events.append({"schema_version": "1", "type": kind, "source": system,
                           "transaction_id": f"REFRESH-{stamp}-{location}", "line": line,
                           "occurred_at": as_of, "as_of": as_of, "sku": sku,
                           "location": location, "quantity": max(0, qty)})
    return events


async def run_poller(poller: Poller, interval_s: float, readiness: health.Readiness, *,
                     once: bool = False, retry_cap_s: float = 60.0,
                     report: Callable[[str], None] = print) -> None:
    """Poll every ``interval_s``; a failed window is retried after a backoff (never a crash)."""
    failures = 0
    while True:
        try:
            window, n = await asyncio.to_thread(poller.poll_once)
        except Exception as exc:  # source unreachable, Kafka not acknowledging, bad data
            failures += 1
            readiness.set("last_poll", False, f"{failures} polls failed in a row, last: "
                          f"{exc}"[:300])
            log.warning("poll failed", extra={"fields": {"failures": failures,
                                                         "error": str(exc)[:300]}})
            if once:
                raise
            await asyncio.sleep(min(interval_s, retry_cap_s, 2.0 ** failures))
            continue
        failures = 0
        readiness.set("last_poll", True)
        if window is not None:
            report(f"window {iso(window.since)} .. {iso(window.until)}: {n} events")
        if once:
            return
        await asyncio.sleep(interval_s)


async def _serve_poller(poller: Poller, interval_s: float, once: bool,
                        web_port: int | None, web_host: str = "127.0.0.1") -> None:
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    readiness = health.Readiness("delta-pull")
    readiness.set("last_poll", False, "no poll finished yet")
    tasks: list[asyncio.Task[None]] = []
    runner = None
    watchdog = health.LoopWatchdog(readiness)
    if web_port is not None:
        app = web.Application()
        health.add_routes(app, readiness)

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, web_host, web_port).start()
        readiness.set("kafka", False, "no Kafka metadata answer yet")
        tasks.append(asyncio.create_task(health.probe_kafka(readiness, poller.bootstrap)))
        watchdog.start()
    try:
        await run_poller(poller, interval_s, readiness, once=once,
                         report=lambda line: print(line, flush=True))
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await watchdog.stop()
        if runner is not None:
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tally delta-pull``."""
    parser = argparse.ArgumentParser(prog="tally delta-pull", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    poll = sub.add_parser("poll", help="poll a source for movements since the watermark")
    src = poll.add_mutually_exclusive_group(required=True)
    src.add_argument("--http", help="JSON endpoint URL")
    src.add_argument("--csv-dir", help="folder of CSV exports")
    poll.add_argument("--system", required=True, choices=["erp", "wms", "pos", "3pl"])
    poll.add_argument("--name", help="poller name (watermark file); default the system")
    poll.add_argument("--settle", type=float, default=5.0)
    poll.add_argument("--since", help="initial watermark (RFC 3339) when none is stored")
    poll.add_argument("--once", action="store_true")
    add_flags(poll, DeltaPullSettings)
    ref = sub.add_parser("refresh", help="import a legacy on-hand export as snapshots")
    ref.add_argument("file")
    ref.add_argument("--as-of", required=True, help="RFC 3339 time the export counts up to")
    ref.add_argument("--system", default="erp", choices=["erp", "3pl"])
    add_flags(ref, DeltaPullSettings, only={"bootstrap"})
    args = parser.parse_args(list(argv or []))
    settings = load(DeltaPullSettings, flags=args)
    bootstrap, topics = settings.bootstrap, settings.topics
    if args.action == "refresh":
        with open(args.file, newline="", encoding="utf-8") as fh:
            events = legacy_snapshots(csv.DictReader(fh), args.as_of, args.system)
        n = publish_events(bootstrap, topics, events)
        print(f"published {n} snapshots as of {args.as_of}")
        return 0
    source: Source = HttpSource(args.http) if args.http else CsvFolderSource(Path(args.csv_dir))
    poller = Poller(source, WatermarkStore(settings.state_dir / f"{args.name or args.system}"
                                           ".json"), bootstrap, args.system, topics,
                    overlap_s=settings.overlap_s, settle_s=args.settle,
                    initial_s=parse_time(args.since) if args.since else 0.0)
    asyncio.run(_serve_poller(poller, settings.interval_s, args.once, settings.web_port,
                              settings.web_host))
    return 0
