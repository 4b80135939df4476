"""``tally catalog sync --shop S``: fill SKU → inventory item from Shopify's ``productVariants``.

``match_variants`` is pure: SKUs asked for + variants found → entries, duplicate SKUs (several
variants share one SKU: ambiguous, not mapped) and SKUs with no match.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.ledger.catalog import CatalogEntry
from pipeline.shopify.backoff import Backoff
from pipeline.shopify.shops import ShopConfig

CHUNK = 50  # SKUs per search query: keeps query strings and costs small
SYNC_BACKOFF = Backoff(base=0.5, cap=10.0)  # its ceiling: 0.5 s doubling, at most 10 s


@dataclass
class SyncResult:
    entries: list[CatalogEntry] = field(default_factory=list)
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # sku -> item ids
    missing: list[str] = field(default_factory=list)
    cost_points: float = 0.0


def variants_query(skus: Sequence[str]) -> dict[str, Any]:
    search = " OR ".join(f"sku:{json.dumps(s)}" for s in skus)
    return {"query": "query TallyCatalogSync($q: String!, $n: Int!) { productVariants("
                     "first: $n, query: $q) { nodes { sku inventoryItem { id } } } }",
            "variables": {"q": search, "n": min(250, 2 * len(skus) + 10)}}


def match_variants(shop: str, skus: Iterable[str], variants: Iterable[tuple[str, str]]
                   ) -> SyncResult:
    """``variants``: (sku, inventory item id) pairs as Shopify returned them."""
    wanted = list(dict.fromkeys(skus))
    found: dict[str, set[str]] = {}
    for sku, item in variants:
        if sku in wanted or not wanted:
            found.setdefault(sku, set()).add(item)
    out = SyncResult()
    for sku in wanted or sorted(found):
        items = sorted(found.get(sku, ()))
        if not items:
            out.missing.append(sku)
        elif len(items) > 1:
            out.duplicates[sku] = items
        else:
            out.entries.append(CatalogEntry(shop, sku, items[0]))
    return out


async def sync_shop(shop_cfg: ShopConfig, skus: Sequence[str],
                    timeout_s: float = 30.0) -> SyncResult:
    """Query Shopify for every SKU (in chunks) and match the answers."""
    import asyncio

    from pipeline.shopify.client import ShopClient

    client = ShopClient(shop_cfg, timeout_s)
    variants: list[tuple[str, str]] = []
    cost = 0.0
    try:
        for start in range(0, len(skus), CHUNK):
            chunk = list(skus[start:start + CHUNK])
            for attempt in range(10):
                res = await client.post(variants_query(chunk))
                ext = ((res.body or {}).get("extensions") or {}).get("cost") or {}
                cost += float(ext.get("actualQueryCost") or 0)
                data = (res.body or {}).get("data")
                if isinstance(data, dict):
                    for node in data["productVariants"]["nodes"]:
                        if node.get("sku") and node.get("inventoryItem"):
                            variants.append((node["sku"], node["inventoryItem"]["id"]))
                    break
                await asyncio.sleep(SYNC_BACKOFF.ceiling(attempt))  # throttled or transient
            else:
                raise RuntimeError("productVariants not readable")
    finally:
        await client.close()
    result = match_variants(shop_cfg.domain, skus, variants)
    result.cost_points = cost
    return result
