"""``catalog sync`` against the simulator's productVariants: matches, duplicates, no match."""

from __future__ import annotations

from pipeline.operations.catalog_sync import sync_shop
from pipeline.shopify_sim import SimConfig, run_simulator
from tests.support.sink import shop_configs

DOMAIN = "tally-catalog-sync.myshopify.com"


async def test_sync_maps_known_skus_and_reports_missing() -> None:
    skus = [f"SKU-CS-{i}" for i in range(60)]
    seed = {"shops": [{"domain": DOMAIN, "locations": ["Main"], "items": [
        {"sku": s, "levels": {"Main": {"available": 1}}} for s in skus]}]}
    async with run_simulator(SimConfig(seed=seed)) as sim:
        result = await sync_shop(shop_configs(sim)[0], [*skus, "SKU-CS-NOWHERE"])
        want = {s: f"gid://shopify/InventoryItem/{sim.level(s).item.id}" for s in skus}
    assert {e.sku: e.inventory_item_id for e in result.entries} == want
    assert result.missing == ["SKU-CS-NOWHERE"]
    assert result.duplicates == {}
    assert result.cost_points > 0
