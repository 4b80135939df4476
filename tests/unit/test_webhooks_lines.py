"""Webhook intake: lines without a SKU (catalog reverse lookup or a per-line dead letter),
schema-violation details that name the field, and event-id claims for racing deliveries."""

from __future__ import annotations

import asyncio
import json

import pytest

from pipeline.ledger.locations import parse_locations
from pipeline.webhooks.catalog import SkuIndex, numeric_id
from pipeline.webhooks.config import ShopWebhooks
from pipeline.webhooks.dedupe import SeenEvents
from pipeline.webhooks.translate import BadPayload, Translator

SHOP = "lines.myshopify.com"
OTHER = "other.myshopify.com"
LOCATIONS = parse_locations({"branch": [
    {"id": "WH", "fulfills_online": True,
     "shopify": {"shop": SHOP, "location_id": "gid://shopify/Location/1"}}]})


def catalog_value(shop: str, sku: str, item: int, variant: int | None = None) -> bytes:
    rec = {"shop": shop, "sku": sku, "inventory_item_id": f"gid://shopify/InventoryItem/{item}"}
    if variant is not None:
        rec["variant_id"] = variant
    return json.dumps(rec).encode()


def index() -> SkuIndex:
    ix = SkuIndex()
    ix.apply(f"{SHOP}|MUG".encode(), catalog_value(SHOP, "MUG", 700, variant=900))
    ix.apply(f"{SHOP}|CAP".encode(), catalog_value(SHOP, "CAP", 701))
    ix.apply(f"{OTHER}|HAT".encode(), catalog_value(OTHER, "HAT", 702, variant=902))
    return ix


def translator(ix: SkuIndex | None = None) -> Translator:
    ix = ix or index()
    return Translator([ShopWebhooks(SHOP, "WH", secret_env="X")], LOCATIONS, resolve=ix.resolve)


def order(lines: list[dict]) -> dict:
    return {"id": 1001, "name": "#1001", "created_at": "2026-03-10T10:00:00Z",
            "source_name": "web", "line_items": lines}


def test_numeric_ids() -> None:
    assert numeric_id(5) == "5" and numeric_id("5") == "5"
    assert numeric_id("gid://shopify/ProductVariant/77") == "77"
    assert numeric_id(None) is None and numeric_id("abc") is None and numeric_id(0) is None
    assert numeric_id(True) is None


def test_lines_without_sku_resolved_or_dead_lettered_each() -> None:
    t = translator().translate("orders/create", SHOP, order([
        {"id": 11, "sku": "TEE", "quantity": 1, "variant_id": 1},
        {"id": 12, "sku": None, "quantity": 2, "variant_id": 900},           # by variant
        {"id": 13, "sku": "", "quantity": 1, "inventory_item_id": 701},      # by item
        {"id": 14, "sku": None, "quantity": 1, "variant_id": 902},           # other shop's
        {"id": 15, "sku": None, "quantity": 1},                              # custom item
        {"id": 16, "sku": "GIFT", "quantity": 0},
    ]))
    assert [ev["sku"] for _, ev in t.events] == ["TEE", "MUG", "CAP"]
    assert [ev["line"] for _, ev in t.events] == [1, 2, 3]
    assert [(r["line_item_id"], r["outcome"]) for r in t.lines] == [
        (11, "published"), (12, "resolved_by_variant"), (13, "resolved_by_inventory_item"),
        (14, "dead_lettered"), (15, "skipped"), (16, "skipped")]
    assert len(t.dead) == 1
    dead = t.dead[0]
    assert dead["reason"] == "sku_unresolved" and dead["line"] == "line_items[3]"
    assert dead["detail"] == (f"line_items[3] has sku null and variant 902 not in the catalog "
                              f"of {SHOP}")
    assert dead["item"]["id"] == 14


def test_tombstone_and_remap_forget_the_old_ids() -> None:
    ix = index()
    ix.apply(f"{SHOP}|MUG".encode(), None)
    assert ix.resolve(SHOP, {"variant_id": 900}) == (
        None, f"variant 900 not in the catalog of {SHOP}")
    ix.apply(f"{SHOP}|CAP".encode(), catalog_value(SHOP, "CAP", 799))  # item changed
    assert ix.resolve(SHOP, {"inventory_item_id": 701})[0] is None
    assert ix.resolve(SHOP, {"inventory_item_id": "gid://shopify/InventoryItem/799"}) == (
        "CAP", "inventory_item")
    ix.apply(b"junk", b"{not json")  # ignored, not fatal
    assert len(ix) == 2


def test_without_a_catalog_every_sku_less_product_line_is_dead_lettered() -> None:
    tr = Translator([ShopWebhooks(SHOP, "WH", secret_env="X")], LOCATIONS)
    t = tr.translate("orders/create", SHOP, order([{"id": 1, "sku": None, "quantity": 1,
                                                    "variant_id": 5}]))
    assert not t.events and t.dead[0]["detail"].endswith("and no catalog")


def test_refund_and_routing_lines_resolve_too() -> None:
    tr = translator()
    refund = {"id": 5, "order_id": 1001, "refund_line_items": [
        {"line_item_id": 12, "quantity": 1, "restock_type": "return", "location_id": 1,
         "line_item": {"sku": None, "variant_id": 900}}]}
    t = tr.translate("refunds/create", SHOP, refund)
    assert [ev["sku"] for _, ev in t.events] == ["MUG"]
    routed = {"fulfillment_order": {"id": 7, "order_id": 1001, "assigned_location_id": 1,
                                    "line_items": [{"line_item_id": 12, "inventory_item_id": 999,
                                                    "quantity": 1}]}}
    t = tr.translate("fulfillment_orders/order_routing_complete", SHOP, routed)
    assert [r["outcome"] for r in t.lines] == ["dead_lettered"]


@pytest.mark.parametrize(("body", "detail"), [
    ({"id": 1}, "line_items is missing; expected a list"),
    ({"id": 1, "line_items": {"a": 1}}, 'line_items is dict {"a": 1}; expected a list'),
    ({"id": "x", "line_items": []}, 'id is str "x"; expected a positive integer id'),
    ({"id": 1, "line_items": [3]}, "line_items[0] is int 3; expected an object"),
    ({"id": 1, "line_items": [{"sku": "A", "quantity": 1}]},
     "line_items[0].id is missing; expected a positive integer id"),
    ({"id": 1, "line_items": [{"id": None, "sku": "A", "quantity": 1}]},
     "line_items[0].id is null; expected"),
])
def test_schema_violation_names_the_field_and_what_was_found(body: dict, detail: str) -> None:
    with pytest.raises(BadPayload) as exc:
        translator().translate("orders/create", SHOP, body)
    assert str(exc.value).startswith(detail)


async def test_claims_let_one_racing_delivery_publish() -> None:
    seen = SeenEvents(ttl_s=100, max_entries=10)
    assert seen.claim("e1", 1.0) is None           # the owner
    racer = seen.claim("e1", 1.0)
    assert racer is not None and not racer.done()  # waits for the owner's outcome
    seen.release("e1")                             # the owner's publish failed
    assert await racer is False
    assert seen.claim("e1", 2.0) is None           # Shopify's retry owns it now
    racer = seen.claim("e1", 2.0)
    seen.confirm("e1", 2.0)
    assert await asyncio.wait_for(racer, 1) is True
    late = seen.claim("e1", 3.0)                   # after the publish: a plain duplicate
    assert late is not None and late.done() and late.result() is True
    assert seen.claim("e1", 200.0) is None         # expired: publishable again
