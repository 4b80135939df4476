"""Prove: drop a share of source events and of Shopify webhooks, then the delta pull and a
reconciliation repair every key and explain every difference (real broker, worker, sink,
simulator)."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import time
from pathlib import Path

from pipeline.delta_pull.service import CsvFolderSource, Poller, WatermarkStore
from pipeline.ledger.ats import available_to_sell
from pipeline.ledger.locations import load_locations
from pipeline.reconcile.core import IN_SYNC, MANUAL_EDIT, UNRECORDED_ORDERS
from pipeline.reconcile.service import ReconcileSettings, report_history, run_reconcile
from pipeline.shopify_sim import SimConfig, run_simulator
from pipeline.sink.service import run_sink
from tests.support.fixtures import encode, event
from tests.support.kafka import consume_all, producer, unique
from tests.support.oracle import Oracle
from tests.support.sink import settings, shop_configs, wait_until
from tests.support.worker import (
    WorkerProcess,
    produce_events,
    publish_catalog,
    read_changelog,
)

DOMAIN = "tally-reconcile.myshopify.com"
SKUS = [f"SKU-REC-{i:02d}" for i in range(24)]
FIELDS = ["schema_version", "type", "source", "transaction_id", "line", "occurred_at",
          "recorded_at", "sku", "location", "quantity", "as_of"]


def source_events() -> list[dict]:
    evs = []
    for i, sku in enumerate(SKUS):
        evs.append(event("erp.on_hand_snapshot", f"SNAP-{i}", sku, "WH-ONLINE", 20 + i,
                         "2026-03-10T06:00:00Z", as_of="2026-03-10T06:00:00Z"))
        if i % 2 == 0:
            evs.append(event("pos.sale", f"POS-{i}", sku, "WH-ONLINE", 1 + i % 3,
                             "2026-03-10T06:10:00Z"))
    for e in evs:
        e["recorded_at"] = e["occurred_at"]
    return evs


def write_csv(directory: Path, events: list[dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "export.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for e in events:
            w.writerow({k: e.get(k, "") for k in FIELDS})


async def test_dropped_events_and_webhooks_repaired_and_explained(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    seed = {"shops": [{"domain": DOMAIN, "locations": ["Main"], "items": [
        {"sku": s, "levels": {"Main": {"available": 0}}} for s in SKUS]}]}
    async with run_simulator(SimConfig(seed=seed)) as sim:
        loc_gid = f"gid://shopify/Location/{sim.level(SKUS[0]).location.id}"
        locations_file = tmp_path / "locations.toml"
        locations_file.write_text(
            f'[[branch]]\nid = "WH-ONLINE"\nfulfills_online = true\n[branch.shopify]\n'
            f'shop = "{DOMAIN}"\nlocation_id = "{loc_gid}"\n')
        locations = load_locations(locations_file)
        worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations_file, partitions=2)
        worker.create_topics()
        publish_catalog(kafka_bootstrap, worker.topics.catalog, [
            (DOMAIN, s, f"gid://shopify/InventoryItem/{sim.level(s).item.id}") for s in SKUS])
        events = source_events()
        write_csv(tmp_path / "erp-export", events)
        # A share of the source events never reaches Kafka (the source's stream was down).
        streamed = [e for e in events if rng.random() >= 0.3]
        dropped = len(events) - len(streamed)
        assert dropped > 0
        produce_events(producer(kafka_bootstrap), worker.topics,
                       [encode({k: v for k, v in e.items() if k != "recorded_at"})
                        for e in streamed])
        full = Oracle(locations)
        full.feed([encode({k: v for k, v in e.items() if k != "recorded_at"}) for e in events])
        truth = {s: available_to_sell(full.positions[f"{s}@WH-ONLINE"],
                                      locations.rules("WH-ONLINE")).value for s in SKUS}
        worker.start()
        try:
            worker.wait_ready()
            async with run_sink(settings(kafka_bootstrap, worker.topics, shop_configs(sim),
                                         window_s=0.3, hold_for_s=1.0)):
                # The delta pull catches what the stream dropped (the rest is deduplicated).
                poller = Poller(CsvFolderSource(tmp_path / "erp-export"),
                                WatermarkStore(tmp_path / "wm.json"), kafka_bootstrap, "erp",
                                worker.topics, overlap_s=60, settle_s=0)
                _, pulled = poller.poll_once()
                assert pulled == len(events)
                await wait_until(lambda: all(sim.level(s).get("available") == truth[s]
                                             for s in SKUS), 60)
                # Webhooks dropped: admin edits (inventory_levels/update lost) and storefront
                # orders (orders/create lost) that the ledger never hears about.
                edited = rng.sample(SKUS, 6)
                for i, s in enumerate(edited):
                    sim.level(s).q["available"] = truth[s] + (5 if i % 2 else -4)
                ordered = [s for s in SKUS if s not in edited][:2]
                for s in ordered:
                    assert sim.sim.place_order(sim.shop(), sim.level(s), 2) is not None
                # Reconciliation reads the ledger's durable state: wait for its changelog.
                deadline = time.monotonic() + 30
                while True:
                    log = read_changelog(kafka_bootstrap, worker.changelog_topic(), timeout=10)
                    if all(available_to_sell(log[f"{s}@WH-ONLINE"], locations.rules(
                            "WH-ONLINE")).value == truth[s] for s in SKUS
                           if f"{s}@WH-ONLINE" in log) and len(log) == len(SKUS):
                        break
                    assert time.monotonic() < deadline, "changelog never caught up"
                # Past the grace (the last ledger change is not "in flight"), and the event loop
                # runs meanwhile: the sink answers the last calls and writes their acks.
                await asyncio.sleep(1.2)
                rs = ReconcileSettings(
                    bootstrap=kafka_bootstrap, app_id=worker.app_id,
                    locations_file=str(locations_file), shops=shop_configs(sim),
                    topics=worker.topics, report_topic=unique("reconciliation"),
                    report_dir=tmp_path / "reports", grace_s=1.0)
                started = time.monotonic()
                first = await run_reconcile(rs, DOMAIN, fix=True, threshold=0)
                elapsed = time.monotonic() - started
                causes = {r.sku: r.cause for r in first.rows}
                assert {s for s, c in causes.items() if c == MANUAL_EDIT} == set(edited), [
                    (r.sku, r.cause, r.explanation) for r in first.rows if r.cause != IN_SYNC]
                assert {s for s, c in causes.items() if c == UNRECORDED_ORDERS} == set(ordered)
                assert all(c == IN_SYNC for s, c in causes.items()
                           if s not in edited and s not in ordered), causes
                for r in first.rows:
                    if r.cause != IN_SYNC:
                        assert r.explanation and r.difference == truth[r.sku] - r.actual
                assert first.summary.corrected == len(edited)
                assert first.summary.cost_points > 0
                # The re-asserts go through the sink: raises wait the hold, then the ledger wins.
                await wait_until(lambda: all(sim.level(s).get("available") == truth[s]
                                             for s in edited), 20)
                await asyncio.sleep(1.2)
                second = await run_reconcile(rs, DOMAIN)
        finally:
            worker.stop()
        assert sim.stats["orders"]["oversold"] == 0
    again = {r.sku: r.cause for r in second.rows}
    assert {s for s, c in again.items() if c != IN_SYNC} == set(ordered)
    assert all(again[s] == UNRECORDED_ORDERS for s in ordered)  # never raised over the sale
    assert all(sim.level(s).get("available") == truth[s] - 2 for s in ordered)
    # Reports: JSON + CSV files, a history, the Kafka topic and the one-line summary.
    assert json.loads(first.json_path.read_text())["summary"]["discrepancies"] == 8
    assert len(first.csv_path.read_text().splitlines()) == len(SKUS) + 1
    assert len(report_history(rs.report_dir, DOMAIN)) == 2
    topic = [json.loads(m.value()) for m in consume_all(kafka_bootstrap, rs.report_topic,
                                                        timeout=10, idle=1.0)]
    assert sum(t["kind"] == "summary" for t in topic) == 2
    assert sum(t["kind"] == "delta" for t in topic) == 8 + 2
    assert "8 differences" in first.summary.line()
    print(f"\nreconcile: {len(SKUS)} keys in {elapsed:.2f}s, "
          f"{first.summary.cost_points:.0f} cost points "
          f"({1000 * first.summary.cost_points / len(SKUS):.0f} per 1,000 keys)")
