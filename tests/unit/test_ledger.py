"""The ledger core: apply, ATS, folding, dedupe, publishing, locations and catalog."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ledger import (
    ApplyContext,
    Catalog,
    Duplicate,
    LedgerPosition,
    LocationRules,
    LocationsError,
    Movement,
    PublishAvailable,
    ReportUnmapped,
    ShopifyMapping,
    StaleSnapshotIgnored,
    apply,
    available_to_sell,
    load_locations,
    parse_catalog_lines,
    refresh,
)
from pipeline.ledger.locations import parse_locations
from pipeline.ledger.movements import COMPONENTS, OP_SET_SAFETY_BUFFER, OP_SNAPSHOT
from pipeline.ledger.outputs import (
    AlreadyInSnapshot,
    BelowZero,
    LowStock,
    NotOwner,
    SafetyBufferBreach,
)

SHOP = "tally-demo.myshopify.com"
LOC_GID = "gid://shopify/Location/1002"
RULES = LocationRules("BKN", fulfills_online=True, shop=SHOP, shopify_location_id=LOC_GID)
MAPPING = ShopifyMapping(SHOP, "gid://shopify/InventoryItem/77", LOC_GID)
T0 = 1_773_100_000.0


def ctx(now: float = T0, rules: LocationRules = RULES, **kw: object) -> ApplyContext:
    return ApplyContext(now=now, rules=rules, mapping=kw.pop("mapping", MAPPING), **kw)  # type: ignore[arg-type]


def delta(
    sku: str,
    mark: str,
    t: float,
    source: str = "pos",
    type_: str = "pos.sale",
    role: str = "",
    reverses: str | None = None,
    **changes: int,
) -> Movement:
    return Movement(
        sku,
        "BKN",
        mark,
        source,
        type_,
        t,
        changes=tuple(changes.items()),
        role=role,
        reverses=reverses,
    )


def snapshot(sku: str, mark: str, qty: int, as_of: float, source: str = "erp") -> Movement:
    return Movement(
        sku,
        "BKN",
        mark,
        source,
        f"{source}.on_hand_snapshot",
        as_of + 60,
        op=OP_SNAPSHOT,
        quantity=qty,
        as_of=as_of,
    )


def run(
    moves: list[Movement], context: ApplyContext | None = None, pos: LedgerPosition | None = None
) -> tuple[LedgerPosition, list[object]]:
    outs: list[object] = []
    for m in moves:
        pos, o = apply(pos, m, context or ctx())
        outs.extend(o)
    assert pos is not None
    return pos, outs


# --- strategies -------------------------------------------------------------------------------

_COMP = st.sampled_from(
    [
        "on_hand",
        "pending_sales",
        "allocated",
        "open_orders",
        "reservations",
        "damaged",
        "quality_control",
        "quarantine",
        "in_transit",
    ]
)


@st.composite
def deltas(draw: st.DrawFn, sku: str = "SKU-ANY", n: int = 8) -> list[Movement]:
    count = draw(st.integers(1, n))
    return [
        delta(
            sku,
            f"src:T{i}:1",
            T0 + draw(st.integers(0, 1000)),
            **{draw(_COMP): draw(st.integers(-50, 50))},
        )
        for i in range(count)
    ]


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(deltas(), st.integers(0, 100))
def test_applied_twice_equals_once(moves: list[Movement], seed: int) -> None:
    once, _ = run([snapshot("SKU-TWICE", "erp:S:1", 10, T0 + 500), *moves])
    twice = once
    for m in moves:
        twice, outs = apply(twice, m, ctx())
        assert outs == [Duplicate(m.mark)]
    assert twice is once


@settings(max_examples=150, deadline=None)
@given(deltas(n=6), st.randoms(use_true_random=False))
def test_deltas_commute(moves: list[Movement], rnd: object) -> None:
    base = snapshot("SKU-ANY", "erp:S:1", 20, T0 + 400)
    first, _ = run([base, *moves])
    shuffled = list(moves)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    second, _ = run([base, *shuffled])
    assert first.components() == second.components()
    assert first.pending == second.pending
    assert first.version == second.version
    assert available_to_sell(first, RULES) == available_to_sell(second, RULES)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 500),
    st.lists(st.tuples(st.integers(1, 1000), st.integers(1, 5)), max_size=12),
    st.lists(st.integers(0, 1000), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_snapshot_folding_never_double_counts(
    initial: int, sales: list[tuple[int, int]], snap_times: list[int], rnd: object
) -> None:
    """ERP's count as of t includes exactly the sales at or before t; any delivery order of
    sales and snapshots must end at initial - all sales."""
    sale_moves = [
        delta("SKU-SOLD-BEFORE-SNAPSHOT", f"pos:S{i}:1", T0 + t, pending_sales=q)
        for i, (t, q) in enumerate(sales)
    ]
    snaps = [
        snapshot(
            "SKU-SOLD-BEFORE-SNAPSHOT",
            f"erp:N{j}:1",
            initial - sum(q for t, q in sales if t <= s),
            T0 + s,
        )
        for j, s in enumerate(snap_times)
    ]
    moves = sale_moves + snaps
    rnd.shuffle(moves)  # type: ignore[attr-defined]
    pos, _ = run(moves, ctx(rules=replace(RULES, fulfills_online=False)))
    total_sold = sum(q for _, q in sales)
    assert pos.on_hand - pos.pending_sales == initial - total_sold
    assert pos.on_hand_as_of == T0 + max(snap_times)
    assert all(p.occurred_at > pos.on_hand_as_of for p in pos.pending)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(-1000, 1000), min_size=9, max_size=9),
    st.integers(0, 50),
    st.none() | st.integers(0, 50),
)
def test_ats_never_negative_and_adds_up(
    values: list[int], buffer: int, override: int | None
) -> None:
    pos = LedgerPosition("SKU-ATS", "BKN", *values, safety_buffer_override=override)
    ats = available_to_sell(pos, replace(RULES, safety_buffer=buffer))
    assert ats.value >= 0 and ats.value == max(0, ats.raw)
    assert ats.raw == (
        ats.on_hand
        - ats.allocated
        - ats.pending_sales
        - ats.open_orders
        - ats.reservations
        - ats.unsellable
        - ats.safety_buffer
    )
    assert ats.safety_buffer == (override if override is not None else buffer)


@settings(max_examples=50, deadline=None)
@given(st.integers(50, 400), st.integers(10, 40))
def test_dedupe_marks_stay_bounded(n: int, cap: int) -> None:
    pos = None
    for i in range(n):
        pos, _ = apply(
            pos,
            delta("SKU-HOT", f"pos:T{i}:1", T0 + i, pending_sales=1),
            ctx(now=T0 + i * 60, max_marks=cap, dedupe_retention_s=600),
        )
        assert len(pos.marks) <= min(cap, 11)
    assert pos is not None and f"pos:T{n - 1}:1" in pos.marks


@settings(max_examples=100, deadline=None)
@given(deltas(), st.integers(0, 5))
def test_position_json_round_trip(moves: list[Movement], override: int) -> None:
    pos, _ = run([snapshot("SKU-ANY", "erp:S:1", 10, T0 + 300), *moves])
    pos = replace(pos, safety_buffer_override=override, unpublished_since=T0)
    assert LedgerPosition.from_json(pos.to_json()) == pos


# --- scenarios --------------------------------------------------------------------------------


def test_pos_sale_lowers_ats_until_snapshot_covers_it() -> None:
    sku = "SKU-SOLD-BEFORE-SNAPSHOT"
    pos, _ = run([snapshot(sku, "erp:S1:1", 10, T0)])
    pos, outs = apply(pos, delta(sku, "pos:A:1", T0 + 100, pending_sales=2), ctx())
    assert available_to_sell(pos, RULES).value == 8
    assert [o.available for o in outs if isinstance(o, PublishAvailable)] == [8]
    # ERP's next snapshot includes the sale: on hand 8, nothing pending, ATS unchanged → no push.
    pos, outs = apply(pos, snapshot(sku, "erp:S2:1", 8, T0 + 200), ctx())
    assert (pos.on_hand, pos.pending_sales, pos.pending) == (8, 0, ())
    assert not [o for o in outs if isinstance(o, PublishAvailable)]
    # A sale redelivered under a new mark but older than the snapshot is already counted.
    pos, outs = apply(pos, delta(sku, "pos:OLD:1", T0 + 150, pending_sales=1), ctx())
    assert outs == [AlreadyInSnapshot("pos:OLD:1", T0 + 200)]
    assert available_to_sell(pos, RULES).value == 8


def test_stale_snapshot_is_ignored() -> None:
    sku = "SKU-STALE-SNAPSHOT"
    pos, _ = run([snapshot(sku, "erp:NEW:1", 5, T0 + 100)])
    pos2, outs = apply(pos, snapshot(sku, "erp:OLD:1", 50, T0), ctx())
    assert outs == [StaleSnapshotIgnored("erp:OLD:1", "erp", T0, T0 + 100)]
    assert pos2.components() == pos.components()
    assert "erp:OLD:1" in pos2.marks


def test_void_before_and_after_fold() -> None:
    sku = "SKU-VOIDED-SALE"
    sale = delta(sku, "pos:SALE1:1", T0 + 10, pending_sales=1)
    void = delta(
        sku, "pos:VOID1:1", T0 + 20, type_="pos.void", reverses="pos:SALE1:1", pending_sales=-1
    )
    base = snapshot(sku, "erp:S0:1", 5, T0)
    # Not folded yet: sale and void cancel.
    pos, _ = run([base, sale, void])
    assert available_to_sell(pos, RULES).value == 5
    # ERP folded the sale but not the void: the void credit puts the unit back.
    pos, _ = run([base, sale, snapshot(sku, "erp:S1:1", 4, T0 + 15), void])
    assert (pos.on_hand, pos.pending_sales) == (4, -1)
    assert available_to_sell(pos, RULES).value == 5
    # A second void of the same sale line is a duplicate.
    again = replace(void, mark="pos:VOID2:1")
    _, outs = apply(pos, again, ctx())
    assert outs == [Duplicate("pos:VOID2:1")]


def test_pick_confirmation_moves_allocated_out_of_on_hand() -> None:
    sku = "SKU-PICKED"
    pos, _ = run(
        [
            snapshot(sku, "erp:S:1", 10, T0),
            delta(sku, "wms:A:1", T0 + 1, "wms", "wms.allocation", allocated=3),
        ]
    )
    assert available_to_sell(pos, RULES).value == 7
    pos, _ = apply(
        pos,
        delta(sku, "wms:P:1", T0 + 2, "wms", "wms.pick_confirmation", allocated=-3, on_hand=-3),
        ctx(),
    )
    assert (pos.on_hand, pos.allocated, available_to_sell(pos, RULES).value) == (7, 0, 7)


def test_out_of_order_deallocation_is_clamped_and_reported() -> None:
    pos, outs = run([delta("SKU-DEALLOC-FIRST", "wms:D:1", T0, "wms", allocated=-2)])
    assert BelowZero("SKU-DEALLOC-FIRST", "BKN", "allocated", -2) in outs
    assert available_to_sell(pos, RULES).allocated == 0


@pytest.mark.parametrize(
    ("disposition_changes", "ats"),
    [({"on_hand": 1}, 6), ({"on_hand": 1, "damaged": 1}, 5), ({"on_hand": 1, "quarantine": 1}, 5)],
)
def test_returns_by_disposition(disposition_changes: dict[str, int], ats: int) -> None:
    pos, _ = run(
        [
            snapshot("SKU-RETURNED", "erp:S:1", 5, T0),
            delta("SKU-RETURNED", "pos:R:1", T0 + 5, **disposition_changes),
        ]
    )
    assert available_to_sell(pos, RULES).value == ats


def test_receipts_count_only_from_the_receipt_source() -> None:
    rules = replace(RULES, receipt_source="wms")
    pos, outs = run(
        [
            delta(
                "SKU-RECEIVED-TWICE",
                "erp:GR:1",
                T0,
                "erp",
                "erp.goods_receipt",
                role="receipt",
                on_hand=24,
            ),
            delta(
                "SKU-RECEIVED-TWICE",
                "wms:RCV:1",
                T0,
                "wms",
                "wms.receipt",
                role="receipt",
                on_hand=24,
            ),
        ],
        ctx(rules=rules),
    )
    assert pos.on_hand == 24
    assert NotOwner("erp:GR:1", "erp", "receipt", "wms") in outs


def test_3pl_snapshot_only_sets_3pl_owned_branch() -> None:
    erp_branch, outs = run([snapshot("SKU-3PL", "3pl:X:1", 9, T0, source="3pl")])
    assert erp_branch.on_hand == 0 and isinstance(outs[0], NotOwner)
    tpl_rules = replace(RULES, on_hand_source="3pl")
    pos, _ = run([snapshot("SKU-3PL", "3pl:X:1", 9, T0, source="3pl")], ctx(rules=tpl_rules))
    assert pos.on_hand == 9 and pos.snapshot_as_of == {"3pl": T0}


def test_publish_only_on_change_and_only_when_mapped_and_online() -> None:
    sku = "SKU-PUBLISH"
    pos, outs = run([snapshot(sku, "erp:S:1", 10, T0)])
    [push] = [o for o in outs if isinstance(o, PublishAvailable)]
    assert (push.available, push.ledger_version) == (10, pos.version)
    assert push.breakdown["on_hand"] == 10
    record = push.to_push(emitted_at=T0 + 1)
    assert record.key == f"{SHOP}|gid://shopify/InventoryItem/77|{LOC_GID}"
    # Changing an unrelated counter that leaves ATS the same publishes nothing.
    pos, outs = apply(pos, delta(sku, "x:T:1", T0, in_transit=4), ctx())
    assert not [o for o in outs if isinstance(o, PublishAvailable)]
    # Offline branch: nothing at all.
    _, outs = run(
        [snapshot(sku, "erp:S:1", 10, T0)], ctx(rules=replace(RULES, fulfills_online=False))
    )
    assert outs == []


def test_unmapped_reported_once_per_interval() -> None:
    sku = "SKU-NOT-IN-CATALOG"
    c = ctx(mapping=None, unmapped_report_interval_s=3600)
    pos, outs = run([snapshot(sku, "erp:S:1", 3, T0)], c)
    assert outs == [ReportUnmapped(sku, "BKN", SHOP, 3)]
    pos, outs = apply(pos, delta(sku, "pos:A:1", T0 + 1, pending_sales=1), replace(c, now=T0 + 60))
    assert outs == []
    _, outs = apply(pos, delta(sku, "pos:B:1", T0 + 2, pending_sales=1), replace(c, now=T0 + 3601))
    assert isinstance(outs[0], ReportUnmapped)


def test_min_publish_threshold_and_safety_buffer_override() -> None:
    sku = "SKU-LAST-UNITS"
    rules = replace(RULES, min_publish_threshold=3, safety_buffer=1, low_stock_threshold=4)
    pos, outs = run([snapshot(sku, "erp:S:1", 10, T0)], ctx(rules=rules))
    assert [o.available for o in outs if isinstance(o, PublishAvailable)] == [9]
    pos, outs = apply(pos, delta(sku, "pos:A:1", T0 + 1, pending_sales=7), ctx(rules=rules))
    assert [o.available for o in outs if isinstance(o, PublishAvailable)] == [0]  # 2 < 3
    assert LowStock(sku, "BKN", 2, 4) in outs
    override = Movement(
        sku,
        "BKN",
        "tally:SB:1",
        "tally",
        "tally.safety_buffer",
        T0,
        op=OP_SET_SAFETY_BUFFER,
        quantity=5,
    )
    pos, outs = apply(pos, override, ctx(rules=rules))
    assert available_to_sell(pos, rules).safety_buffer == 5
    assert SafetyBufferBreach(sku, "BKN", 3, 5) in outs  # 3 sellable units, buffer now 5


def test_deferred_publish_and_refresh_bumps_version() -> None:
    sku = "SKU-DEBOUNCED"
    c = ctx(defer_publish=True)
    moves = [
        snapshot(sku, "erp:S:1", 10, T0),
        delta(sku, "pos:A:1", T0 + 1, pending_sales=1).with_observed_at(T0 + 2),
    ]
    pos, outs = run(moves, c)
    assert not [o for o in outs if isinstance(o, PublishAvailable)]
    assert pos.unpublished_since is not None
    new, outs = refresh(pos, ctx(now=T0 + 5))
    [push] = outs
    assert isinstance(push, PublishAvailable) and push.available == 9
    assert push.ledger_version == new.version == pos.version + 1
    assert new.unpublished_since is None
    assert refresh(new, ctx(now=T0 + 6)) == (new, [])


def test_multi_leg_transfer_marks_and_components() -> None:
    from pipeline.ledger.events import SourceEvent
    from pipeline.ledger.movements import to_movements

    ev = SourceEvent(
        "1",
        "transfer.out",
        "erp",
        "TR-1",
        1,
        "2026-03-10T00:00:00Z",
        "SKU-TRANSFER",
        "AUS-WH",
        4,
        to_location="BKN-RETAIL",
        occurred_ts=T0,
    )
    out_leg, in_leg = to_movements(ev)
    assert (out_leg.key, out_leg.mark, out_leg.changes) == (
        "SKU-TRANSFER@AUS-WH",
        "erp:TR-1:1#from",
        (("on_hand", -4),),
    )
    assert (in_leg.key, in_leg.mark, in_leg.changes) == (
        "SKU-TRANSFER@BKN-RETAIL",
        "erp:TR-1:1#to",
        (("in_transit", 4),),
    )


def test_every_component_is_serialized() -> None:
    pos = LedgerPosition("SKU-ALL", "BKN", *range(1, len(COMPONENTS) + 1))
    assert LedgerPosition.from_json(pos.to_json()).components() == pos.components()


def test_locations_example_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "deploy" / "config" / "locations.example.toml"
    locs = load_locations(path)
    assert locs.rules("EU-3PL").on_hand_source == "3pl"
    assert locs.branch_for_shopify_location(SHOP, "gid://shopify/Location/1001") == "AUS-WH"
    assert not locs.rules("MAN-RETAIL").on_shopify


def test_locations_one_branch_per_shopify_location() -> None:
    shopify = {"shop": SHOP, "location_id": LOC_GID}
    data = {
        "branch": [{"id": "A", "shopify": shopify}, {"id": "B", "shopify": shopify}, {"id": "A"}]
    }
    with pytest.raises(LocationsError) as err:
        parse_locations(data)
    assert "'B'" in str(err.value) and "branch 'A'" in str(err.value)
    assert "duplicate branch id 'A'" in str(err.value)


def test_catalog_parse_and_lookup() -> None:
    lines = [
        "shop,sku,inventory_item_id",
        f"{SHOP},SKU-MAPPED,77",
        f"{SHOP},SKU-MAPPED,78",
        "bad-shop,SKU-X,1",
        f"{SHOP},SKU-Y",
    ]
    entries, errors = parse_catalog_lines(lines)
    assert [e.inventory_item_id for e in entries] == ["gid://shopify/InventoryItem/77"]
    assert [e.line_number for e in errors] == [3, 4, 5]
    catalog = Catalog().with_entries(entries)
    assert catalog.mapping_for(RULES, "SKU-MAPPED") == MAPPING
    assert catalog.mapping_for(RULES, "SKU-UNKNOWN") is None


def test_permutations_of_small_mix_give_same_position() -> None:
    sku = "SKU-MIXED-ORDER"
    moves = [
        snapshot(sku, "erp:S:1", 10, T0 + 50),
        delta(sku, "pos:A:1", T0 + 10, pending_sales=1),
        delta(sku, "pos:B:1", T0 + 90, pending_sales=2),
        delta(sku, "wms:C:1", T0 + 95, "wms", allocated=1),
    ]
    results = {run(list(p))[0].components().__repr__() for p in itertools.permutations(moves)}
    assert len(results) == 1
