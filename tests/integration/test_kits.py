"""Kits on a real broker and a real worker: components' snapshots and sales at a branch give the
kit's pushes (min over components of ATS // quantity) on the push topic, a sold-out component
takes the kit to 0, and a per-SKU minimum publish threshold changes what the component shows."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer

from tests.support.fixtures import SHOP, encode, event, write_locations
from tests.support.kafka import producer, unique
from tests.support.worker import WorkerProcess, produce_events, publish_catalog

KITS_TOML = """
[[kit]]
sku = "KIT-GIFT-SET"
components = [{sku = "MUG", quantity = 2}, {sku = "TEA", quantity = 1}]

[[sku]]
sku = "TEA"
branch = "STORE-ONLINE"
min_publish_threshold = 3
"""
KIT = "KIT-GIFT-SET"


class Pushes:
    """Every record of the push topic, read by one consumer across the test's phases."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("kits"),
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.seen: list[dict] = []

    def of(self, sku: str, branch: str) -> list[dict]:
        return [p for p in self.seen if p["sku"] == sku and p["branch"] == branch]

    def last(self, sku: str, branch: str) -> int | None:
        mine = self.of(sku, branch)
        return max(mine, key=lambda p: p["ledger_version"])["available"] if mine else None

    def wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.2)
            if msg is not None and not msg.error():
                self.seen.append(json.loads(msg.value()))
            elif done():
                return
        seen = [(p["sku"], p["branch"], p["available"]) for p in self.seen]
        assert done(), f"{what}: pushes seen {seen}"

    def settle(self, idle: float = 1.5) -> None:
        """Read until nothing arrives for ``idle`` seconds (no late push changes the answer)."""
        last = time.monotonic()
        while time.monotonic() - last < idle:
            msg = self.consumer.poll(0.2)
            if msg is not None and not msg.error():
                self.seen.append(json.loads(msg.value()))
                last = time.monotonic()

    def close(self) -> None:
        self.consumer.close()


def test_kit_pushes_follow_the_minimum_of_its_components(kafka_bootstrap: str,
                                                         tmp_path: Path) -> None:
    locations_file = write_locations(tmp_path)
    kits_file = tmp_path / "kits.toml"
    kits_file.write_text(KITS_TOML)
    worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations_file,
                           extra_env={"TALLY_KITS_FILE": str(kits_file)})
    worker.create_topics()
    publish_catalog(kafka_bootstrap, worker.topics.catalog, [
        (SHOP, "MUG", "gid://shopify/InventoryItem/1"),
        (SHOP, "TEA", "gid://shopify/InventoryItem/2"),
        (SHOP, KIT, "gid://shopify/InventoryItem/3"),
    ])
    pushes = Pushes(kafka_bootstrap, worker.topics.shopify_push)
    p = producer(kafka_bootstrap)
    worker.start()
    try:
        worker.wait_ready()

        def send(*events: dict) -> None:
            produce_events(p, worker.topics, [encode(e) for e in events])

        # Phase 1: snapshots. STORE-ONLINE holds 1 unit back per SKU (safety buffer).
        at = "2026-03-10T06:00:00Z"
        send(event("erp.on_hand_snapshot", "SNAP-MUG-S", "MUG", "STORE-ONLINE", 11, at, as_of=at),
             event("erp.on_hand_snapshot", "SNAP-TEA-S", "TEA", "STORE-ONLINE", 5, at, as_of=at),
             event("erp.on_hand_snapshot", "SNAP-MUG-W", "MUG", "WH-ONLINE", 3, at, as_of=at),
             event("erp.on_hand_snapshot", "SNAP-TEA-W", "TEA", "WH-ONLINE", 10, at, as_of=at))
        # STORE: MUG ATS 10 → 5 kits, TEA ATS 4 → 4 kits: 4. WH: MUG 3 → 1, TEA 10 → 10: 1.
        # TEA's ATS 4 is above its per-SKU threshold of 3 at the store: shown as is.
        pushes.wait(lambda: pushes.last(KIT, "STORE-ONLINE") == 4
                    and pushes.last(KIT, "WH-ONLINE") == 1
                    and pushes.last("TEA", "STORE-ONLINE") == 4, 30, "kit after snapshots")

        # Phase 2: sales at the store. TEA 4 → 2 (kits 2); MUG 10 → 5 (kits 2): the kit shows 2.
        # TEA's own push is 0 (per-SKU threshold 3 at STORE), yet its 2 units count for the kit.
        send(event("pos.sale", "POS-TEA-1", "TEA", "STORE-ONLINE", 2, "2026-03-10T06:01:00Z"),
             event("pos.sale", "POS-MUG-1", "MUG", "STORE-ONLINE", 5, "2026-03-10T06:01:01Z"))
        pushes.wait(lambda: pushes.last(KIT, "STORE-ONLINE") == 2
                    and pushes.last("TEA", "STORE-ONLINE") == 0
                    and pushes.last("MUG", "STORE-ONLINE") == 5, 20, "kit after sales")

        # Phase 3: TEA sells out at the store → the kit goes to 0 there; WH is untouched.
        send(event("pos.sale", "POS-TEA-2", "TEA", "STORE-ONLINE", 2, "2026-03-10T06:02:00Z"))
        pushes.wait(lambda: pushes.last(KIT, "STORE-ONLINE") == 0, 20, "kit after sell-out")
        pushes.settle()

        store_kit = pushes.of(KIT, "STORE-ONLINE")
        assert pushes.last(KIT, "STORE-ONLINE") == 0
        assert pushes.last(KIT, "WH-ONLINE") == 1
        # Every kit push is a valid ShopifyPush for the kit's own item, versions rising.
        assert all(k["inventory_item_id"] == "gid://shopify/InventoryItem/3"
                   and k["location_id"] == "gid://shopify/Location/2" for k in store_kit)
        versions = [k["ledger_version"] for k in store_kit]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
        # Never above what the components allowed at any time (at most 5 MUG-kits, 4 TEA).
        assert max(k["available"] for k in store_kit) <= 4
        assert store_kit[-1]["breakdown"] == {"component:MUG": 5, "component:TEA": 0, "kit": 0}

        view = json.loads(_get(f"{worker.url}/kits/{KIT}@STORE-ONLINE/"))
        assert view["available_to_sell"] == 0 and view["last_published"] == 0
        assert view["components"]["MUG"]["ats"] == 5
        assert worker.alive()
    finally:
        pushes.close()
        worker.stop()


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()
