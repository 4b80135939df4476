"""The ledger worker on a real broker: a mixed stream gives exactly the expected pushes,
dead letters and unmapped reports, and the lookup API shows the position."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pipeline.ledger.catalog import Catalog, CatalogEntry
from pipeline.ledger.locations import load_locations
from tests.support.fixtures import SHOP, encode, event, write_locations
from tests.support.kafka import consume_all, producer, wait_caught_up
from tests.support.oracle import Oracle
from tests.support.worker import (
    WorkerProcess,
    produce_events,
    publish_catalog,
    read_changelog,
    records,
    wait_for_oracle,
)

T0 = "2026-03-10T06:00:00Z"


def _mixed_stream() -> list[tuple[str, bytes]]:
    sale = event("pos.sale", "POS-1", "SKU-SOLD-BEFORE-SNAPSHOT", "STORE-ONLINE", 2,
                 "2026-03-10T06:00:10Z")
    good = [
        event("erp.on_hand_snapshot", "ERP-SNAP-1", "SKU-SOLD-BEFORE-SNAPSHOT", "STORE-ONLINE",
              40, "2026-03-10T06:00:01Z", as_of=T0),
        sale,
        sale,  # a redelivery: applied once
        # A later snapshot that already includes the sale: the sale is folded, not counted twice.
        event("erp.on_hand_snapshot", "ERP-SNAP-2", "SKU-SOLD-BEFORE-SNAPSHOT", "STORE-ONLINE",
              38, "2026-03-10T06:01:00Z", as_of="2026-03-10T06:00:30Z"),
        # A snapshot older than the one applied: ignored.
        event("erp.on_hand_snapshot", "ERP-SNAP-0", "SKU-SOLD-BEFORE-SNAPSHOT", "STORE-ONLINE",
              999, "2026-03-10T05:00:00Z", as_of="2026-03-10T05:00:00Z"),
        event("erp.goods_receipt", "ERP-GR-1", "SKU-PICKED", "WH-ONLINE", 10,
              "2026-03-10T06:00:02Z"),
        event("wms.allocation", "WMS-AL-1", "SKU-PICKED", "WH-ONLINE", 3, "2026-03-10T06:00:03Z"),
        event("wms.pick_confirmation", "WMS-PC-1", "SKU-PICKED", "WH-ONLINE", 2,
              "2026-03-10T06:00:04Z"),
        event("3pl.on_hand_snapshot", "3PL-SNAP-1", "SKU-AT-3PL", "3PL-EU", 120,
              "2026-03-10T06:00:05Z", as_of=T0),
        event("3pl.shipment", "3PL-SHIP-1", "SKU-AT-3PL", "3PL-EU", 5, "2026-03-10T06:00:06Z"),
        event("erp.goods_receipt", "ERP-GR-2", "SKU-UNMAPPED", "WH-ONLINE", 7,
              "2026-03-10T06:00:07Z"),
        event("erp.goods_receipt", "ERP-GR-3", "SKU-RETAIL-ONLY", "STORE-RETAIL-ONLY", 9,
              "2026-03-10T06:00:08Z"),
    ]
    stream = [encode(e) for e in good]
    bad_location = event("erp.goods_receipt", "ERP-BAD-LOC", "SKU-PICKED", "NOWHERE", 1,
                         "2026-03-10T06:00:09Z")
    negative = event("erp.goods_receipt", "ERP-NEG", "SKU-PICKED", "WH-ONLINE", -4,
                     "2026-03-10T06:00:09Z")
    unknown_type = event("erp.teleport", "ERP-TP", "SKU-PICKED", "WH-ONLINE", 1,
                         "2026-03-10T06:00:09Z")
    no_sku = event("erp.goods_receipt", "ERP-NOSKU", "x", "WH-ONLINE", 1, "2026-03-10T06:00:09Z")
    del no_sku["sku"]
    wrong_topic = event("pos.sale", "POS-ON-ERP", "SKU-PICKED", "WH-ONLINE", 1,
                        "2026-03-10T06:00:09Z")
    stream += [
        ("erp", b"{not json"),
        ("pos", b"\xff\xfe\x00garbage"),
        ("erp", json.dumps(bad_location).encode()),
        ("erp", json.dumps(negative).encode()),
        ("erp", json.dumps(unknown_type).encode()),
        ("erp", json.dumps(no_sku).encode()),
        ("erp", json.dumps(wrong_topic).encode()),
    ]
    return stream


def test_mixed_stream_gives_expected_pushes_dead_letters_and_unmapped(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    locations_file = write_locations(tmp_path)
    worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations_file)
    worker.create_topics()
    catalog_rows = [(SHOP, sku, f"gid://shopify/InventoryItem/{i}") for i, sku in enumerate(
        ["SKU-SOLD-BEFORE-SNAPSHOT", "SKU-PICKED", "SKU-AT-3PL", "SKU-RETAIL-ONLY"], start=1)]
    publish_catalog(kafka_bootstrap, worker.topics.catalog, catalog_rows)
    worker.start()
    try:
        worker.wait_ready()
        stream = _mixed_stream()
        produce_events(producer(kafka_bootstrap), worker.topics, stream)

        dead = records(kafka_bootstrap, worker.topics.dead_letter, expect=7, timeout=60)
        assert Counter(d["reason"] for d in dead) == Counter({
            "malformed_json": 1, "not_utf8": 1, "unknown_location": 1,
            "quantity_out_of_range": 1, "unknown_type": 1, "schema_violation": 1,
            "source_mismatch": 1,
        }), dead
        assert all(d["source_topic"] in worker.topics.sources().values() for d in dead)
        assert all(d["source_offset"] is not None and d["detail"] for d in dead)

        # Wait until the ledger has applied everything: the changelog matches the oracle.
        oracle = Oracle(load_locations(locations_file), Catalog().with_entries(
            CatalogEntry(*row) for row in catalog_rows))
        oracle.feed(stream)
        assert len(oracle.rejections) == 7
        assert wait_for_oracle(worker, oracle, timeout=120) == []

        pushes = records(kafka_bootstrap, worker.topics.shopify_push, timeout=20, idle=3)
        final = {}
        for p in pushes:
            final[(p["sku"], p["branch"])] = p["available"]
            assert p["shop"] == SHOP and p["inventory_item_id"].startswith("gid://")
        assert final == {
            ("SKU-SOLD-BEFORE-SNAPSHOT", "STORE-ONLINE"): 37,  # 38 on hand - 1 buffer
            ("SKU-PICKED", "WH-ONLINE"): 7,  # 10 - 2 picked - 1 still allocated
            ("SKU-AT-3PL", "3PL-EU"): 115,  # 120 - 5 shipped
        }
        unmapped = records(kafka_bootstrap, worker.topics.unmapped, timeout=10, idle=2)
        assert [(u["sku"], u["branch"]) for u in unmapped] == [("SKU-UNMAPPED", "WH-ONLINE")]

        view = worker.lookup("SKU-SOLD-BEFORE-SNAPSHOT", "STORE-ONLINE")
        assert view["available_to_sell"] == 37
        assert view["components"]["on_hand"] == 38
        assert view["components"]["pending_sales"] == 0  # folded into the newer snapshot
        assert view["breakdown"]["safety_buffer"] == 1
        assert worker.alive()
    finally:
        worker.stop()


def test_duplicate_only_stream_reaches_dead_letter_never(kafka_bootstrap: str,
                                                         tmp_path: Path) -> None:
    """Every event sent three times is applied once: versions count distinct events."""
    locations_file = write_locations(tmp_path)
    worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations_file)
    worker.create_topics()
    worker.start()
    try:
        worker.wait_ready()
        events = [encode(event("erp.goods_receipt", f"ERP-GR-{i}", "SKU-RETRIED-THRICE",
                               "WH-ONLINE", 1, "2026-03-10T06:00:00Z")) for i in range(20)]
        produce_events(producer(kafka_bootstrap), worker.topics, events * 3)
        # Read the changelog once every record is applied (its writes can pause for seconds).
        wait_caught_up(kafka_bootstrap, worker.app_id,
                       [*worker.topics.sources().values(), worker.topics.movements], 120,
                       worker.alive)
        ledger = read_changelog(kafka_bootstrap, worker.changelog_topic())
        position = ledger["SKU-RETRIED-THRICE@WH-ONLINE"]
        assert position.on_hand == 20
        assert position.version == 20
        assert consume_all(kafka_bootstrap, worker.topics.dead_letter, timeout=3, idle=1) == []
    finally:
        worker.stop()
