"""Per-branch rules and the Shopify target of one SKU at one branch (pure values)."""

from __future__ import annotations

from dataclasses import dataclass

ON_HAND_SOURCES = ("erp", "3pl", "wms")
RECEIPT_SOURCES = ("erp", "wms", "3pl")


@dataclass(frozen=True, slots=True)
class LocationRules:
    """How the ledger treats one branch.

    ``on_hand_source`` owns the branch's on-hand count: only its snapshots set it (ERP for stores
    and warehouses, 3PL for 3PL facilities). ``receipt_source`` is the one system whose receipts
    count, so one delivery reported by both ERP and WMS is not counted twice.
    """

    branch: str
    fulfills_online: bool = False
    safety_buffer: int = 0
    min_publish_threshold: int = 0  # publish 0 while ATS is below this
    low_stock_threshold: int = 0
    shop: str | None = None  # Shopify shop domain, None when the branch is not on Shopify
    shopify_location_id: str | None = None  # gid://shopify/Location/…
    on_hand_source: str = "erp"
    receipt_source: str = "erp"

    @property
    def on_shopify(self) -> bool:
        return self.shop is not None and self.shopify_location_id is not None


@dataclass(frozen=True, slots=True)
class ShopifyMapping:
    """Where one SKU at one branch lives in Shopify."""

    shop: str
    inventory_item_id: str  # gid://shopify/InventoryItem/…
    location_id: str  # gid://shopify/Location/…


def publish_value(ats: int, min_publish_threshold: int) -> int:
    """What Shopify is shown for an ATS: 0 while it is below the minimum publish threshold."""
    return ats if ats >= min_publish_threshold else 0
