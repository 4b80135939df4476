"""Retail launch scenarios on the real broker, worker, sink, webhook intake and simulator.

One system per module run: the simulator (storefront + signed webhooks), ``tally webhooks``, a
ledger worker subprocess and the sink. Each scenario uses its own SKUs and asserts the ledger,
Shopify's level and the signals.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp

from pipeline.shopify_sim import SimConfig, run_simulator
from pipeline.sink.service import run_sink
from pipeline.webhooks.config import ShopWebhooks, WebhookSettings
from pipeline.webhooks.service import run_webhooks
from tests.support.kafka import producer
from tests.support.sink import settings as sink_settings
from tests.support.sink import shop_configs
from tests.support.worker import WorkerProcess, publish_catalog, records

SHOP = "tally-launch.myshopify.com"
AT = "2026-03-10T06:00:00Z"
LATER = "2026-03-10T06:30:00Z"  # after the opening counts
STOCK = {  # sku -> {sim location: available}
    "LAST-UNIT": {"STORE": 1}, "ROUTED": {"WH": 5, "STORE": 4}, "PICKUP": {"STORE": 3},
    "TRANSFER": {"WH": 20, "STORE": 0}, "DAMAGED": {"STORE": 2}, "CAMPAIGN": {"WH": 6},
    "RETAIL-ONLY": {"WH": 4},
}


def seed() -> dict:
    return {"shops": [{"domain": SHOP, "locations": ["WH", "STORE"], "items": [
        {"sku": sku, "levels": {loc: {"available": q} for loc, q in levels.items()}}
        for sku, levels in STOCK.items()]}]}


def ev(kind: str, txn: str, sku: str, location: str, quantity: int, **extra: object) -> bytes:
    return json.dumps({"schema_version": "1", "type": kind, "source": extra.pop("source", None)
                       or kind.split(".")[0], "transaction_id": txn, "line": 1,
                       "occurred_at": extra.pop("at", AT), "sku": sku, "location": location,
                       "quantity": quantity, **extra}).encode()


async def eventually(check, timeout: float = 30.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last is True or last is None:
                return
        except (AssertionError, OSError, KeyError) as exc:
            last = exc
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not reached in {timeout}s (last: {last!r})")




async def test_retail_launch_scenarios(kafka_bootstrap: str, tmp_path: Path) -> None:
    async with run_simulator(SimConfig(seed=seed())) as sim:
        loc = {name: sim.level("LAST-UNIT", "STORE").location.id if name == "STORE"
               else sim.level("ROUTED", "WH").location.id for name in ("WH", "STORE")}
        locations = tmp_path / "locations.toml"
        locations.write_text(f"""
[[branch]]
id = "WH"
fulfills_online = true
low_stock_threshold = 3
[branch.shopify]
shop = "{SHOP}"
location_id = "gid://shopify/Location/{loc['WH']}"

[[branch]]
id = "STORE"
fulfills_online = true
[branch.shopify]
shop = "{SHOP}"
location_id = "gid://shopify/Location/{loc['STORE']}"

