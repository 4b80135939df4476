"""Kafka topic names, by domain and version. Every name can be overridden by environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields


def _var(name: str, default: str) -> tuple[str, str]:
    return name, default


# field → (environment variable, default name)
_TOPICS: dict[str, tuple[str, str]] = {
    "erp": _var("TALLY_TOPIC_ERP", "inventory.erp.v1"),
    "wms": _var("TALLY_TOPIC_WMS", "inventory.wms.v1"),
    "pos": _var("TALLY_TOPIC_POS", "inventory.pos.v1"),
    "tpl": _var("TALLY_TOPIC_3PL", "inventory.3pl.v1"),
    "shopify_orders": _var("TALLY_TOPIC_SHOPIFY_ORDERS", "inventory.shopify.v1"),
    "movements": _var("TALLY_TOPIC_MOVEMENTS", "tally.movements.v1"),
    "shopify_push": _var("TALLY_TOPIC_SHOPIFY_PUSH", "tally.shopify-push.v1"),
    "shopify_acks": _var("TALLY_TOPIC_SHOPIFY_ACKS", "tally.shopify-acks.v1"),
    "catalog": _var("TALLY_TOPIC_CATALOG", "tally.catalog.v1"),
    "unmapped": _var("TALLY_TOPIC_UNMAPPED", "tally.unmapped.v1"),
    "drift": _var("TALLY_TOPIC_DRIFT", "tally.drift.v1"),
    "low_stock": _var("TALLY_TOPIC_LOW_STOCK", "tally.low-stock.v1"),
    "dead_letter": _var("TALLY_TOPIC_DLQ", "tally.dlq.v1"),
    "history": _var("TALLY_TOPIC_HISTORY", "tally.ledger-history.v1"),
    "shopify_levels": _var("TALLY_TOPIC_SHOPIFY_LEVELS", "tally.shopify-levels.v1"),
    "reconciliation": _var("TALLY_TOPIC_RECONCILIATION", "tally.reconciliation.v1"),
    "kit_components": _var("TALLY_TOPIC_KIT_COMPONENTS", "tally.kit-components.v1"),
}


def _from_env(name: str) -> str:
    var, default = _TOPICS[name]
    return os.environ.get(var, default)


def _topic(name: str) -> str:
    return field(default_factory=lambda: _from_env(name))


@dataclass(frozen=True)
class Topics:
    """The topics Tally reads and writes. ``TALLY_TOPIC_<NAME>`` overrides each one."""

    erp: str = _topic("erp")
    wms: str = _topic("wms")
    pos: str = _topic("pos")
    tpl: str = _topic("tpl")
    shopify_orders: str = _topic("shopify_orders")
    movements: str = _topic("movements")
    shopify_push: str = _topic("shopify_push")
    shopify_acks: str = _topic("shopify_acks")
    catalog: str = _topic("catalog")
    unmapped: str = _topic("unmapped")
    drift: str = _topic("drift")
    low_stock: str = _topic("low_stock")
    dead_letter: str = _topic("dead_letter")
    history: str = _topic("history")
    shopify_levels: str = _topic("shopify_levels")
    reconciliation: str = _topic("reconciliation")
    kit_components: str = _topic("kit_components")

    @classmethod
    def prefixed(cls, prefix: str) -> Topics:
        """Every default topic name under ``prefix.`` (isolated runs: tests, demo, bench)."""
        return cls(**{name: f"{prefix}.{default}" for name, (_, default) in _TOPICS.items()})

    def env(self) -> dict[str, str]:
        """The ``TALLY_TOPIC_*`` variables that make another process use these topics."""
        return {var: getattr(self, f.name) for f in fields(self) for var in [_TOPICS[f.name][0]]}

    def sources(self) -> dict[str, str]:
        """Source system name → its topic."""
        return {
            "erp": self.erp,
            "wms": self.wms,
            "pos": self.pos,
            "3pl": self.tpl,
            "shopify": self.shopify_orders,
        }
