"""Mutation building, idempotency keys, response classification and backoff."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.shopify.backoff import Backoff, parse_retry_after
from pipeline.sink import responses as r
from pipeline.sink.batching import BatchItem, build_request, idempotency_key

SHOP = "restock-day.myshopify.com"


def item(n: int, qty: int = 5, change_from: int = 3, version: int = 1, rnd: int = 0) -> BatchItem:
    return BatchItem(
        key=f"{SHOP}|gid://shopify/InventoryItem/{n}|gid://shopify/Location/1",
        inventory_item_id=f"gid://shopify/InventoryItem/{n}",
        location_id="gid://shopify/Location/1",
        quantity=qty,
        change_from=change_from,
        ledger_version=version,
        round=rnd,
    )


items_st = st.lists(st.integers(1, 10_000), min_size=1, max_size=40, unique=True).map(
    lambda ns: [item(n, qty=n % 7, change_from=n % 5, version=n) for n in ns]
)


@given(items_st, st.randoms(use_true_random=False))
def test_key_is_stable_under_rebatching_in_any_order(items: list[BatchItem], rnd: Any) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    a, b = build_request(SHOP, items), build_request(SHOP, shuffled)
    assert a.idempotency_key == b.idempotency_key
    assert a.variables == b.variables  # same key must mean identical parameters


@given(items_st, st.integers(0, 3))
def test_key_differs_for_any_content_change(items: list[BatchItem], which: int) -> None:
    base = idempotency_key(SHOP, items)
    first = items[0]
    changed = [
        BatchItem(**{**first.__dict__, "quantity": first.quantity + 1}),
        BatchItem(**{**first.__dict__, "change_from": first.change_from + 1}),
        BatchItem(**{**first.__dict__, "ledger_version": first.ledger_version + 1}),
        BatchItem(**{**first.__dict__, "round": first.round + 1}),
    ][which]
    assert idempotency_key(SHOP, [changed, *items[1:]]) != base
    assert idempotency_key("other-shop.myshopify.com", items) != base
    assert idempotency_key(SHOP, items, salt=1) != base
    if len(items) > 1:
        assert idempotency_key(SHOP, items[1:]) != base


def test_request_shape_for_2026_10() -> None:
    req = build_request(SHOP, [item(2, qty=12, change_from=5), item(1, qty=0, change_from=4)])
    assert "@idempotent(key: $idempotencyKey)" in req.query
    inp = req.variables["input"]
    assert req.variables["idempotencyKey"] == req.idempotency_key
    assert inp["name"] == "available" and inp["reason"] == "correction"
    assert inp["referenceDocumentUri"] == f"logistics://tally/push/{req.idempotency_key}"
    assert [q["inventoryItemId"] for q in inp["quantities"]] == [
        "gid://shopify/InventoryItem/1",
        "gid://shopify/InventoryItem/2",
    ]
    assert inp["quantities"][1] == {
        "inventoryItemId": "gid://shopify/InventoryItem/2",
        "locationId": "gid://shopify/Location/1",
        "quantity": 12,
        "changeFromQuantity": 5,
    }
    with pytest.raises(ValueError):
        build_request(SHOP, [item(n) for n in range(251)])
    with pytest.raises(ValueError):
        build_request(SHOP, [item(1), item(1)])


def test_mutation_validates_against_shopify_2026_10_schema() -> None:
    from graphql import parse, validate

    from pipeline.infra import shopify_schema

    schema = shopify_schema.load("2026-10")  # fetches the pinned package when not cached
    req = build_request(SHOP, [item(1)])
    assert validate(schema, parse(req.query)) == []


# -- responses -------------------------------------------------------------------------------

COST = {
    "cost": {
        "requestedQueryCost": 11,
        "actualQueryCost": 10,
        "throttleStatus": {
            "maximumAvailable": 2000.0,
            "currentlyAvailable": 1990,
            "restoreRate": 100.0,
        },
    }
}


def payload(user_errors: list[dict[str, Any]], group: Any = None) -> dict[str, Any]:
    data = {
        "inventorySetQuantities": {"inventoryAdjustmentGroup": group, "userErrors": user_errors}
    }
    return {"data": data, "extensions": COST}


def uerr(code: str, idx: int | None, leaf: str = "changeFromQuantity") -> dict[str, Any]:
    field = None if idx is None else ["input", "quantities", str(idx), leaf]
    return {"code": code, "field": field, "message": code.lower()}


def test_success() -> None:
    out = r.classify(200, payload([], {"id": "gid://shopify/InventoryAdjustmentGroup/9"}), {}, 3)
    assert isinstance(out, r.Applied) and out.adjustment_group_id.endswith("/9")
    assert out.cost is not None and out.cost.actual == 10


def test_throttled_at_http_200() -> None:
    body = {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": COST,
    }
    out = r.classify(200, body, {}, 3)
    assert isinstance(out, r.Throttled) and out.cost is not None


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [(429, {"Retry-After": "2.0"}, 2.0), (503, {"retry-after": "7"}, 7.0), (502, {}, None)],
)
def test_transient_http(status: int, headers: dict[str, str], retry_after: float | None) -> None:
    out = r.classify(status, None, headers, 3)
    assert isinstance(out, r.Transient) and out.retry_after == retry_after


def test_transport_errors_retry_same_key() -> None:
    assert isinstance(r.classify_transport_error("timeout"), r.Transient)


def test_per_item_errors_split_dead_stale_and_retry() -> None:
    body = payload(
        [
            uerr("ITEM_NOT_STOCKED_AT_LOCATION", 1, "locationId"),
            uerr("CHANGE_FROM_QUANTITY_STALE", 3),
            uerr("INVALID_INVENTORY_ITEM", 4, "inventoryItemId"),
        ]
    )
    out = r.classify(200, body, {}, 6)
    assert isinstance(out, r.Rejected)
    assert [(e.index, e.code) for e in out.dead] == [
        (1, "ITEM_NOT_STOCKED_AT_LOCATION"),
        (4, "INVALID_INVENTORY_ITEM"),
    ]
    assert out.stale == (3,) and out.retry == (0, 2, 5)


def test_stale_without_field_reads_every_level() -> None:
    out = r.classify(200, payload([uerr("CHANGE_FROM_QUANTITY_STALE", None)]), {}, 3)
    assert isinstance(out, r.Rejected) and out.stale == (0, 1, 2)


def test_unmapped_permanent_error_splits_batch_but_single_item_is_dead() -> None:
    assert isinstance(r.classify(200, payload([uerr("INVALID_LOCATION", None)]), {}, 4), r.Split)
    one = r.classify(200, payload([uerr("INVALID_LOCATION", None)]), {}, 1)
    assert isinstance(one, r.Rejected) and one.dead[0].index == 0


def test_idempotency_codes() -> None:
    assert isinstance(r.classify(200, payload([uerr(r.CONCURRENT, None)]), {}, 2), r.RetrySameKey)
    assert isinstance(
        r.classify(200, payload([uerr(r.PREVIOUS_FAILED, None)]), {}, 2), r.RetryNewKey
    )
    bug = r.classify(200, payload([uerr(r.KEY_MISMATCH, None)]), {}, 2)
    assert isinstance(bug, r.BatchBug) and r.KEY_MISMATCH in bug.detail


def test_configuration_errors_halt_instead_of_dead_lettering_data() -> None:
    assert isinstance(r.classify(200, payload([uerr("INVALID_REASON", None)]), {}, 2), r.Halt)
    assert isinstance(r.classify(401, None, {}, 2), r.Halt)
    access = {"errors": [{"message": "denied", "extensions": {"code": "ACCESS_DENIED"}}]}
    assert isinstance(r.classify(200, access, {}, 2), r.Halt)
    assert isinstance(r.classify(200, None, {}, 2), r.Transient)  # proxy error page


# -- backoff ---------------------------------------------------------------------------------


@given(st.integers(0, 80), st.floats(0.0, 1.0, exclude_max=True), st.none() | st.floats(0, 1e6))
def test_backoff_bounds(attempt: int, u: float, retry_after: float | None) -> None:
    b = Backoff(base=0.5, cap=60.0, rand=lambda: u)
    d = b.delay(attempt, retry_after)
    assert 0.0 <= d <= max(60.0, min(retry_after or 0.0, b.max_retry_after))
    assert d <= min(60.0, 0.5 * 2**attempt) or (retry_after is not None and d <= 300.0)
    if retry_after is not None:
        assert d >= min(retry_after, b.max_retry_after)


def test_full_jitter_uses_injected_random() -> None:
    assert Backoff(base=1.0, cap=8.0, rand=lambda: 0.5).delay(2) == 2.0
    assert Backoff(base=1.0, cap=8.0, rand=lambda: 0.5).delay(10) == 4.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
