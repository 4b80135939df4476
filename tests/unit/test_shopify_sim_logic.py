"""Pure parts of the Shopify simulator: leaky bucket, cost rules, inventory validation."""

from __future__ import annotations

from graphql import OperationDefinitionNode, parse
from graphql.execution.values import get_variable_values

from pipeline.infra.shopify_schema import fetch, load
from pipeline.shopify_sim.bucket import LeakyBucket
from pipeline.shopify_sim.cost import requested_cost
from pipeline.shopify_sim.idempotency import Claim, IdempotencyStore
from pipeline.shopify_sim.inventory import set_quantities
from pipeline.shopify_sim.state import Shop, new_shop


def test_bucket_charges_refunds_and_refills() -> None:
    b = LeakyBucket.full(100, 10, now=0.0)
    assert b.try_charge(80, now=0.0)
    assert not b.try_charge(30, now=0.0)  # 20 left: refused, nothing taken
    assert b.status(0.0)["currentlyAvailable"] == 20
    b.refund(50, now=0.0)  # requested 80, actual 30
    assert b.status(0.0)["currentlyAvailable"] == 70
    assert b.status(2.5)["currentlyAvailable"] == 95  # +10/s
    assert b.status(100.0)["currentlyAvailable"] == 100  # capped
    assert b.seconds_until(150, now=100.0) == 5.0


def cost_of(query: str, variables: dict[str, object] | None = None) -> int:
    fetch()
    schema = load("2026-10")
    op = parse(query).definitions[0]
    assert isinstance(op, OperationDefinitionNode)
    mutation = op.operation.value == "mutation"
    root = schema.mutation_type if mutation else schema.query_type
    assert root is not None
    coerced = get_variable_values(schema, op.variable_definitions or (), variables or {})
    assert not isinstance(coerced, list)
    return requested_cost(schema, root, op.selection_set, {}, coerced, mutation)


def test_cost_rules() -> None:
    assert cost_of("{ shop { id name } }") == 1  # object 1, scalars 0
    assert cost_of("{ locations(first: 5) { edges { node { id } } } }") == 2 + 5
    assert cost_of("query($n: Int) { locations(first: $n) { nodes { id } } }", {"n": 3}) == 5
    nested = (
        "{ inventoryItems(first: 10) { nodes { id inventoryLevels(first: 2) { nodes { id } } } } }"
    )
    assert cost_of(nested) == 2 + 10 * (1 + 2 + 2)
    mutation = """mutation { inventorySetQuantities(input: {name: "available", reason: "correction",
      quantities: []}) { userErrors { code } } }"""
    assert cost_of(mutation) == 10


def shop_with_unit() -> tuple[Shop, str, str]:
    shop = new_shop("unit.myshopify.com", "standard")
    loc = shop.add_location("Main")
    item = shop.add_sku("SKU-UNIT")
    shop.stock(item, loc, available=4, committed=1)
    return shop, f"gid://shopify/InventoryItem/{item.id}", f"gid://shopify/Location/{loc.id}"


def test_set_quantities_error_codes_are_atomic() -> None:
    shop, item, loc = shop_with_unit()
    rows = [
        {"inventoryItemId": item, "locationId": loc, "quantity": 9, "changeFromQuantity": 4},
        {
            "inventoryItemId": "gid://shopify/InventoryItem/1",
            "locationId": loc,
            "quantity": 1,
            "changeFromQuantity": None,
        },
        {"inventoryItemId": item, "locationId": loc, "quantity": 2, "changeFromQuantity": None},
    ]
    out = set_quantities(
        shop,
        {
            "name": "committed",
            "reason": "because",
            "referenceDocumentUri": "not a uri",
            "quantities": rows,
        },
        "2026-10",
    )
    codes = [e.code for e in out.errors]
    assert codes == [
        "INVALID_NAME",
        "INVALID_REASON",
        "INVALID_REFERENCE_DOCUMENT",
        "INVALID_INVENTORY_ITEM",
        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
    ]
    assert out.group is None and shop.levels[next(iter(shop.levels))].get("available") == 4


def test_set_on_hand_moves_available_by_the_delta() -> None:
    shop, item, loc = shop_with_unit()
    out = set_quantities(
        shop,
        {
            "name": "on_hand",
            "reason": "cycle_count_available",
            "quantities": [
                {"inventoryItemId": item, "locationId": loc, "quantity": 8, "changeFromQuantity": 5}
            ],
        },
        "2026-10",
    )
    assert out.errors == []
    level = next(iter(shop.levels.values()))
    assert (level.get("available"), level.get("committed"), level.get("on_hand")) == (7, 1, 8)
    assert out.group is not None
    assert [(c.name, c.delta) for c in out.group.changes] == [("on_hand", 3), ("available", 3)]


def test_2026_01_compare_quantity_rules() -> None:
    shop, item, loc = shop_with_unit()
    base = {"inventoryItemId": item, "locationId": loc, "quantity": 1}
    inp = {"name": "available", "reason": "correction", "ignoreCompareQuantity": False}
    out = set_quantities(shop, {**inp, "quantities": [base]}, "2026-01")
    assert [e.code for e in out.errors] == ["COMPARE_QUANTITY_REQUIRED"]
    out = set_quantities(shop, {**inp, "quantities": [{**base, "compareQuantity": 3}]}, "2026-01")
    assert [e.code for e in out.errors] == ["COMPARE_QUANTITY_STALE"]
    # changeFromQuantity present (even null) overrides the old fields.
    out = set_quantities(
        shop,
        {**inp, "quantities": [{**base, "compareQuantity": 3, "changeFromQuantity": None}]},
        "2026-01",
    )
    assert out.errors == []


def test_idempotency_store() -> None:
    store = IdempotencyStore(ttl=10)
    assert store.claim("s", "k", "fp", 0)[0] is Claim.NEW
    assert store.claim("s", "k", "fp", 1)[0] is Claim.IN_FLIGHT
    store.complete("s", "k", "result")
    assert store.claim("s", "k", "fp", 2) == (Claim.REPLAY, "result")
    assert store.claim("s", "k", "other", 2)[0] is Claim.MISMATCH
    assert store.claim("s", "k", "other", 20)[0] is Claim.NEW  # expired
