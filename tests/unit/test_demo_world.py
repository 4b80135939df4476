"""The demo's world files agree with each other, and its report arithmetic is right."""

from __future__ import annotations

import json
import tomllib

from pipeline.demo.report import compare_levels, end_to_end_latencies, percentile
from pipeline.demo.world import DemoWorld
from pipeline.ledger.decode import decode_event, load_schemas
from pipeline.ledger.events import Rejection
from pipeline.ledger.locations import parse_locations


def test_world_files_describe_the_same_shops_branches_and_stock() -> None:
    world = DemoWorld(shops=2, skus=5, locations=3)
    seed = world.simulator_seed()
    assert [s["domain"] for s in seed["shops"]] == world.shop_domains
    gids = {(b.shop, b.location_name): f"gid://shopify/Location/{i}"
            for i, b in enumerate(world.branches, start=1)}
    locations = parse_locations(tomllib.loads(world.locations_toml(gids)))
    assert sorted(locations) == sorted(b.id for b in world.branches)
    shops = tomllib.loads(world.shops_toml("http://127.0.0.1:1"))["shop"]
    assert [s["domain"] for s in shops] == world.shop_domains
    assert all("token" not in s and s["token_env"].startswith("TALLY_DEMO_TOKEN_") for s in shops)
    first_shop = seed["shops"][0]
    item = first_shop["items"][0]
    branch = next(b for b in world.branches if b.shop == first_shop["domain"])
    assert item["levels"][branch.location_name]["available"] == \
        world.opening_stock[(item["sku"], branch.id)]


def test_opening_snapshots_are_valid_events_for_every_key() -> None:
    world = DemoWorld(shops=1, skus=3, locations=2)
    events = world.opening_snapshots()
    assert len(events) == 3 * 2
    schemas = load_schemas()
    branches = {b.id for b in world.branches}
    for system, raw in events:
        decoded = decode_event(raw, source_topic_system=system, known_locations=branches,
                               schemas=schemas)
        assert not isinstance(decoded, Rejection), decoded
        assert json.loads(raw)["quantity"] == world.opening_stock[
            (decoded.sku, decoded.location)]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) is None


def test_latency_joins_push_and_ack_on_key_and_version() -> None:
    push = {"shop": "s", "inventory_item_id": "i", "location_id": "l", "ledger_version": 3,
            "oldest_event_at": 100.0}
    acks = [dict(push, acknowledged_at=101.5), dict(push, ledger_version=4, acknowledged_at=9.0)]
    assert end_to_end_latencies([push, dict(push, oldest_event_at=99.0)], acks) == [2.5]


def test_compare_levels_lists_every_difference() -> None:
    result = compare_levels({"SKU-A@B": 3, "SKU-B@B": 1}, {"SKU-A@B": 3, "SKU-B@B": 2,
                                                         "SKU-C@B": 0})
    assert not result.all_equal
    assert result.differences == [("SKU-B@B", 1, 2), ("SKU-C@B", -1, 0)]
