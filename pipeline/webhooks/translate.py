"""Shopify webhook payloads (REST resource shapes) → Tally source events. Pure.

One webhook becomes zero or more ``shopify.*`` source events (schemas in ``schemas/v1/events``),
each one order line at one branch. Dedupe marks are ``shopify:<step>-<id>:<line index>``; the
hold each acts on is ``reference = "<order id>:<line item id>"`` (see docs/omnichannel.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pipeline.ledger.locations import Locations
from pipeline.webhooks.catalog import numeric_id
from pipeline.webhooks.config import ShopWebhooks

#: ``(shop, line item) -> (sku or None, how or why not)``: the catalog's reverse lookup.
SkuResolver = Callable[[str, Mapping[str, Any]], tuple[str | None, str]]

TOPICS = frozenset({
    "orders/create", "orders/cancelled", "orders/fulfilled", "fulfillments/create",
    "refunds/create", "inventory_levels/update", "fulfillment_orders/order_routing_complete",
    "fulfillment_orders/moved",
})  # fmt: skip


class BadPayload(ValueError):
    """The body is JSON but not the resource shape the topic promises (answered 422)."""


@dataclass
class Translation:
    """What to publish: (key, source event) pairs for the ledger, level observations, and why
    nothing was published when ``events`` is empty (``outcome``).

    ``lines`` says what happened to each line of the payload (``published``,
    ``resolved_by_variant``, ``resolved_by_inventory_item``, ``dead_lettered``, ``skipped``);
    ``dead`` holds the lines to dead-letter (no SKU, and the catalog does not know their ids).
    """

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    levels: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outcome: str = "published"  # published | ignored | unroutable
    lines: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)


def _time(value: Any, fallback: str) -> str:
    if isinstance(value, str) and value:
        try:
            if datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None:
                return value
        except ValueError:
            pass
    return fallback


def _found(obj: Mapping[str, Any], name: str) -> str:
    if name not in obj:
        return "missing"
    value = obj[name]
    if value is None:
        return "null"
    text = json.dumps(value)
    return f"{type(value).__name__} {text[:40]}{'…' if len(text) > 40 else ''}"


def _int(obj: Mapping[str, Any], name: str, where: str = "") -> int:
    value = obj.get(name)
    ident = numeric_id(value)
    if ident is not None:
        return int(ident)
    raise BadPayload(f"{where}{name} is {_found(obj, name)}; expected a positive integer id, "
                     "its digits or a gid://shopify/... id")


def _location_gid(value: Any) -> str | None:
    if type(value) is int:
        return f"gid://shopify/Location/{value}"
    if isinstance(value, str) and value.startswith("gid://shopify/Location/"):
        return value
    return None


def payment_of(order: Mapping[str, Any]) -> str:
    """``cod`` when the order is paid on delivery (gateway names), else ``prepaid``."""
    names = [order.get("gateway"), *(order.get("payment_gateway_names") or [])]
    for name in names:
        text = str(name or "").lower()
        words = text.replace("(", " ").replace(")", " ").split()
        if "cash on delivery" in text or "cod" in words:
            return "cod"
    return "prepaid"


class Translator:
    """Turns webhooks into source events for one set of shops and branches."""

    def __init__(self, shops: Iterable[ShopWebhooks], locations: Locations,
                 resolve: SkuResolver | None = None) -> None:
        self.shops = {s.domain: s for s in shops}
        self.locations = locations
        self.resolve = resolve

    def online_branches(self, shop: str) -> list[str]:
        """Every branch that can hold an online order of ``shop`` (the default one first)."""
        cfg = self.shops[shop]
        out = [cfg.online_branch]
        for bid in self.locations:
            r = self.locations.rules(bid)
            if r.shop == shop and r.fulfills_online and bid not in out:
                out.append(bid)
        return out

    def branch_for(self, shop: str, location_id: Any) -> str | None:
        gid = _location_gid(location_id)
        return self.locations.branch_for_shopify_location(shop, gid) if gid else None

    def translate(self, topic: str, shop: str, payload: Any, *, now: str | None = None
                  ) -> Translation:
        """Raises BadPayload when the body is not the topic's resource shape."""
        if not isinstance(payload, dict):
            raise BadPayload("the body is not a JSON object")
        now = now or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        handler = {
            "orders/create": self._order_created,
            "orders/cancelled": self._order_cancelled,
            "orders/fulfilled": self._order_fulfilled,
            "fulfillments/create": self._fulfillment,
            "refunds/create": self._refund,
            "inventory_levels/update": self._level,
            "fulfillment_orders/order_routing_complete": self._routed,
            "fulfillment_orders/moved": self._routed,
        }.get(topic)
        if handler is None:
            return Translation(outcome="ignored")
        return handler(shop, payload, now)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _event(kind: str, txn: str, line: int, at: str, sku: str, branch: str, quantity: int,
               **extra: Any) -> dict[str, Any]:
        return {"schema_version": "1", "type": kind, "source": "shopify", "transaction_id": txn,
                "line": line, "occurred_at": at, "sku": sku, "location": branch,
                "quantity": quantity, **{k: v for k, v in extra.items() if v is not None}}

    def _sku(self, shop: str, item: Mapping[str, Any], qty: Any, where: str, t: Translation,
             line_id: int | None) -> str | None:
        """The SKU of one line, resolved through the catalog when the payload has none, with
        the line's outcome recorded in ``t``; None when the line moves no stock (skipped) or
        cannot be resolved (dead-lettered)."""
        report: dict[str, Any] = {"line": where, "line_item_id": line_id}
        t.lines.append(report)
        sku = item.get("sku")
        if type(qty) is not int or qty <= 0:
            report.update(outcome="skipped", detail=f"quantity is {_found(item, 'quantity')}")
            return None
        if isinstance(sku, str) and sku.strip():
            report.update(outcome="published", sku=sku)
            return sku
        if not (numeric_id(item.get("variant_id")) or numeric_id(item.get("inventory_item_id"))):
            # custom items, tips and such: no product behind them, so no stock moves
            report.update(outcome="skipped", detail="no sku, variant_id or inventory_item_id")
            return None
        found, how = self.resolve(shop, item) if self.resolve else (None, "no catalog")
        if found is not None:
            report.update(outcome=f"resolved_by_{how}", sku=found)
            return found
        detail = f"{where} has sku {_found(item, 'sku')} and {how}"
        report.update(outcome="dead_lettered", reason="sku_unresolved", detail=detail)
        t.dead.append({"reason": "sku_unresolved", "detail": detail, "line": where,
                       "item": dict(item)})
        return None

    def _lines(self, shop: str, order: Mapping[str, Any], t: Translation
               ) -> list[tuple[int, int, str, int]]:
        """(index from 1, line item id, sku, quantity) of lines that move stock."""
        items = order.get("line_items")
        if not isinstance(items, list):
            raise BadPayload(f"line_items is {_found(order, 'line_items')}; expected a list")
        out = []
        for i, item in enumerate(items, start=1):
            where = f"line_items[{i - 1}]"
            if not isinstance(item, dict):
                raise BadPayload(f"{where} is {_found({'x': item}, 'x')}; expected an object")
            line_id = _int(item, "id", f"{where}.")
            qty = item.get("quantity")
            sku = self._sku(shop, item, qty, where, t, line_id)
            if sku is not None:  # only for a positive int quantity
                out.append((i, line_id, sku, cast(int, qty)))
        return out

    # -- topics -----------------------------------------------------------------------------
    def _order_created(self, shop: str, order: dict[str, Any], now: str) -> Translation:
        oid = _int(order, "id")
        cfg = self.shops[shop]
        if order.get("source_name") in cfg.ignore_source_names:
            return Translation(outcome="ignored")  # e.g. Shopify POS: arrives on the POS topic
        # A POS or pickup order names its location; an online order is held at the default
        # online branch until routing says where it is.
        branch = self.branch_for(shop, order.get("location_id")) or cfg.online_branch
        at = _time(order.get("created_at"), now)
        payment = payment_of(order)
        t = Translation()
        for i, line_id, sku, qty in self._lines(shop, order, t):
            t.events.append((f"{shop}|{oid}", self._event(
                "shopify.order_placed", f"order-{oid}", i, at, sku, branch, qty,
                reference=f"{oid}:{line_id}", payment=payment,
                order_reference=str(order.get("name") or oid)[:128])))
        return t

    def _order_cancelled(self, shop: str, order: dict[str, Any], now: str) -> Translation:
        oid = _int(order, "id")
        at = _time(order.get("cancelled_at") or order.get("updated_at"), now)
        t = Translation()
        # The payload does not say where the line is held: release it at every branch that
        # may hold it; only one does (see docs/omnichannel.md).
        for i, line_id, sku, _ in self._lines(shop, order, t):
            for branch in self.online_branches(shop):
                t.events.append((f"{shop}|{oid}", self._event(
                    "shopify.order_cancelled", f"cancel-{oid}", i, at, sku, branch, 0,
                    reference=f"{oid}:{line_id}")))
        return t

    def _fulfillment(self, shop: str, f: dict[str, Any], now: str) -> Translation:
        fid = _int(f, "id")
        oid = _int(f, "order_id")
        if f.get("status") in ("cancelled", "failure", "error"):
            return Translation(outcome="ignored")
        branch = self.branch_for(shop, f.get("location_id")) or self.shops[shop].online_branch
        at = _time(f.get("created_at"), now)
        t = Translation()
        for i, line_id, sku, qty in self._lines(shop, f, t):
            t.events.append((f"{shop}|{oid}", self._event(
                "shopify.order_fulfilled", f"fulfil-{fid}", i, at, sku, branch, qty,
                reference=f"{oid}:{line_id}")))
        return t

    def _order_fulfilled(self, shop: str, order: dict[str, Any], now: str) -> Translation:
        t = Translation()
        for f in order.get("fulfillments") or []:
            if isinstance(f, dict):
                f = {"order_id": order.get("id"), **f}
                part = self._fulfillment(shop, f, now)
                t.events.extend(part.events)
                t.lines.extend(part.lines)
                t.dead.extend(part.dead)
        return t

    def _refund(self, shop: str, refund: dict[str, Any], now: str) -> Translation:
        rid = _int(refund, "id")
        oid = _int(refund, "order_id")
        at = _time(refund.get("created_at"), now)
        rows = refund.get("refund_line_items")
        if not isinstance(rows, list):
            raise BadPayload(f"refund_line_items is {_found(refund, 'refund_line_items')}; "
                             "expected a list")
        t = Translation()
        for i, row in enumerate(rows, start=1):
            where = f"refund_line_items[{i - 1}]"
            if not isinstance(row, dict):
                raise BadPayload(f"{where} is not an object")
            line_item = row.get("line_item")
            item: Mapping[str, Any] = line_item if isinstance(line_item, dict) else {}
            raw_qty = row.get("quantity")
            line_id = _int(row, "line_item_id", f"{where}.")
            sku = self._sku(shop, item, raw_qty, f"{where}.line_item", t, line_id)
            if sku is None:
                continue
            qty = cast(int, raw_qty)  # _sku gave a SKU: the quantity is a positive int
            ref = f"{oid}:{line_id}"
            branch = self.branch_for(shop, row.get("location_id"))
            kind = row.get("restock_type")
            if kind == "cancel":  # unfulfilled units: the open order shrinks where it is held
                for b in [branch] if branch else self.online_branches(shop):
                    t.events.append((f"{shop}|{oid}", self._event(
                        "shopify.order_cancelled", f"refund-{rid}", i, at, sku, b, qty,
                        reference=ref)))
            elif kind in ("return", "legacy_restock"):  # shipped units back at a location
                t.events.append((f"{shop}|{oid}", self._event(
                    "shopify.order_refunded", f"refund-{rid}", i, at, sku,
                    branch or self.shops[shop].online_branch, qty, reference=ref,
                    disposition="restock")))
            else:  # no_restock: money only; the units stay where they are.
                t.lines[-1].update(outcome="skipped", detail=f"restock_type {kind!r}")
        if not t.events:
            t.outcome = "ignored"
        return t

    def _routed(self, shop: str, body: dict[str, Any], now: str) -> Translation:
        fo = body.get("moved_fulfillment_order") or body.get("fulfillment_order")
        if not isinstance(fo, dict):
            raise BadPayload("fulfillment_order missing")
        target = self.branch_for(shop, fo.get("assigned_location_id"))
        items = fo.get("line_items")
        if target is None or not isinstance(items, list) or "order_id" not in fo:
            # Shopify's minimal payload (ids and status only): the order stays held at the
            # default branch until a fulfilment or cancellation says otherwise.
            return Translation(outcome="unroutable")
        foid = _int(fo, "id")
        oid = _int(fo, "order_id")
        t = Translation()
        for i, item in enumerate(items, start=1):
            where = f"line_items[{i - 1}]"
            if not isinstance(item, dict):
                raise BadPayload(f"fulfillment_order.{where} is not an object")
            line_id = _int(item, "line_item_id", f"fulfillment_order.{where}.")
            sku = self._sku(shop, item, item.get("quantity"), where, t, line_id)
            if sku is None:
                continue
            qty = item["quantity"]
            ref = f"{oid}:{line_id}"
            for other in self.online_branches(shop):
                if other == target:
                    continue
                t.events.append((f"{shop}|{oid}", self._event(
                    "shopify.order_routed", f"route-{foid}-{other}", i, now, sku,
                    other, qty, to_location=target, reference=ref)))
        return t

    def _level(self, shop: str, body: dict[str, Any], now: str) -> Translation:
        item = _int(body, "inventory_item_id")
        loc = _location_gid(body.get("location_id"))
        if loc is None:
            raise BadPayload("location_id missing")
        record = {
            "shop": shop, "inventory_item_id": f"gid://shopify/InventoryItem/{item}",
            "location_id": loc, "branch": self.locations.branch_for_shopify_location(shop, loc),
            "available": body.get("available"), "updated_at": body.get("updated_at"),
            "observed_at": now,
        }
        return Translation(levels=[(f"{shop}|{item}|{loc}", record)])
