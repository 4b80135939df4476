"""SKU → Shopify inventory item, per shop. Pure; ``tally catalog import`` feeds it CSV lines."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pipeline.ledger.identifiers import sku_problem
from pipeline.ledger.rules import LocationRules, ShopifyMapping

_ITEM_GID = re.compile(r"gid://shopify/InventoryItem/[0-9]+")


@dataclass(frozen=True)
class Catalog(Mapping[tuple[str, str], str]):
    """(shop, sku) → inventory item GID."""

    items: Mapping[tuple[str, str], str] = field(  # type: ignore[assignment]  # shadows .items()
        default_factory=lambda: MappingProxyType({}))

    def __getitem__(self, key: tuple[str, str]) -> str:
        return self.items[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def with_entries(self, entries: Iterable[CatalogEntry]) -> Catalog:
        """A new catalog with these entries added or replaced."""
        items = dict(self.items)
        items.update(((e.shop, e.sku), e.inventory_item_id) for e in entries)
        return Catalog(MappingProxyType(items))

    def mapping_for(self, rules: LocationRules, sku: str) -> ShopifyMapping | None:
        """The Shopify target of ``sku`` at a branch, or None (branch not on Shopify/unmapped)."""
        if rules.shop is None or rules.shopify_location_id is None:
            return None
        item = self.items.get((rules.shop, sku))
        if item is None:
            return None
        return ShopifyMapping(rules.shop, item, rules.shopify_location_id)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    shop: str
    sku: str
    inventory_item_id: str


@dataclass(frozen=True, slots=True)
class CatalogLineError:
    line_number: int
    line: str
    problem: str


def parse_catalog_lines(
    lines: Iterable[str],
) -> tuple[list[CatalogEntry], list[CatalogLineError]]:
    """Parse CSV ``shop,sku,inventory_item_id`` lines (an optional header line is skipped).

    Bare numeric item IDs are accepted and turned into GIDs. Returns (entries, errors): one bad
    line does not stop the import, so the command can report all of them at once.
    """
    entries: list[CatalogEntry] = []
    errors: list[CatalogLineError] = []
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        row = [cell.strip() for cell in next(csv.reader([text]))]
        if number == 1 and row[:3] == ["shop", "sku", "inventory_item_id"]:
            continue
        if len(row) != 3:
            errors.append(CatalogLineError(number, text, f"expected 3 fields, got {len(row)}"))
            continue
        shop, sku, item = row
        if item.isdigit():
            item = f"gid://shopify/InventoryItem/{item}"
        problem = None
        if not shop.endswith(".myshopify.com"):
            problem = "shop must be a *.myshopify.com domain"
        elif sku_issue := sku_problem(sku):
            problem = sku_issue
        elif not _ITEM_GID.fullmatch(item):
            problem = "inventory_item_id must be gid://shopify/InventoryItem/<id> or a number"
        elif (shop, sku) in seen:
            problem = f"duplicate of line {seen[(shop, sku)]}"
        if problem:
            errors.append(CatalogLineError(number, text, problem))
            continue
        seen[(shop, sku)] = number
        entries.append(CatalogEntry(shop, sku, item))
    return entries, errors
