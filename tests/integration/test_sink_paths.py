"""The sink on a real broker and the Shopify simulator: coalescing, dead letters, CAS, drift."""

from __future__ import annotations

import time

from pipeline.messages import DeadLetter, ShopifyPush
from pipeline.shopify_sim import SimConfig, run_simulator
from pipeline.sink.records import parse_ack_record
from pipeline.sink.service import run_sink
from tests.support.kafka import consume_all
from tests.support.sink import (
    level_ids,
    make_push,
    produce_pushes,
    read_json,
    seed_acks,
    settings,
    shop_configs,
    sink_topics,
    wait_until,
)

SHOP = "tally-sink-paths.myshopify.com"


def seed(*items: tuple[str, int]) -> dict:
    return {"shops": [{"domain": SHOP, "locations": ["Main"], "items": [
        {"sku": sku, "levels": {"Main": {"available": qty}}} for sku, qty in items]}]}


async def test_coalescing_1000_updates_one_key_few_pushes_last_wins(kafka_bootstrap: str) -> None:
    topics = sink_topics(kafka_bootstrap, "coalesce")
    async with run_simulator(SimConfig(seed=seed(("SKU-COALESCE-HOT", 5)))) as sim:
        ids = level_ids(sim, "SKU-COALESCE-HOT")
        seed_acks(kafka_bootstrap, topics.shopify_acks, [(ids, 5)])  # synced before
        produce_pushes(kafka_bootstrap, topics.shopify_push,
                       (make_push(ids, "SKU-COALESCE-HOT", 100 + v, v) for v in range(1, 1001)))
        async with run_sink(settings(kafka_bootstrap, topics, shop_configs(sim),
                                     window_s=0.5)) as sink:
            await wait_until(lambda: sim.level("SKU-COALESCE-HOT").get("available") == 1100, 30)
            await wait_until(lambda: not sink.offsets.committable() or all(
                p.in_progress == 0 for p in sink.offsets.partitions.values()), 10)
            mutations = sink.stats.calls
            superseded = sink.coalescer.superseded
        stats = sim.stats
    assert sim.level("SKU-COALESCE-HOT").get("available") == 1100
    assert mutations <= 3, mutations  # 1,000 updates, a handful of calls
    assert superseded >= 990
    assert not stats["user_errors"], stats["user_errors"]
    acks = consume_all(kafka_bootstrap, topics.shopify_acks, timeout=10, idle=1.5)
    last = [parse_ack_record(m.value())[0] for m in acks][-1]
    assert (last.available, last.ledger_version) == (1100, 1000)


async def test_unknown_item_dead_lettered_rest_of_batch_lands(kafka_bootstrap: str) -> None:
    # One partition, so the six records arrive in one fetch and form one batch: with four, a
    # later partition's records are (rightly) sent beside the first call, making two applied calls.
    topics = sink_topics(kafka_bootstrap, "dlq", partitions=1)
    skus = [f"SKU-DLQ-GOOD-{i}" for i in range(5)]
    async with run_simulator(SimConfig(seed=seed(*[(s, 3) for s in skus]))) as sim:
        good = [make_push(level_ids(sim, s), s, 40 + i, 1) for i, s in enumerate(skus)]
        shop, _, loc = level_ids(sim, skus[0])
        unknown = make_push((shop, "gid://shopify/InventoryItem/999999999", loc),
                            "SKU-DLQ-UNKNOWN", 7, 1)
        # Every key was synced before; the unknown item was deleted in Shopify since.
        seed_acks(kafka_bootstrap, topics.shopify_acks,
                  [(level_ids(sim, s), 3) for s in skus]
                  + [((shop, unknown.inventory_item_id, loc), 2)])
        produce_pushes(kafka_bootstrap, topics.shopify_push, [*good, unknown])
        async with run_sink(settings(kafka_bootstrap, topics, shop_configs(sim),
                                     window_s=0.3)) as sink:
            await wait_until(lambda: all(sim.level(s).get("available") == 40 + i
                                         for i, s in enumerate(skus)), 20)
            await wait_until(lambda: sink.stats.dead_letters == 1, 10)
            calls = sink.stats.outcomes
            await wait_until(lambda: all(p.in_progress == 0
                                         for p in sink.offsets.partitions.values()), 10)
        dls = [DeadLetter.from_json(m.value()) for m in
               consume_all(kafka_bootstrap, topics.dead_letter, expect=1, timeout=10)]
    assert len(dls) == 1
    # One rejected batch (nothing applied, atomic), then the rest in one call: never blocked.
    assert calls == {"rejected": 1, "applied": 1}, calls
    dl = dls[0]
    assert dl.reason == "invalid_inventory_item"
    assert ShopifyPush.from_json(dl.original).sku == "SKU-DLQ-UNKNOWN"
    response = dl.extra["shopify_response"]
    errors = response["data"]["inventorySetQuantities"]["userErrors"]
    assert any(e["code"] == "INVALID_INVENTORY_ITEM" for e in errors)
    assert dl.source_offset is not None and dl.service == "sink"


