"""Webhook intake core: HMAC, dedupe memory, REST payload translation (simulator shapes)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ledger.decode import decode_event
from pipeline.ledger.events import SourceEvent
from pipeline.ledger.locations import parse_locations
from pipeline.shopify_sim.webhooks import sign
from pipeline.webhooks.config import ShopWebhooks, parse_webhook_shops
from pipeline.webhooks.dedupe import SeenEvents
from pipeline.webhooks.service import verify_hmac
from pipeline.webhooks.translate import BadPayload, Translator, payment_of

SHOP = "hooks.myshopify.com"
LOCATIONS = parse_locations({"branch": [
    {"id": "WH", "fulfills_online": True,
     "shopify": {"shop": SHOP, "location_id": "gid://shopify/Location/1"}},
    {"id": "STORE", "fulfills_online": True,
     "shopify": {"shop": SHOP, "location_id": "gid://shopify/Location/2"}},
    {"id": "BACKROOM"},
]})
TR = Translator([ShopWebhooks(SHOP, "WH", secret_env="X")], LOCATIONS)


def order(**kw: object) -> dict:
    return {"id": 450789469, "name": "#1001", "created_at": "2026-03-10T10:00:00-05:00",
            "gateway": "shopify_payments", "payment_gateway_names": ["shopify_payments"],
            "source_name": "web", "location_id": None,
            "line_items": [{"id": 466157049, "sku": "TEE-M", "quantity": 2},
                           {"id": 466157050, "sku": None, "quantity": 1}], **kw}


def decoded(t: object) -> list[SourceEvent]:
    out = []
    for _, ev in t.events:  # type: ignore[attr-defined]
        r = decode_event(json.dumps(ev).encode(), source_topic_system="shopify",
                         known_locations=LOCATIONS)
        assert isinstance(r, SourceEvent), r
        out.append(r)
    return out


def test_hmac_accepts_shopify_signature_and_rejects_tampering() -> None:
    body = b'{"id":1}'
    assert verify_hmac("s3cret", body, sign("s3cret", body))
    assert not verify_hmac("s3cret", body + b" ", sign("s3cret", body))
    assert not verify_hmac("other", body, sign("s3cret", body))
    assert not verify_hmac("s3cret", body, "not-base64!")


@given(st.binary(max_size=256), st.text(min_size=1, max_size=20))
def test_hmac_round_trip(body: bytes, secret: str) -> None:
    assert verify_hmac(secret, body, sign(secret, body))


def test_seen_events_ttl_and_bound() -> None:
    seen = SeenEvents(ttl_s=10, max_entries=3)
    for i in range(5):
        seen.remember(f"e{i}", now=100.0 + i)
    assert len(seen) == 3 and not seen.seen("e0", 105) and seen.seen("e4", 105)
    assert not seen.seen("e4", 115)  # expired
    assert len(seen) == 0


def test_order_created_held_at_default_branch_and_decodes() -> None:
    evs = decoded(TR.translate("orders/create", SHOP, order()))
    assert [(e.type, e.location, e.quantity, e.reference, e.payment, e.mark) for e in evs] == [
        ("shopify.order_placed", "WH", 2, "450789469:466157049", "prepaid",
         "shopify:order-450789469:1")]


def test_pos_order_ignored_and_pickup_location_used() -> None:
    assert TR.translate("orders/create", SHOP, order(source_name="pos")).outcome == "ignored"
    evs = decoded(TR.translate("orders/create", SHOP, order(location_id=2)))
    assert evs[0].location == "STORE"


def test_cod_detection() -> None:
    assert payment_of({"payment_gateway_names": ["Cash on Delivery (COD)"]}) == "cod"
    assert payment_of({"gateway": "cod"}) == "cod"
    assert payment_of({"gateway": "shopify_payments"}) == "prepaid"


def test_cancel_goes_to_every_online_branch() -> None:
    evs = decoded(TR.translate("orders/cancelled", SHOP,
                               order(cancelled_at="2026-03-10T11:00:00Z")))
    assert sorted(e.location for e in evs) == ["STORE", "WH"]
    assert {e.quantity for e in evs} == {0}


def test_refund_cancel_return_and_no_restock() -> None:
    refund = {"id": 509562969, "order_id": 450789469, "created_at": "2026-03-10T12:00:00Z",
              "refund_line_items": [
                  {"line_item_id": 1, "quantity": 1, "restock_type": "cancel", "location_id": 1,
                   "line_item": {"sku": "A"}},
                  {"line_item_id": 2, "quantity": 2, "restock_type": "return", "location_id": 2,
                   "line_item": {"sku": "B"}},
                  {"line_item_id": 3, "quantity": 1, "restock_type": "no_restock",
                   "line_item": {"sku": "C"}}]}
    evs = decoded(TR.translate("refunds/create", SHOP, refund))
    assert [(e.type, e.sku, e.location, e.quantity) for e in evs] == [
        ("shopify.order_cancelled", "A", "WH", 1), ("shopify.order_refunded", "B", "STORE", 2)]


def test_fulfillment_and_routing() -> None:
    f = {"id": 255858046, "order_id": 450789469, "status": "success", "location_id": 2,
         "created_at": "2026-03-10T12:00:00Z",
         "line_items": [{"id": 466157049, "sku": "TEE-M", "quantity": 2}]}
    evs = decoded(TR.translate("fulfillments/create", SHOP, f))
    assert [(e.type, e.location, e.reference) for e in evs] == [
        ("shopify.order_fulfilled", "STORE", "450789469:466157049")]
    routed = {"fulfillment_order": {"id": 77, "order_id": 450789469, "assigned_location_id": 2,
                                    "line_items": [{"line_item_id": 466157049, "sku": "TEE-M",
                                                    "quantity": 2}]}}
    evs = decoded(TR.translate("fulfillment_orders/order_routing_complete", SHOP, routed))
    assert [(e.location, e.to_location) for e in evs] == [("WH", "STORE")]
    minimal = {"fulfillment_order": {"id": "gid://shopify/FulfillmentOrder/77", "status": "open"}}
    assert TR.translate("fulfillment_orders/order_routing_complete", SHOP,
                        minimal).outcome == "unroutable"


@pytest.mark.parametrize("body", [[], {"id": 1}, {"id": "x", "line_items": []},
                                  {"id": 1, "line_items": [3]}])
def test_bad_shapes_raise(body: object) -> None:
    with pytest.raises(BadPayload):
        TR.translate("orders/create", SHOP, body)


def test_inventory_level_observation() -> None:
    t = TR.translate("inventory_levels/update", SHOP,
                     {"inventory_item_id": 9, "location_id": 1, "available": 4})
    assert t.levels[0][1]["branch"] == "WH" and not t.events


def test_config_refuses_inline_secret() -> None:
    with pytest.raises(ValueError, match="inline"):
        parse_webhook_shops({"shop": [{"domain": SHOP, "online_branch": "WH", "secret": "x"}]})
