"""``tally reconcile``: the adapter around ``pipeline.reconcile.core``.

Reads the ledger (the worker's positions changelog), the catalog and the sink's acks topic to their
ends, reads every mapped level from Shopify (paced), compares, writes the delta report (JSON, CSV,
a Kafka topic, a one-line summary, a history file) and with ``--fix`` re-asserts differences
through the push topic, never by writing to Shopify itself.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from pipeline.infra.kafka_read import latest_by_key
from pipeline.infra.kafka_topics import create_missing
from pipeline.infra.kafka_write import new_producer
from pipeline.ledger.catalog import Catalog, CatalogEntry
from pipeline.ledger.locations import Locations, load_locations
from pipeline.ledger.position import LedgerPosition
from pipeline.messages import ShopifyPush, push_key
from pipeline.reconcile import metrics as rm
from pipeline.reconcile.config import ReconcileSettings
from pipeline.reconcile.core import (
    CSV_FIELDS,
    AckState,
    DeltaRow,
    Summary,
    Target,
    compare,
    ledger_key_of,
    summarize,
    to_fix,
)
from pipeline.shopify.client import ShopClient
from pipeline.shopify.reader import read_levels
from pipeline.sink.records import parse_ack_record

log = logging.getLogger("tally.reconcile")


@dataclass
class RunResult:
    summary: Summary
    rows: list[DeltaRow]
    json_path: Path
    csv_path: Path


def read_inputs(settings: ReconcileSettings) -> tuple[dict[str, LedgerPosition], Catalog,
                                                      dict[str, AckState]]:
    """Ledger positions, catalog and acks, each read to its end."""
    changelog = settings.positions_changelog
    positions = {}
    for key, raw in latest_by_key(settings.bootstrap, changelog, timeout=120).items():
        try:
            positions[key] = LedgerPosition.from_json(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable ledger position skipped")
    entries = []
    for raw in latest_by_key(settings.bootstrap, settings.topics.catalog).values():
        try:
            d = json.loads(raw)
            entries.append(CatalogEntry(d["shop"], d["sku"], d["inventory_item_id"]))
        except (ValueError, KeyError, TypeError):
            continue
    acks: dict[str, AckState] = {}
    for key, raw in latest_by_key(settings.bootstrap, settings.topics.shopify_acks).items():
        try:
            ack, state = parse_ack_record(raw)
        except (ValueError, KeyError, TypeError):
            continue
        acks[key] = AckState(acked=state.acked, acked_version=state.acked_version,
                             acknowledged_at=ack.acknowledged_at,
                             target_version=state.target_version)
    return positions, Catalog().with_entries(entries), acks


def keys_for_shop(shop: str, positions: dict[str, LedgerPosition], catalog: Catalog,
                  locations: Locations) -> list[tuple[LedgerPosition, Target]]:
    """Every ledger key that Shopify should show in ``shop`` (branches selling online there)."""
    out = []
    for pos in positions.values():
        if pos.branch not in locations:
            continue
        rules = locations.rules(pos.branch)
        if rules.shop != shop or not rules.fulfills_online or rules.shopify_location_id is None:
            continue
        item = catalog.items.get((shop, pos.sku))
        out.append((pos, Target(shop, item, rules.shopify_location_id)))
    out.sort(key=lambda pt: (pt[0].branch, pt[0].sku))
    return out


def write_reports(directory: Path, summary: Summary, rows: list[DeltaRow]) -> tuple[Path, Path]:
    """``<dir>/<shop>/<run>.json`` and ``.csv`` (every row), plus ``history.jsonl`` (summaries)."""
    shop_dir = directory / summary.shop
    shop_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(summary.started_at))
    base = shop_dir / f"{stamp}-{summary.run_id}"
    json_path, csv_path = base.with_suffix(".json"), base.with_suffix(".csv")
    json_path.write_text(json.dumps({"summary": summary.as_dict(),
                                     "rows": [r.as_dict() for r in rows]}, indent=1))
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow(r.as_dict())
    with (shop_dir / "history.jsonl").open("a") as fh:
        fh.write(json.dumps({**summary.as_dict(), "json": json_path.name,
                             "csv": csv_path.name}) + "\n")
    return json_path, csv_path


def report_history(directory: Path, shop: str) -> list[dict[str, Any]]:
    path = directory / shop / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _producer(bootstrap: str) -> Producer:
    return new_producer(bootstrap, linger_ms=10)


def publish(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    """Produce and wait for every acknowledgment (raises if any record is not delivered)."""
    p = _producer(bootstrap)
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in records:
        while True:
            try:
                p.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    if p.flush(60) or failures:
        raise RuntimeError(f"records not delivered to {topic}: {failures[:3]}")


def reassert_record(row: DeltaRow, run_id: str, now: float) -> tuple[str, bytes]:
    """A push record the sink treats as a forced re-check of the ledger's current value."""
    assert row.inventory_item_id is not None
    push = ShopifyPush(shop=row.shop, inventory_item_id=row.inventory_item_id,
                       location_id=row.location_id, sku=row.sku, branch=row.branch,
                       available=row.expected, ledger_version=row.ledger_version,
                       oldest_event_at=now, emitted_at=now,
                       correlation_id=f"reconcile:{run_id}")
    value = json.dumps({**push.to_dict(), "reassert": True}, separators=(",", ":"),
                       sort_keys=True).encode()
    return push.key, value


