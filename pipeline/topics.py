"""Kafka topic names, by domain and version. Every name can be overridden by environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Topics:
    """The topics Tally reads and writes. ``TALLY_TOPIC_<NAME>`` overrides each one."""

    erp: str = field(default_factory=lambda: _env("TALLY_TOPIC_ERP", "inventory.erp.v1"))
    wms: str = field(default_factory=lambda: _env("TALLY_TOPIC_WMS", "inventory.wms.v1"))
    pos: str = field(default_factory=lambda: _env("TALLY_TOPIC_POS", "inventory.pos.v1"))
    tpl: str = field(default_factory=lambda: _env("TALLY_TOPIC_3PL", "inventory.3pl.v1"))
    shopify_orders: str = field(
        default_factory=lambda: _env("TALLY_TOPIC_SHOPIFY_ORDERS", "inventory.shopify.v1")
    )
    movements: str = field(
        default_factory=lambda: _env("TALLY_TOPIC_MOVEMENTS", "tally.movements.v1")
    )
    shopify_push: str = field(
        default_factory=lambda: _env("TALLY_TOPIC_SHOPIFY_PUSH", "tally.shopify-push.v1")
    )
    shopify_acks: str = field(
        default_factory=lambda: _env("TALLY_TOPIC_SHOPIFY_ACKS", "tally.shopify-acks.v1")
    )
    catalog: str = field(default_factory=lambda: _env("TALLY_TOPIC_CATALOG", "tally.catalog.v1"))
    unmapped: str = field(
        default_factory=lambda: _env("TALLY_TOPIC_UNMAPPED", "tally.unmapped.v1")
    )
    drift: str = field(default_factory=lambda: _env("TALLY_TOPIC_DRIFT", "tally.drift.v1"))
    low_stock: str = field(
        default_factory=lambda: _env("TALLY_TOPIC_LOW_STOCK", "tally.low-stock.v1")
    )
    dead_letter: str = field(default_factory=lambda: _env("TALLY_TOPIC_DLQ", "tally.dlq.v1"))
    history: str = field(
        default_factory=lambda: _env("TALLY_TOPIC_HISTORY", "tally.ledger-history.v1")
    )

    def sources(self) -> dict[str, str]:
        """Source system name → its topic."""
        return {
            "erp": self.erp,
            "wms": self.wms,
            "pos": self.pos,
            "3pl": self.tpl,
            "shopify": self.shopify_orders,
        }
