"""In-memory shop state: locations, products/variants, inventory items and levels, orders."""

from __future__ import annotations

import itertools
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

QUANTITY_NAMES = (
    "available", "committed", "reserved", "damaged", "safety_stock", "quality_control", "incoming",
)
# on_hand is derived: the states physically at the location (incoming is not).
ON_HAND_PARTS = ("available", "committed", "reserved", "damaged", "safety_stock", "quality_control")
ALL_NAMES = (*QUANTITY_NAMES, "on_hand")

_ids = itertools.count(7_000_000_001)


def next_id() -> int:
    """Numeric ids, unique across the process (like Shopify's, never reused)."""
    return next(_ids)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gid(kind: str, num: int) -> str:
    return f"gid://shopify/{kind}/{num}"


def parse_gid(value: str, kind: str) -> int | None:
    """Numeric tail of ``gid://shopify/{kind}/{n}`` (query string ignored), or None."""
    prefix = f"gid://shopify/{kind}/"
    if not isinstance(value, str) or not value.startswith(prefix):
        return None
    tail = value[len(prefix):].split("?", 1)[0]
    return int(tail) if tail.isdigit() else None


@dataclass
class Location:
    id: int
    name: str
    is_active: bool = True
    created_at: str = field(default_factory=now_iso)


@dataclass
class Product:
    id: int
    title: str
    created_at: str = field(default_factory=now_iso)


@dataclass
class Variant:
    id: int
    sku: str
    title: str
    product: Product
    price: str = "10.00"
    item: InventoryItem | None = None
    created_at: str = field(default_factory=now_iso)


@dataclass
class InventoryItem:
    id: int
    sku: str
    variant: Variant | None = None
    tracked: bool = True
    # Parent bundles are not adjustable via API (NON_MUTABLE_INVENTORY_ITEM).
    mutable: bool = True
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass
class Level:
    item: InventoryItem
    location: Location
    q: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUANTITY_NAMES, 0))
    updated_at: str = field(default_factory=now_iso)
    created_at: str = field(default_factory=now_iso)

    def get(self, name: str) -> int:
        if name == "on_hand":
            return sum(self.q[n] for n in ON_HAND_PARTS)
        return self.q[name]

    @property
    def gid(self) -> str:
        return f"gid://shopify/InventoryLevel/{self.location.id}?inventory_item_id={self.item.id}"


@dataclass
class Order:
    id: int
    number: int
    shop: str
    level: Level
    quantity: int
    created_at: str
    accepted_at: float
    oversold: bool
    status: str = "open"


@dataclass
class Shop:
    """One shop: its plan, secrets and catalogue."""

    domain: str
    plan: str
    tokens: dict[str, str]  # app name -> access token
    webhook_secret: str
    locations: dict[int, Location] = field(default_factory=dict)
    items: dict[int, InventoryItem] = field(default_factory=dict)
    variants: dict[int, Variant] = field(default_factory=dict)
    levels: dict[tuple[int, int], Level] = field(default_factory=dict)
    by_sku: dict[str, InventoryItem] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    id: int = field(default_factory=next_id)

    @property
    def name(self) -> str:
        return self.domain.split(".", 1)[0]

    def add_location(self, name: str, location_id: int | None = None) -> Location:
        loc = Location(location_id or next_id(), name)
        self.locations[loc.id] = loc
        return loc

    def add_sku(self, sku: str, title: str | None = None) -> InventoryItem:
        product = Product(next_id(), title or f"Product {sku}")
        variant = Variant(next_id(), sku, "Default Title", product)
        item = InventoryItem(next_id(), sku, variant)
        variant.item = item
        self.variants[variant.id] = variant
        self.items[item.id] = item
        self.by_sku[sku] = item
        return item

    def stock(self, item: InventoryItem, loc: Location, **quantities: int) -> Level:
        level = self.levels.get((item.id, loc.id)) or Level(item, loc)
        for name, value in quantities.items():
            level.q[name] = value
        self.levels[(item.id, loc.id)] = level
        return level

    def location_by_name(self, name: str) -> Location | None:
        return next((loc for loc in self.locations.values() if loc.name == name), None)


def new_shop(domain: str, plan: str, token: str | None = None, secret: str | None = None) -> Shop:
    return Shop(
        domain=domain,
        plan=plan,
        tokens={"tally": token or "shpat_" + secrets.token_hex(16)},
        webhook_secret=secret or secrets.token_hex(32),
    )


def generate_shops(
    shops: int, skus: int, locations: int, plan: str, available: int = 10
) -> list[Shop]:
    """N shops x S SKUs x L locations, every SKU stocked everywhere with ``available`` units."""
    out = []
    for s in range(1, shops + 1):
        shop = new_shop(f"tally-sim-{s}.myshopify.com", plan)
        locs = [shop.add_location(f"Warehouse {n}") for n in range(1, locations + 1)]
        for k in range(1, skus + 1):
            item = shop.add_sku(f"SKU-{k:05d}")
            for loc in locs:
                shop.stock(item, loc, available=available)
        out.append(shop)
    return out


def load_seed(data: dict[str, Any] | str | Path, default_plan: str = "standard") -> list[Shop]:
    """Shops from a seed document (a dict, JSON text or a file path).

    Shape: ``{"shops": [{"domain", "plan"?, "access_token"?, "webhook_secret"?,
    "locations": ["Name" or {"name", "id"}, ...], "items": [{"sku", "title"?, "mutable"?,
    "levels": {"<location name>": {"available": 3, "committed": 1, ...}}}]}]}``
    """
    if isinstance(data, Path) or (isinstance(data, str) and not data.lstrip().startswith("{")):
        data = json.loads(Path(data).read_text())
    elif isinstance(data, str):
        data = json.loads(data)
    assert isinstance(data, dict)
    out = []
    for spec in data["shops"]:
        shop = new_shop(
            spec["domain"], spec.get("plan", default_plan),
            spec.get("access_token"), spec.get("webhook_secret"),
        )
        for loc_spec in spec.get("locations", []):
            # A fixed id ({"name", "id"}) lets a locations file name the location beforehand.
            if isinstance(loc_spec, dict):
                shop.add_location(loc_spec["name"], int(loc_spec["id"]))
            else:
                shop.add_location(loc_spec)
        for item_spec in spec.get("items", []):
            item = shop.add_sku(item_spec["sku"], item_spec.get("title"))
            item.mutable = item_spec.get("mutable", True)
            for loc_name, quantities in item_spec.get("levels", {}).items():
                loc = shop.location_by_name(loc_name) or shop.add_location(loc_name)
                shop.stock(item, loc, **quantities)
        out.append(shop)
    return out