def ensure_report_topic(bootstrap: str, topic: str) -> None:
    create_missing(bootstrap, {topic: (1, {})})


async def run_reconcile(settings: ReconcileSettings, shop: str, *, fix: bool = False,
                        threshold: int = 0, progress: Callable[[str], None] | None = None,
                        wall: Callable[[], float] = time.time) -> RunResult:
    """One reconciliation run of one shop."""
    run_id = uuid.uuid4().hex[:10]
    started = wall()
    shop_cfg = settings.shop(shop)
    locations = load_locations(settings.locations_file)
    positions, catalog, acks = read_inputs(settings)
    keys = keys_for_shop(shop, positions, catalog, locations)
    readable = [(i, t) for i, (_, t) in enumerate(keys) if t.inventory_item_id is not None]
    pairs = [(t.inventory_item_id or "", t.location_id) for _, t in readable]
    last_note = [0.0]

    def on_progress(done: int, total: int) -> None:
        now = time.monotonic()
        if progress is not None and (now - last_note[0] >= 2.0 or done == total):
            last_note[0] = now
            progress(f"reconcile {shop}: read {done}/{total} levels")

    client = ShopClient(shop_cfg, settings.http_timeout_s)
    try:
        levels, stats = await read_levels(client, pairs, batch=settings.batch,
                                          progress=on_progress)
    finally:
        await client.close()
    level_of = {i: lv for (i, _), lv in zip(readable, levels, strict=True)}
    now = wall()
    rows = []
    for i, (pos, target) in enumerate(keys):
        ledger = ledger_key_of(pos, locations.rules(pos.branch))
        ack = None
        if target.inventory_item_id is not None:
            ack = acks.get(push_key(shop, target.inventory_item_id, target.location_id))
        rows.append(compare(ledger, target, ack, level_of.get(i), now=now,
                            grace_s=settings.grace_s))
    fixes = to_fix(rows, threshold) if fix else []
    if fixes:
        publish(settings.bootstrap, settings.topics.shopify_push,
                [reassert_record(r, run_id, now) for r in fixes])
    finished = wall()
    summary = summarize(shop, run_id, rows, started_at=started, finished_at=finished,
                        corrected=len(fixes), cost_points=stats.cost_actual, fixed=fix,
                        threshold=threshold)
    json_path, csv_path = write_reports(settings.report_dir, summary, rows)
    report_topic = settings.report_topic or settings.topics.reconciliation
    ensure_report_topic(settings.bootstrap, report_topic)
    records = [(f"{shop}|{r.sku}@{r.branch}", json.dumps(
        {"kind": "delta", "run_id": run_id, **r.as_dict()}).encode()) for r in rows if r.discrepant]
    records.append((shop, json.dumps({"kind": "summary", **summary.as_dict()}).encode()))
    publish(settings.bootstrap, report_topic, records)
    rm.KEYS_CHECKED.labels(shop).inc(summary.keys_checked)
    for cause, n in summary.by_cause.items():
        rm.DISCREPANCIES.labels(shop, cause).inc(n)
    rm.CORRECTED.labels(shop).inc(summary.corrected)
    rm.COST_POINTS.labels(shop).inc(stats.cost_actual)
    rm.DISCREPANCY_RATIO.labels(shop).set(summary.discrepancy_ratio)
    rm.DURATION.labels(shop).set(finished - started)
    rm.LAST_SUCCESS.labels(shop).set(finished)
    log.info(summary.line())
    return RunResult(summary, rows, json_path, csv_path)


def _print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