async def test_storefront_sale_during_push_never_oversells(kafka_bootstrap: str) -> None:
    """Shopify sells 2 of 5 while the ledger (unaware) pushes 6 after a return of 1."""
    topics = sink_topics(kafka_bootstrap, "race")
    sku = "SKU-RACE-LAST-UNITS"
    async with run_simulator(SimConfig(seed=seed((sku, 5)))) as sim:
        ids = level_ids(sim, sku)
        seed_acks(kafka_bootstrap, topics.shopify_acks, [(ids, 5)])
        lv = sim.level(sku)
        sim.sim.true_stock[(SHOP, lv.item.id, lv.location.id)] = 5
        async with run_sink(settings(kafka_bootstrap, topics, shop_configs(sim),
                                     window_s=0.2, hold_for_s=3.0)) as sink:
            assert sim.sim.place_order(sim.shop(), lv, 2) is not None  # Shopify: 3, true: 3
            sim.sim.true_stock[(SHOP, lv.item.id, lv.location.id)] += 1  # the return: true 4
            produce_pushes(kafka_bootstrap, topics.shopify_push, [make_push(ids, sku, 6, 1)])
            await wait_until(lambda: sink.stats.reads >= 1, 10)  # stale answer, level read
            held_until = time.monotonic() + 1.5
            while time.monotonic() < held_until:  # held: the raise to 6 must not land
                assert lv.get("available") <= 4
                await asyncio_sleep(0.05)
            # Customers buy everything Shopify shows: nothing is oversold.
            while sim.sim.place_order(sim.shop(), lv, 1) is not None:
                pass
            # The ledger learns of the sale and the customers' orders: 6 - 2 - 3 = 1 true unit.
            produce_pushes(kafka_bootstrap, topics.shopify_push, [make_push(ids, sku, 1, 2)])
            await wait_until(lambda: lv.get("available") == 1, 10)
        assert sim.stats["orders"]["oversold"] == 0
        assert sim.stats["orders"]["accepted"] == 1 + 3  # one order of 2, three of 1


async def test_admin_edit_drift_reported_and_repaired_within_bound(kafka_bootstrap: str) -> None:
    topics = sink_topics(kafka_bootstrap, "drift")
    lowered, raised = "SKU-DRIFT-ADMIN-LOWERED", "SKU-DRIFT-ADMIN-RAISED"
    hold, window = 2.0, 0.3
    async with run_simulator(SimConfig(seed=seed((lowered, 10), (raised, 10)))) as sim:
        ids_l, ids_r = level_ids(sim, lowered), level_ids(sim, raised)
        seed_acks(kafka_bootstrap, topics.shopify_acks, [(ids_l, 10), (ids_r, 10)])
        async with run_sink(settings(kafka_bootstrap, topics, shop_configs(sim),
                                     window_s=window, hold_for_s=hold)) as sink:
            # A merchant edits both levels in Shopify admin, behind Tally's back.
            sim.level(lowered).q["available"] = 4
            sim.level(raised).q["available"] = 25
            # The ledger re-asserts its value (e.g. a reconciliation or the next movement).
            produce_pushes(kafka_bootstrap, topics.shopify_push,
                           [make_push(ids_l, lowered, 10, 1), make_push(ids_r, raised, 10, 1)])
            # The bound runs from the level read that found the edit (the stale answer), not
            # from the produce: the sink's group join before it is not part of the repair.
            await wait_until(lambda: sink.stats.reads >= 1, 15)
            start = time.monotonic()
            await wait_until(lambda: sim.level(raised).get("available") == 10, 15)
            await wait_until(lambda: sim.level(lowered).get("available") == 10, hold + 5)
            repaired_in = time.monotonic() - start
        drift = {d["sku"]: d for d in read_json(kafka_bootstrap, topics.drift)}
    assert repaired_in <= hold + window + 2.0, repaired_in
    assert drift[lowered]["cause"] == "hold_expired"
    assert (drift[lowered]["expected"], drift[lowered]["actual"]) == (10, 4)
    assert drift[raised]["cause"] == "shopify_above_ledger"
    assert (drift[raised]["expected"], drift[raised]["actual"]) == (10, 25)


async def asyncio_sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)
