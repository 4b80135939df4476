"""Omnichannel ledger flows through the pure core: orders, reservations, transfers, COD."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.ledger.apply import ApplyContext, apply
from pipeline.ledger.ats import available_to_sell
from pipeline.ledger.decode import decode_event
from pipeline.ledger.events import SourceEvent
from pipeline.ledger.movements import OP_HOLD, RESERVATION_EXPIRED, Movement, to_movements
from pipeline.ledger.outputs import (
    NotCod,
    OrderClosed,
    PublishAvailable,
    ReservationExpired,
    ReservationShort,
    TransferShortfall,
    UnknownHold,
)
from pipeline.ledger.position import LedgerPosition
from pipeline.ledger.rules import LocationRules, ShopifyMapping

SHOP = "omni.myshopify.com"
BRANCHES = {"WH", "STORE", "3PL"}
RULES = {
    "WH": LocationRules("WH", fulfills_online=True, shop=SHOP,
                        shopify_location_id="gid://shopify/Location/1"),
    "STORE": LocationRules("STORE", fulfills_online=True, shop=SHOP,
                           shopify_location_id="gid://shopify/Location/2"),
    "3PL": LocationRules("3PL", on_hand_source="3pl"),
}
T0 = 1_773_122_400.0 + 3600  # an hour after the events' time


class Ledger:
    """Feeds events through decode → to_movements → apply, like the worker."""

    def __init__(self) -> None:
        self.positions: dict[str, LedgerPosition] = {}
        self.outputs: list[Any] = []
        self.now = T0

    def send(self, kind: str, txn: str, sku: str, location: str, quantity: int,
             **extra: Any) -> None:
        source = kind.split(".")[0]
        obj = {"schema_version": "1", "type": kind, "source": source, "transaction_id": txn,
               "line": extra.pop("line", 1), "occurred_at": "2026-03-10T06:00:00Z",
               "sku": sku, "location": location, "quantity": quantity, **extra}
        ev = decode_event(json.dumps(obj).encode(), source_topic_system=source,
                          known_locations=BRANCHES)
        assert isinstance(ev, SourceEvent), ev
        for m in to_movements(ev):
            self.apply(m)

    def apply(self, m: Movement) -> None:
        rules = RULES[m.branch]
        mapping = ShopifyMapping(SHOP, "gid://shopify/InventoryItem/9",
                                 rules.shopify_location_id or "") if rules.on_shopify else None
        ctx = ApplyContext(now=self.now, rules=rules, mapping=mapping, reservation_ttl_s=600)
        self.positions[m.key], out = apply(self.positions.get(m.key), m, ctx)
        self.outputs.extend(out)

    def pos(self, sku: str, branch: str) -> LedgerPosition:
        return self.positions[f"{sku}@{branch}"]

    def ats(self, sku: str, branch: str) -> int:
        return available_to_sell(self.pos(sku, branch), RULES[branch]).value

    def published(self, sku: str, branch: str) -> int | None:
        return self.pos(sku, branch).last_published_ats


def stocked(sku: str, branch: str = "WH", units: int = 10) -> Ledger:
    led = Ledger()
    led.send("erp.goods_receipt", f"GR-{sku}", sku, branch, units)
    return led


def test_order_lifecycle_placed_fulfilled_never_raises_shopify() -> None:
    led = stocked("SKU-A")
    assert led.published("SKU-A", "WH") == 10
    led.send("shopify.order_placed", "order-1", "SKU-A", "WH", 3, reference="1:11")
    # Shopify already lowered its own available to 7: the ledger publishes 7, never 10.
    assert led.ats("SKU-A", "WH") == 7 and led.published("SKU-A", "WH") == 7
    led.send("shopify.order_fulfilled", "fulfil-5", "SKU-A", "WH", 3, reference="1:11")
    p = led.pos("SKU-A", "WH")
    assert (p.on_hand, p.open_orders, p.holds) == (7, 0, {})
    assert led.published("SKU-A", "WH") == 7
    # A late cancel of the fulfilled line releases nothing.
    led.send("shopify.order_cancelled", "cancel-1", "SKU-A", "WH", 0, reference="1:11")
    assert led.pos("SKU-A", "WH").open_orders == 0 and led.ats("SKU-A", "WH") == 7


def test_cancel_releases_once_even_with_refund_cancel_too() -> None:
    led = stocked("SKU-B")
    led.send("shopify.order_placed", "order-2", "SKU-B", "WH", 4, reference="2:21")
    led.send("shopify.order_cancelled", "refund-9", "SKU-B", "WH", 1, reference="2:21")
    assert led.pos("SKU-B", "WH").open_orders == 3
    led.send("shopify.order_cancelled", "cancel-2", "SKU-B", "WH", 0, reference="2:21")
    led.send("shopify.order_cancelled", "cancel-2b", "SKU-B", "WH", 0, reference="2:21")
    assert led.pos("SKU-B", "WH").open_orders == 0 and led.ats("SKU-B", "WH") == 10
    # A redelivered order_placed under another transaction id cannot re-hold a closed line.
    led.send("shopify.order_placed", "order-2-again", "SKU-B", "WH", 4, reference="2:21")
    assert led.pos("SKU-B", "WH").open_orders == 0
    assert any(isinstance(o, OrderClosed) for o in led.outputs)


def test_routing_moves_the_hold_and_survives_reordering() -> None:
    led = stocked("SKU-C")
    led.send("erp.goods_receipt", "GR-C2", "SKU-C", "STORE", 5)
    # Routing arrives before the order: WH is marked moved, STORE holds the line.
    led.send("shopify.order_routed", "route-1-WH", "SKU-C", "WH", 2, to_location="STORE",
             reference="3:31")
    led.send("shopify.order_placed", "order-3", "SKU-C", "WH", 2, reference="3:31")
    assert led.pos("SKU-C", "WH").open_orders == 0
    assert led.pos("SKU-C", "STORE").open_orders == 2
    assert (led.published("SKU-C", "WH"), led.published("SKU-C", "STORE")) == (10, 3)


def test_cod_return_to_origin_restores_prepaid_does_not() -> None:
    led = stocked("SKU-D")
    led.send("shopify.order_placed", "order-4", "SKU-D", "WH", 1, reference="4:41", payment="cod")
    led.send("shopify.order_placed", "order-5", "SKU-D", "WH", 1, reference="5:51")
    led.send("shopify.order_fulfilled", "fulfil-4", "SKU-D", "WH", 1, reference="4:41")
    led.send("shopify.order_fulfilled", "fulfil-5", "SKU-D", "WH", 1, reference="5:51")
    assert led.pos("SKU-D", "WH").on_hand == 8
    led.send("3pl.return_to_origin", "rto-4", "SKU-D", "WH", 1, reference="4:41")
    led.send("3pl.return_to_origin", "rto-5", "SKU-D", "WH", 1, reference="5:51")
    assert led.pos("SKU-D", "WH").on_hand == 9  # only the COD shipment came back
    assert [o.ref for o in led.outputs if isinstance(o, NotCod)] == ["5:51"]


def test_reservation_capped_released_unknown_counted_and_expired() -> None:
    led = stocked("SKU-E", units=3)
    led.send("pos.reservation_created", "H-1", "SKU-E", "WH", 5, reference="H-1")
    assert led.pos("SKU-E", "WH").reservations == 3  # never more than is there
    assert any(isinstance(o, ReservationShort) and o.granted == 3 for o in led.outputs)
    led.send("pos.reservation_released", "H-X-rel", "SKU-E", "WH", 0, reference="H-X")
    assert led.pos("SKU-E", "WH").reservations == 3
    assert any(isinstance(o, UnknownHold) for o in led.outputs)
    expire = Movement(sku="SKU-E", branch="WH", mark="tally:expire:H-1", source="tally",
                      type=RESERVATION_EXPIRED, occurred_at=T0, op=OP_HOLD, ref="H-1")
    led.now = 1_773_122_400.0 + 599  # 06:00Z + 599 s: not due yet (TTL 600 s)
    led.apply(replace(expire, mark="tally:expire:H-1:early"))
    assert led.pos("SKU-E", "WH").reservations == 3
    led.now += 5
    led.apply(expire)
    assert led.pos("SKU-E", "WH").reservations == 0
    expired = [o for o in led.outputs if isinstance(o, ReservationExpired)]
    assert expired and expired[0].quantity == 3 and expired[0].lag_s > 0


def test_reservation_not_due_is_kept_and_confirm_moves_to_allocated() -> None:
    led = stocked("SKU-F")
    led.send("pos.reservation_created", "H-2", "SKU-F", "WH", 2, reference="H-2",
             expires_at="2099-01-01T00:00:00Z")
    led.apply(Movement(sku="SKU-F", branch="WH", mark="tally:expire:H-2", source="tally",
                       type=RESERVATION_EXPIRED, occurred_at=T0, op=OP_HOLD, ref="H-2"))
    assert led.pos("SKU-F", "WH").reservations == 2
    led.send("wms.reservation_confirmed", "AL-2", "SKU-F", "WH", 2, reference="H-2")
    p = led.pos("SKU-F", "WH")
    assert (p.reservations, p.allocated, led.ats("SKU-F", "WH")) == (0, 2, 8)


def test_transfer_partial_damaged_short_receipt() -> None:
    led = stocked("SKU-G", units=20)
    led.send("erp.transfer_out", "TR-1-out", "SKU-G", "WH", 12, to_location="STORE",
             reference="TR-1")
    assert led.pos("SKU-G", "WH").on_hand == 8
    assert led.pos("SKU-G", "STORE").in_transit == 12
    # Both branches publish from the one event (the destination: 0, nothing received yet).
    assert (led.published("SKU-G", "WH"), led.published("SKU-G", "STORE")) == (8, 0)
    led.send("erp.transfer_receipt", "TR-1-r1", "SKU-G", "STORE", 5, reference="TR-1")
    led.send("erp.transfer_receipt", "TR-1-r2", "SKU-G", "STORE", 4, reference="TR-1",
             damaged_quantity=1, complete=True)
    s = led.pos("SKU-G", "STORE")
    assert (s.on_hand, s.damaged, s.in_transit, s.holds) == (10, 1, 0, {})
    assert led.ats("SKU-G", "STORE") == 9
    short = [o for o in led.outputs if isinstance(o, TransferShortfall)]
    assert [(o.ref, o.quantity) for o in short] == [("TR-1", 2)]


def test_transfer_cancel_returns_units_and_ends_transit() -> None:
    led = stocked("SKU-H", units=6)
    led.send("erp.transfer_out", "TR-2-out", "SKU-H", "WH", 4, to_location="STORE",
             reference="TR-2")
    led.send("erp.transfer_cancel", "TR-2-c", "SKU-H", "WH", 4, to_location="STORE",
             reference="TR-2")
    assert led.pos("SKU-H", "WH").on_hand == 6 and led.pos("SKU-H", "STORE").in_transit == 0


def test_damaged_refund_is_not_resold() -> None:
    led = stocked("SKU-I", units=2)
    led.send("shopify.order_refunded", "refund-3", "SKU-I", "STORE", 1, reference="9:91",
             disposition="damaged")
    p = led.pos("SKU-I", "STORE")
    assert (p.on_hand, p.damaged, led.ats("SKU-I", "STORE")) == (1, 1, 0)


OPS = st.lists(st.tuples(st.sampled_from(["create", "release", "confirm", "expire"]),
                         st.sampled_from(["R1", "R2", "R3"]), st.integers(0, 6)), max_size=25)


@given(stock=st.integers(0, 10), ops=OPS)
def test_reservations_never_negative_and_match_holds(stock: int, ops: list) -> None:
    led = stocked("SKU-P", units=stock) if stock else Ledger()
    for i, (op, ref, q) in enumerate(ops):
        if op == "create" and q:
            led.send("pos.reservation_created", f"C{i}", "SKU-P", "WH", q, reference=ref)
        elif op == "release":
            led.send("pos.reservation_released", f"R{i}", "SKU-P", "WH", q, reference=ref)
        elif op == "confirm" and q:
            led.send("wms.reservation_confirmed", f"A{i}", "SKU-P", "WH", q, reference=ref)
        elif op == "expire":
            led.apply(Movement(sku="SKU-P", branch="WH", mark=f"tally:expire:{ref}:{i}",
                               source="tally", type=RESERVATION_EXPIRED, occurred_at=T0,
                               op=OP_HOLD, ref=ref))
    p = led.positions.get("SKU-P@WH")
    if p is None:
        return
    held = sum(h.quantity for h in p.holds.values() if h.kind == "reservation")
    assert p.reservations == held >= 0
    assert all(h.quantity > 0 for h in p.holds.values())
    assert p.reservations <= max(0, p.on_hand)
    pushes = [o for o in led.outputs if isinstance(o, PublishAvailable)]
    assert all(o.available >= 0 for o in pushes)


def test_position_with_holds_round_trips() -> None:
    led = stocked("SKU-J")
    led.send("pos.reservation_created", "H-9", "SKU-J", "WH", 2, reference="H-9")
    led.send("shopify.order_placed", "order-9", "SKU-J", "WH", 1, reference="9:1", payment="cod")
    p = led.pos("SKU-J", "WH")
    assert LedgerPosition.from_json(p.to_json()) == p
    assert {h.kind for h in p.holds.values()} == {"reservation", "order"}


def test_per_sku_min_publish_threshold_overrides_the_branch() -> None:
    """The publish decision uses the SKU's own threshold when one is set (ApplyContext), else
    the branch's: publish 0 while ATS is below it, the ATS itself from the threshold on."""
    from pipeline.ledger.kits import parse_channel_rules

    channel = parse_channel_rules({"sku": [
        {"sku": "SKU-T", "min_publish_threshold": 4},
        {"sku": "SKU-T", "branch": "STORE", "min_publish_threshold": 0}]})
    branch_rules = replace(RULES["WH"], min_publish_threshold=2)
    mapping = ShopifyMapping(SHOP, "gid://shopify/InventoryItem/9", "gid://shopify/Location/1")

    def published(sku: str, units: list[int], branch: str = "WH") -> list[int]:
        pos, shown = None, []
        for i, q in enumerate(units):
            m = Movement(sku=sku, branch=branch, mark=f"erp:GR-{i}:1", source="erp",
                         type="erp.goods_receipt", occurred_at=T0, changes=(("on_hand", q),))
            ctx = ApplyContext(now=T0, rules=branch_rules, mapping=mapping,
                               min_publish_threshold=channel.min_publish_threshold(sku, branch))
            pos, out = apply(pos, m, ctx)
            shown += [o.available for o in out if isinstance(o, PublishAvailable)]
        return shown

    # SKU-T at WH: own threshold 4 → 0 at 3 (1+2) units, 4 at 4, 6 at 6.
    assert published("SKU-T", [1, 2, 1, 2]) == [0, 4, 6]
    # Without an override the branch's 2 applies: 1 → 0, then 3, 4, 6.
    assert published("SKU-OTHER", [1, 2, 1, 2]) == [0, 3, 4, 6]
    # The per-branch entry (0) beats the every-branch one at STORE.
    assert published("SKU-T", [1, 2], branch="STORE") == [1, 3]
    assert channel.min_publish_threshold("SKU-T", "3PL") == 4