[[branch]]
id = "BACKROOM"
fulfills_online = false
""")
        worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations,
                               extra_env={"TALLY_RESERVATION_SCAN_SECONDS": "0.5"})
        worker.create_topics()
        t = worker.topics
        publish_catalog(kafka_bootstrap, t.catalog, [
            (SHOP, sku, f"gid://shopify/InventoryItem/{sim.level(sku).item.id}")
            for sku in STOCK])
        p = producer(kafka_bootstrap)
        # ERP's opening counts agree with Shopify.
        for sku, levels in STOCK.items():
            for branch, q in levels.items():
                p.produce(t.erp, ev("erp.on_hand_snapshot", f"OPEN-{sku}-{branch}", sku, branch,
                                    q, as_of=AT))
        p.produce(t.erp, ev("erp.on_hand_snapshot", "OPEN-RETAIL", "RETAIL-ONLY", "BACKROOM", 9,
                            as_of=AT))
        assert p.flush(30) == 0
        worker.start()
        os.environ["TALLY_E2E_WEBHOOK_SECRET"] = sim.webhook_secret()
        hooks = WebhookSettings(
            shops=[ShopWebhooks(SHOP, "WH", secret_env="TALLY_E2E_WEBHOOK_SECRET")],
            locations_file=locations, bootstrap=kafka_bootstrap, port=0, topics=t)
        try:
            await asyncio.to_thread(worker.wait_ready)
            async with run_webhooks(hooks) as hooks_url, run_sink(sink_settings(
                    kafka_bootstrap, t, shop_configs(sim), window_s=0.2, hold_for_s=3.0)):
                sim.sim.config.webhook.url = f"{hooks_url}/webhooks"
                sim.sim.config.webhook.routing = True
                await _scenarios(sim, worker, p, kafka_bootstrap)
        finally:
            worker.stop()


def lookup(worker: WorkerProcess, sku: str, branch: str) -> dict:
    return worker.lookup(sku, branch)


async def _scenarios(sim, worker: WorkerProcess, p, bootstrap: str) -> None:  # type: ignore[no-untyped-def]
    t = worker.topics
    level = sim.level

    def components(sku: str, branch: str) -> dict:
        return lookup(worker, sku, branch)["components"]

    await eventually(lambda: components("CAMPAIGN", "WH")["on_hand"] == 6, 60, "opening counts")

    # 1. The last unit sells online while a store associate checks it out at the till.
    store = sim.shop()
    assert sim.sim.place_order(store, level("LAST-UNIT", "STORE"), 1) is not None
    p.produce(t.pos, ev("pos.sale", "TILL-1", "LAST-UNIT", "STORE", 1, at=LATER))
    p.flush(10)
    await eventually(lambda: components("LAST-UNIT", "STORE")["open_orders"] == 1
                     and components("LAST-UNIT", "STORE")["pending_sales"] == 1, 30, "last unit")
    view = lookup(worker, "LAST-UNIT", "STORE")
    assert view["available_to_sell"] == 0 and view["breakdown"]["raw"] == -1
    await asyncio.sleep(1.0)
    assert level("LAST-UNIT", "STORE").get("available") == 0  # never pushed back up

    # 2. An online order routed to the store: held at the store, the warehouse untouched.
    assert sim.sim.place_order(store, level("ROUTED", "STORE"), 2) is not None
    await eventually(lambda: components("ROUTED", "STORE")["open_orders"] == 2
                     and components("ROUTED", "WH")["open_orders"] == 0, 30, "routing")
    await asyncio.sleep(1.0)
    assert level("ROUTED", "STORE").get("available") == 2
    assert level("ROUTED", "WH").get("available") == 5

    # 3. A pickup hold reserves stock at one location, then expires with no further event.
    # Expiry far enough ahead that the hold is seen on Shopify before it lapses, on a busy
    # machine too (an expiry applied within one sink window of the hold merges the two pushes).
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 15))
    p.produce(t.pos, ev("pos.reservation_created", "PICKUP-1", "PICKUP", "STORE", 2,
                        reference="PICKUP-1", expires_at=expires))
    p.flush(10)
    await eventually(lambda: level("PICKUP", "STORE").get("available") == 1
                     and components("PICKUP", "STORE")["reservations"] == 2, 14, "hold pushed")
    await eventually(lambda: level("PICKUP", "STORE").get("available") == 3, 45, "hold expired")
    assert components("PICKUP", "STORE")["reservations"] == 0

    # 4. Warehouse → store transfer, received short and partly damaged.
    p.produce(t.erp, ev("erp.transfer_out", "TR-9-out", "TRANSFER", "WH", 10,
                        to_location="STORE", reference="TR-9", at=LATER))
    p.flush(10)
    await eventually(lambda: level("TRANSFER", "WH").get("available") == 10, 20, "transfer out")
    assert components("TRANSFER", "STORE")["in_transit"] == 10
    p.produce(t.erp, ev("erp.transfer_receipt", "TR-9-rcv", "TRANSFER", "STORE", 7,
                        reference="TR-9", damaged_quantity=1, complete=True, at=LATER))
    p.flush(10)
    await eventually(lambda: level("TRANSFER", "STORE").get("available") == 7, 20, "receipt")
    c = components("TRANSFER", "STORE")
    assert (c["on_hand"], c["damaged"], c["in_transit"]) == (8, 1, 0)

    # 5. A damaged return is not resold.
    p.produce(t.pos, ev("pos.return", "RET-1", "DAMAGED", "STORE", 1, disposition="damaged",
                        at=LATER))
    p.flush(10)
    await eventually(lambda: components("DAMAGED", "STORE")["damaged"] == 1, 20, "return")
    await asyncio.sleep(0.8)
    assert level("DAMAGED", "STORE").get("available") == 2

    # 6. A product active at one location and not the other; store staff adjust after a count.
    p.produce(t.erp, ev("erp.cycle_count", "CC-1", "RETAIL-ONLY", "BACKROOM", 5,
                        as_of="2026-03-10T07:00:00Z", at=LATER))
    p.produce(t.erp, ev("erp.cycle_count", "CC-2", "RETAIL-ONLY", "WH", 3,
                        as_of="2026-03-10T07:00:00Z", at=LATER))
    p.flush(10)
    await eventually(lambda: level("RETAIL-ONLY", "WH").get("available") == 3, 20, "count")
    assert components("RETAIL-ONLY", "BACKROOM")["on_hand"] == 5  # never published

    # 7. A campaign pauses when stock falls below its threshold: the low-stock signal.
    async with aiohttp.ClientSession():
        for _ in range(3):
            assert sim.sim.place_order(store, level("CAMPAIGN", "WH"), 1) is not None
    await eventually(lambda: components("CAMPAIGN", "WH")["open_orders"] == 3, 30, "campaign")
    signals = await asyncio.to_thread(records, bootstrap, t.low_stock, timeout=10, idle=2)
    assert [(s["sku"], s["branch"], s["available"]) for s in signals
            if s["sku"] == "CAMPAIGN"] == [("CAMPAIGN", "WH", 3)]
    assert level("CAMPAIGN", "WH").get("available") == 3
    assert sim.stats["orders"]["oversold"] == 0
