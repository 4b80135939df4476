"""Resolvers for the implemented part of the Admin schema (read levels, set/adjust mutations)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.shopify_sim.engine import Conn, ExecContext, FieldError, resolver
from pipeline.shopify_sim.idempotency import Claim, IdempotencyStore
from pipeline.shopify_sim.inventory import (
    MutationOutcome,
    adjust_quantities,
    set_quantities,
    user_error,
    version_at_least,
)
from pipeline.shopify_sim.state import ALL_NAMES, Level, Shop, gid, parse_gid


class SimHooks(Protocol):
    """What mutations need from the running simulator."""

    idempotency: IdempotencyStore

    @property
    def strict_idempotency(self) -> bool: ...
    @property
    def mutation_latency_s(self) -> float: ...

    def now(self) -> float: ...
    def record_user_errors(self, codes: list[str | None]) -> None: ...
    def levels_changed(self, shop: Shop, levels: list[Level]) -> None: ...


@dataclass
class RequestEnv:
    shop: Shop
    hooks: SimHooks


@dataclass
class Edge:
    cursor: str
    node: Any


@dataclass
class Quantity:
    level: Level
    name: str


def _shop(ctx: ExecContext) -> Shop:
    return ctx.env.shop


# --- pagination -------------------------------------------------------------------------------

def encode_cursor(num: int) -> str:
    return base64.b64encode(json.dumps({"last_id": num}).encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        return int(json.loads(base64.b64decode(cursor))["last_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FieldError(f"Invalid cursor for current pagination sort: {cursor!r}",
                         "BAD_REQUEST") from exc


def paginate(items: Iterable[Any], args: dict[str, Any], key: Callable[[Any], int]) -> Conn:
    rev = bool(args.get("reverse"))
    rows = sorted(items, key=key, reverse=rev)
    has_prev = has_next = False
    if args.get("after"):
        mark = decode_cursor(args["after"])
        rows = [r for r in rows if (key(r) < mark if rev else key(r) > mark)]
        has_prev = True
    if args.get("before"):
        mark = decode_cursor(args["before"])
        rows = [r for r in rows if (key(r) > mark if rev else key(r) < mark)]
        has_next = True
    first, last = args.get("first"), args.get("last")
    if first is not None:
        has_next = has_next or len(rows) > first
        rows, requested = rows[:first], first
    else:
        requested = last or 0
        has_prev = has_prev or len(rows) > requested
        rows = rows[-requested:] if requested else []
    return Conn(rows, [encode_cursor(key(r)) for r in rows], has_next, has_prev, requested)


_SKU = re.compile(r'sku:(?:"([^"]*)"|(\S+))')


def sku_filter(query: str | None) -> set[str] | None:
    """SKUs named in a search query (``sku:A OR sku:"B"``); None means no SKU filter."""
    if not query:
        return None
    found = {a or b for a, b in _SKU.findall(query)}
    return found or None


def _conn_resolvers(conn: str, edge: str) -> None:
    resolver(conn, "edges")(lambda c, a, x: [Edge(cur, n) for cur, n in zip(c.cursors, c.items,
                                                                               strict=True)])
    resolver(conn, "nodes")(lambda c, a, x: c.items)
    resolver(conn, "pageInfo")(lambda c, a, x: c)
    resolver(edge, "cursor")(lambda e, a, x: e.cursor)
    resolver(edge, "node")(lambda e, a, x: e.node)


for _c in ("InventoryItem", "InventoryLevel", "Location", "ProductVariant"):
    _conn_resolvers(f"{_c}Connection", f"{_c}Edge")

resolver("PageInfo", "hasNextPage")(lambda c, a, x: c.has_next)
resolver("PageInfo", "hasPreviousPage")(lambda c, a, x: c.has_prev)
resolver("PageInfo", "startCursor")(lambda c, a, x: c.cursors[0] if c.cursors else None)
resolver("PageInfo", "endCursor")(lambda c, a, x: c.cursors[-1] if c.cursors else None)


# --- queries ----------------------------------------------------------------------------------

@resolver("QueryRoot", "shop")
def _q_shop(_: Any, a: dict[str, Any], ctx: ExecContext) -> Shop:
    return _shop(ctx)


@resolver("QueryRoot", "inventoryItems")
def _q_items(_: Any, a: dict[str, Any], ctx: ExecContext) -> Conn:
    skus = sku_filter(a.get("query"))
    items = _shop(ctx).items.values()
    if skus is not None:
        items = [i for i in items if i.sku in skus]  # type: ignore[assignment]
    return paginate(items, a, lambda i: i.id)


@resolver("QueryRoot", "inventoryItem")
def _q_item(_: Any, a: dict[str, Any], ctx: ExecContext) -> Any:
    num = parse_gid(a["id"], "InventoryItem")
    return _shop(ctx).items.get(num) if num is not None else None


@resolver("QueryRoot", "inventoryLevel")
def _q_level(_: Any, a: dict[str, Any], ctx: ExecContext) -> Any:
    m = re.fullmatch(r"gid://shopify/InventoryLevel/(\d+)\?inventory_item_id=(\d+)", a["id"])
    return _shop(ctx).levels.get((int(m[2]), int(m[1]))) if m else None


@resolver("QueryRoot", "locations")
def _q_locations(_: Any, a: dict[str, Any], ctx: ExecContext) -> Conn:
    locs = [x for x in _shop(ctx).locations.values() if x.is_active or a.get("includeInactive")]
    return paginate(locs, a, lambda x: x.id)


@resolver("QueryRoot", "location")
def _q_location(_: Any, a: dict[str, Any], ctx: ExecContext) -> Any:
    num = parse_gid(a["id"], "Location") if a.get("id") else None
    return _shop(ctx).locations.get(num) if num is not None else None


@resolver("QueryRoot", "productVariants")
def _q_variants(_: Any, a: dict[str, Any], ctx: ExecContext) -> Conn:
    skus = sku_filter(a.get("query"))
    variants = _shop(ctx).variants.values()
    if skus is not None:
        variants = [v for v in variants if v.sku in skus]  # type: ignore[assignment]
    return paginate(variants, a, lambda v: v.id)


@resolver("QueryRoot", "productVariant")
def _q_variant(_: Any, a: dict[str, Any], ctx: ExecContext) -> Any:
    num = parse_gid(a["id"], "ProductVariant")
    return _shop(ctx).variants.get(num) if num is not None else None


# --- objects ----------------------------------------------------------------------------------

def _fields(type_name: str, table: dict[str, Callable[[Any], Any]]) -> None:
    for name, fn in table.items():
        resolver(type_name, name)(_of_object(fn))


def _of_object(fn: Callable[[Any], Any]) -> Callable[[Any, dict[str, Any], ExecContext], Any]:
    """A resolver that reads one attribute-like value of its parent object."""

    def resolve(obj: Any, a: dict[str, Any], ctx: ExecContext) -> Any:
        return fn(obj)

    return resolve


_fields("Shop", {
    "id": lambda s: gid("Shop", s.id), "name": lambda s: s.name,
    "myshopifyDomain": lambda s: s.domain,
})
_fields("InventoryItem", {
    "id": lambda i: gid("InventoryItem", i.id), "legacyResourceId": lambda i: str(i.id),
    "sku": lambda i: i.sku, "tracked": lambda i: i.tracked, "createdAt": lambda i: i.created_at,
    "updatedAt": lambda i: i.updated_at, "variant": lambda i: i.variant,
})
_fields("InventoryLevel", {
    "id": lambda lv: lv.gid, "isActive": lambda lv: True, "item": lambda lv: lv.item,
    "location": lambda lv: lv.location, "createdAt": lambda lv: lv.created_at,
    "updatedAt": lambda lv: lv.updated_at,
})
_fields("InventoryQuantity", {
    "id": lambda q: f"gid://shopify/InventoryQuantity/{q.level.location.id}"
    f"?inventory_item_id={q.level.item.id}&name={q.name}",
    "name": lambda q: q.name, "quantity": lambda q: q.level.get(q.name),
    "updatedAt": lambda q: q.level.updated_at,
})
_fields("Location", {
    "id": lambda x: gid("Location", x.id), "legacyResourceId": lambda x: str(x.id),
    "name": lambda x: x.name, "isActive": lambda x: x.is_active,
    "createdAt": lambda x: x.created_at, "updatedAt": lambda x: x.created_at,
})
_fields("ProductVariant", {
    "id": lambda v: gid("ProductVariant", v.id), "legacyResourceId": lambda v: str(v.id),
    "sku": lambda v: v.sku, "title": lambda v: v.title, "price": lambda v: v.price,
    "displayName": lambda v: f"{v.product.title} - {v.title}",
    "inventoryItem": lambda v: v.item, "product": lambda v: v.product,
    "createdAt": lambda v: v.created_at, "updatedAt": lambda v: v.created_at,
})
_fields("Product", {
    "id": lambda p: gid("Product", p.id), "legacyResourceId": lambda p: str(p.id),
    "title": lambda p: p.title, "createdAt": lambda p: p.created_at,
    "updatedAt": lambda p: p.created_at,
})


@resolver("ProductVariant", "inventoryQuantity")
def _variant_qty(v: Any, a: dict[str, Any], ctx: ExecContext) -> int:
    return sum(lv.get("available") for (iid, _), lv in _shop(ctx).levels.items()
               if iid == v.item.id)


@resolver("InventoryLevel", "quantities")
def _level_quantities(lv: Level, a: dict[str, Any], ctx: ExecContext) -> list[Quantity]:
    names = a["names"]
    bad = [n for n in names if n not in ALL_NAMES]
    if bad:
        raise FieldError(f"Invalid quantity names: {', '.join(bad)}. Valid names are: "
                         f"{', '.join(ALL_NAMES)}.", "BAD_REQUEST")
    return [Quantity(lv, n) for n in names]


def _levels_of(shop: Shop, item_id: int | None = None, loc_id: int | None = None) -> list[Level]:
    return [lv for (i, loc), lv in shop.levels.items()
            if (item_id is None or i == item_id) and (loc_id is None or loc == loc_id)]


@resolver("InventoryItem", "inventoryLevels")
def _item_levels(i: Any, a: dict[str, Any], ctx: ExecContext) -> Conn:
    return paginate(_levels_of(_shop(ctx), item_id=i.id), a, lambda lv: lv.location.id)


@resolver("InventoryItem", "inventoryLevel")
def _item_level(i: Any, a: dict[str, Any], ctx: ExecContext) -> Any:
    loc = parse_gid(a["locationId"], "Location")
    return _shop(ctx).levels.get((i.id, loc)) if loc is not None else None


@resolver("Location", "inventoryLevels")
def _loc_levels(x: Any, a: dict[str, Any], ctx: ExecContext) -> Conn:
    return paginate(_levels_of(_shop(ctx), loc_id=x.id), a, lambda lv: lv.item.id)


@resolver("Location", "inventoryLevel")
def _loc_level(x: Any, a: dict[str, Any], ctx: ExecContext) -> Any:
    item = parse_gid(a["inventoryItemId"], "InventoryItem")
    return _shop(ctx).levels.get((item, x.id)) if item is not None else None


# --- mutations --------------------------------------------------------------------------------

for _p in ("InventorySetQuantitiesPayload", "InventoryAdjustQuantitiesPayload"):
    resolver(_p, "inventoryAdjustmentGroup")(lambda o, a, x: o.group)
    resolver(_p, "userErrors")(lambda o, a, x: o.errors)
for _e in ("InventorySetQuantitiesUserError", "InventoryAdjustQuantitiesUserError"):
    _fields(_e, {"code": lambda e: e.code, "field": lambda e: e.field,
                 "message": lambda e: e.message})

_fields("InventoryAdjustmentGroup", {
    "id": lambda g: gid("InventoryAdjustmentGroup", g.id), "createdAt": lambda g: g.created_at,
    "reason": lambda g: g.reason, "referenceDocumentUri": lambda g: g.reference_document_uri,
})
_fields("InventoryChange", {
    "name": lambda c: c.name, "delta": lambda c: c.delta,
    "quantityAfterChange": lambda c: c.quantity_after, "item": lambda c: c.item,
    "location": lambda c: c.location, "ledgerDocumentUri": lambda c: c.ledger_document_uri,
})


@resolver("InventoryAdjustmentGroup", "changes")
def _group_changes(g: Any, a: dict[str, Any], ctx: ExecContext) -> list[Any]:
    items, locs, names = a.get("inventoryItemIds"), a.get("locationIds"), a.get("quantityNames")
    return [c for c in g.changes
            if (items is None or gid("InventoryItem", c.item.id) in items)
            and (locs is None or gid("Location", c.location.id) in locs)
            and (names is None or c.name in names)]


def _idempotency_key(ctx: ExecContext) -> str | None:
    from graphql.execution.values import get_directive_values

    directive = ctx.schema.get_directive("idempotent")
    if directive is None or ctx.node is None:
        return None
    values = get_directive_values(directive, ctx.node, ctx.variables)
    return None if values is None else str(values["key"])


async def _mutate(name: str, apply: Callable[[Shop, dict[str, Any], str], MutationOutcome],
                  args: dict[str, Any], ctx: ExecContext) -> MutationOutcome:
    env: RequestEnv = ctx.env
    hooks, shop = env.hooks, env.shop
    key = _idempotency_key(ctx)
    if not hooks.strict_idempotency:
        key = None  # lenient mode mirrors reported real-world behaviour: the key is not enforced
    elif key is None and version_at_least(ctx.version, "2026-04"):
        raise FieldError(
            f"The @idempotent directive is required for {name} as of API version 2026-04. "
            'Add @idempotent(key: "<uuid>") to the mutation field.', "BAD_REQUEST")
    if key is not None:
        fingerprint = json.dumps([name, args], sort_keys=True, default=str)
        claim, stored = hooks.idempotency.claim(shop.domain, key, fingerprint, hooks.now())
        if claim is Claim.REPLAY:
            return stored
        if claim is not Claim.NEW:
            hooks.record_user_errors([claim.value])
            return MutationOutcome(None, [user_error(claim.value, "idempotent", "key")], [])
    try:
        if hooks.mutation_latency_s > 0:
            await asyncio.sleep(hooks.mutation_latency_s)
        outcome = apply(shop, args["input"], ctx.version)
    except BaseException:
        if key is not None:
            hooks.idempotency.fail(shop.domain, key)
        raise
    if key is not None:
        hooks.idempotency.complete(shop.domain, key, outcome)
    hooks.record_user_errors([e.code for e in outcome.errors])
    if outcome.touched:
        hooks.levels_changed(shop, outcome.touched)
    return outcome


@resolver("Mutation", "inventorySetQuantities")
def _m_set(_: Any, a: dict[str, Any], ctx: ExecContext) -> Any:
    return _mutate("inventorySetQuantities", set_quantities, a, ctx)


@resolver("Mutation", "inventoryAdjustQuantities")
def _m_adjust(_: Any, a: dict[str, Any], ctx: ExecContext) -> Any:
    return _mutate("inventoryAdjustQuantities", adjust_quantities, a, ctx)
