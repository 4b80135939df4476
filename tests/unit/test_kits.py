"""Kits/bundles and per-SKU channel rules: the pure core (pipeline/ledger/kits.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ledger.kits import (
    ChannelRules,
    ChannelRulesError,
    ComponentUpdate,
    Kit,
    KitComponent,
    KitContext,
    KitState,
    apply_component,
    component_updates,
    kit_ats,
    load_channel_rules,
    parse_channel_rules,
    should_send,
)
from pipeline.ledger.locations import load_locations
from pipeline.ledger.outputs import PublishAvailable, ReportUnmapped
from pipeline.ledger.rules import LocationRules, ShopifyMapping

ROOT = Path(__file__).resolve().parents[2]
SHOP = "kits.myshopify.com"
GIFT = Kit("KIT-GIFT-SET", (KitComponent("MUG", 2), KitComponent("TEA", 1)))
ONLINE = LocationRules("WH", fulfills_online=True, shop=SHOP,
                       shopify_location_id="gid://shopify/Location/1")
KIT_ITEM = ShopifyMapping(SHOP, "gid://shopify/InventoryItem/99", "gid://shopify/Location/1")


def ctx(**kw: object) -> KitContext:
    return KitContext(**{"now": 1000.0, "rules": ONLINE, "mapping": KIT_ITEM, **kw})  # type: ignore[arg-type]


def upd(component: str, ats: int, version: int, kit: str = GIFT.sku) -> ComponentUpdate:
    return ComponentUpdate(kit, "WH", component, ats, version, 999.0)


def feed(updates: list[ComponentUpdate], kit: Kit = GIFT, **kw: object
         ) -> tuple[KitState | None, list[object]]:
    state: KitState | None = None
    outs: list[object] = []
    for u in updates:
        state, out = apply_component(state, u, kit, ctx(**kw))
        outs += out
    return state, outs


# -- kit ATS --------------------------------------------------------------------------------------

def test_kit_ats_is_the_floored_minimum_over_components() -> None:
    assert kit_ats(GIFT, {"MUG": 11, "TEA": 4}) == 4
    assert kit_ats(GIFT, {"MUG": 7, "TEA": 9}) == 3
    assert kit_ats(GIFT, {"MUG": 1, "TEA": 9}) == 0
    assert kit_ats(GIFT, {"MUG": 8}) == 0  # TEA missing counts as 0
    assert kit_ats(GIFT, {"MUG": -3, "TEA": 5}) == 0


kits = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(
    lambda qs: Kit("K", tuple(KitComponent(f"C{i}", q) for i, q in enumerate(qs))))


@given(kits, st.data())
def test_kit_ats_never_exceeds_any_component_over_its_quantity(kit: Kit, data: st.DataObject
                                                               ) -> None:
    ats = {c.sku: data.draw(st.integers(-5, 500)) for c in kit.components
           if data.draw(st.booleans())}
    value = kit_ats(kit, ats)
    assert value >= 0
    for c in kit.components:
        assert value * c.quantity <= max(0, ats.get(c.sku, 0))
    # and it is the largest such value: one more kit would exceed some component
    assert any((value + 1) * c.quantity > max(0, ats.get(c.sku, 0)) for c in kit.components)


@given(kits, st.data())
def test_kit_ats_is_monotone_in_each_component(kit: Kit, data: st.DataObject) -> None:
    ats = {c.sku: data.draw(st.integers(0, 300)) for c in kit.components}
    c = data.draw(st.sampled_from(kit.components))
    more = {**ats, c.sku: ats[c.sku] + data.draw(st.integers(0, 50))}
    assert kit_ats(kit, more) >= kit_ats(kit, ats)
    assert kit_ats(kit, {k: v for k, v in ats.items() if k != c.sku}) <= kit_ats(kit, ats)


@given(kits, st.data())
def test_a_missing_component_counts_as_zero(kit: Kit, data: st.DataObject) -> None:
    ats = {c.sku: data.draw(st.integers(0, 300)) for c in kit.components}
    missing = data.draw(st.sampled_from(kit.components))
    del ats[missing.sku]
    assert kit_ats(kit, ats) == 0 == kit_ats(kit, {**ats, missing.sku: 0})


# -- the kits agent's decision ---------------------------------------------------------------------

def test_component_updates_give_kit_pushes_with_rising_versions() -> None:
    state, outs = feed([upd("MUG", 11, 1), upd("TEA", 4, 1), upd("TEA", 2, 2),
                        upd("MUG", 5, 3), upd("TEA", 0, 3)])
    pushes = [o for o in outs if isinstance(o, PublishAvailable)]
    # MUG alone → 0 (TEA missing); then 4, 2; MUG 5 → still 2 (no push); TEA 0 → 0
    assert [p.available for p in pushes] == [0, 4, 2, 0]
    assert all(p.sku == GIFT.sku and p.inventory_item_id == KIT_ITEM.inventory_item_id
               for p in pushes)
    versions = [p.ledger_version for p in pushes]
    assert versions == sorted(set(versions))
    assert state is not None and state.last_published == 0
    assert pushes[1].breakdown == {"component:MUG": 11, "component:TEA": 4, "kit": 4}


def test_lower_versions_are_ignored_and_equal_ones_republish() -> None:
    state, _ = feed([upd("MUG", 10, 5), upd("TEA", 3, 7)])
    assert state is not None
    stale, outs = apply_component(state, upd("TEA", 100, 6), GIFT, ctx())
    assert stale is state and outs == []
    again, outs = apply_component(state, upd("TEA", 3, 7), GIFT, ctx())
    assert again.components == state.components and again.version == state.version
    assert [(o.available, o.ledger_version) for o in outs] == [(3, state.version)]  # type: ignore[attr-defined]


def test_out_of_order_updates_converge_to_the_latest_versions() -> None:
    ups = [upd("MUG", 10, 1), upd("MUG", 4, 2), upd("TEA", 9, 1), upd("TEA", 1, 2)]
    forward, _ = feed(ups)
    backward, _ = feed(list(reversed(ups)))
    assert forward is not None and backward is not None
    assert forward.components == backward.components == {"MUG": (4, 2), "TEA": (1, 2)}
    assert kit_ats(GIFT, backward.component_ats()) == 1


def test_branch_rules_and_thresholds_apply_to_the_kit() -> None:
    _, outs = feed([upd("MUG", 10, 1), upd("TEA", 10, 1)],
                   rules=LocationRules("WH", fulfills_online=False, shop=SHOP,
                                       shopify_location_id="gid://shopify/Location/1"))
    assert outs == []
    _, outs = feed([upd("MUG", 10, 1), upd("TEA", 2, 1), upd("TEA", 3, 2)],
                   min_publish_threshold=3)
    assert [o.available for o in outs] == [0, 3]  # type: ignore[attr-defined]
    branch_threshold = LocationRules("WH", fulfills_online=True, shop=SHOP,
                                     shopify_location_id="gid://shopify/Location/1",
                                     min_publish_threshold=5)
    _, outs = feed([upd("MUG", 10, 1), upd("TEA", 9, 1)], rules=branch_threshold)
    assert [o.available for o in outs] == [0, 5]  # type: ignore[attr-defined]


def test_unmapped_kit_is_reported_once_per_interval() -> None:
    state, outs = feed([upd("MUG", 10, 1), upd("TEA", 10, 1)], mapping=None)
    assert [type(o) for o in outs] == [ReportUnmapped]
    assert state is not None and state.unmapped_reported_at == 1000.0
    _, outs = apply_component(state, upd("TEA", 4, 2), GIFT, ctx(mapping=None, now=5000.0))
    assert [(o.sku, o.available) for o in outs] == [(GIFT.sku, 4)]  # type: ignore[attr-defined]


def test_unknown_kit_or_foreign_component_is_ignored() -> None:
    state, outs = apply_component(None, upd("MUG", 10, 1), None, ctx())
    assert outs == [] and state.components == {}
    state, outs = apply_component(None, upd("SPOON", 10, 1), GIFT, ctx())
    assert outs == [] and state.components == {}


def test_state_and_update_round_trip_json() -> None:
    state, _ = feed([upd("MUG", 10, 1), upd("TEA", 3, 4)])
    assert state is not None
    assert KitState.from_json(state.to_json()) == state
    u = upd("TEA", 3, 4)
    assert ComponentUpdate.from_json(u.to_json()) == u and u.key == "KIT-GIFT-SET@WH"


def test_ledger_side_sends_on_change_and_after_a_redelivery() -> None:
    assert should_send(None, 5, duplicate=False)
    assert not should_send(None, 0, duplicate=False)
    assert not should_send(5, 5, duplicate=False)
    assert should_send(5, 5, duplicate=True)
    rules = parse_channel_rules({"kit": [
        {"sku": "K1", "components": [{"sku": "A", "quantity": 2}]},
        {"sku": "K2", "components": [{"sku": "A"}, {"sku": "B"}]}]})
    ups = component_updates(rules.kits_containing("A"), "A", "WH", -2, 7, 1.0)
    assert [(u.key, u.ats, u.version) for u in ups] == [("K1@WH", 0, 7), ("K2@WH", 0, 7)]
    assert rules.kits_containing("C") == ()


# -- the file --------------------------------------------------------------------------------------

def test_example_file_loads_and_its_branches_exist() -> None:
    rules = load_channel_rules(ROOT / "deploy" / "config" / "kits.example.toml")
    assert rules.kits["KIT-GIFT-SET"] == GIFT
    assert rules.branches() <= set(load_locations(ROOT / "deploy/config/locations.example.toml"))
    assert rules.min_publish_threshold("TEA", "AUS-WH") == 3
    assert rules.min_publish_threshold("MUG", "BKN-RETAIL") == 4
    assert rules.min_publish_threshold("MUG", "AUS-WH") is None
    assert load_channel_rules(None) == ChannelRules()


def test_per_branch_threshold_beats_the_every_branch_one() -> None:
    rules = parse_channel_rules({"sku": [
        {"sku": "X", "min_publish_threshold": 2},
        {"sku": "X", "branch": "B1", "min_publish_threshold": 0}]})
    assert rules.min_publish_threshold("X", "B1") == 0
    assert rules.min_publish_threshold("X", "B2") == 2


@pytest.mark.parametrize("data, problem", [
    ({"kit": [{"sku": "K", "components": []}]}, "at least one component"),
    ({"kit": [{"sku": "K", "components": [{"sku": "A", "quantity": 0}]}]}, ">= 1"),
    ({"kit": [{"sku": "K", "components": [{"sku": "K"}]}]}, "contain itself"),
    ({"kit": [{"sku": "K", "components": [{"sku": "A"}, {"sku": "A"}]}]}, "twice"),
    ({"kit": [{"sku": "K", "components": [{"sku": "A"}]},
              {"sku": "K", "components": [{"sku": "B"}]}]}, "defined twice"),
    ({"kit": [{"sku": "K", "components": [{"sku": "J"}]},
              {"sku": "J", "components": [{"sku": "A"}]}]}, "nesting"),
    ({"kit": [{"sku": "bad sku\u200b", "components": [{"sku": "A"}]}]}, "U\\+200B"),
    ({"sku": [{"sku": "A", "min_publish_threshold": -1}]}, ">= 0"),
    ({"sku": [{"sku": "A", "min_publish_threshold": 1, "brnach": "X"}]}, "unknown keys"),
    ({"kits": []}, "unknown top-level"),
])
def test_invalid_files_are_refused(data: dict, problem: str) -> None:
    with pytest.raises(ChannelRulesError, match=problem):
        parse_channel_rules(data)
