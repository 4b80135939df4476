"""Inventory levels: the one aliased ``inventoryItem → inventoryLevel`` query and its parser
(pure; the paced reader is ``pipeline.shopify.reader``). The sink reads ``available`` only
(``parse_available``); reconciliation also reads ``committed`` and whether the item exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

AVAILABLE = ("available",)
AVAILABLE_COMMITTED = ("available", "committed")


@dataclass(frozen=True, slots=True)
class ShopifyLevel:
    """One level read from Shopify (``None`` fields: the item or the level does not exist)."""

    available: int | None
    committed: int = 0
    item_exists: bool = True


def levels_query(pairs: Sequence[tuple[str, str]], *, names: Sequence[str] = AVAILABLE,
                 item_id: bool = False, operation: str = "TallyReadLevels") -> str:
    """One query reading the quantities ``names`` for many (inventory item, location) pairs via
    aliases ``l0``, ``l1``…; ``item_id`` also selects the item's id (tells a missing item from a
    missing level)."""
    quantities = f"quantities(names: {json.dumps(list(names))}) {{ name quantity }}"
    id_field = "id " if item_id else ""
    parts = [
        f"l{i}: inventoryItem(id: {json.dumps(item)}) {{ {id_field}"
        f"inventoryLevel(locationId: {json.dumps(location)}) {{ {quantities} }} }}"
        for i, (item, location) in enumerate(pairs)
    ]
    return f"query {operation} {{\n  " + "\n  ".join(parts) + "\n}\n"


def parse_levels(body: dict[str, Any] | None, n: int) -> list[ShopifyLevel] | None:
    """One ``ShopifyLevel`` per pair; None when the body carries no data (retry)."""
    data = (body or {}).get("data")
    if not isinstance(data, dict):
        return None
    out: list[ShopifyLevel] = []
    for i in range(n):
        item = data.get(f"l{i}")
        if not isinstance(item, dict):
            out.append(ShopifyLevel(available=None, item_exists=False))
            continue
        level = item.get("inventoryLevel")
        if not isinstance(level, dict):
            out.append(ShopifyLevel(available=None))
            continue
        q = {e.get("name"): int(e.get("quantity", 0)) for e in level.get("quantities") or []}
        out.append(ShopifyLevel(available=q.get("available"), committed=q.get("committed", 0)))
    return out


def parse_available(body: dict[str, Any] | None, n: int) -> list[int | None] | None:
    """``available`` per pair (None = no such item/level); None if the body has no data."""
    levels = parse_levels(body, n)
    return None if levels is None else [level.available for level in levels]
