"""Kafka topic names, by domain and version, and the worker's changelog topics: the one place
that names them. Every topic name can be overridden (``TALLY_TOPIC_<NAME>``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pipeline.settings import meta_of, setting

# faust names a table's changelog ``{app_id}-{table}-changelog``; the ledger table is "positions".
POSITIONS_TABLE = "positions"


def changelog_topic(app_id: str, table: str = POSITIONS_TABLE) -> str:
    """The changelog topic of a worker's table (the positions table unless named)."""
    return f"{app_id}-{table}-changelog"


def _topic(env: str, name: str, meaning: str) -> Any:
    return setting(name, meaning, env=env)


@dataclass(frozen=True, kw_only=True)
class Topics:
    """The topics Tally reads and writes. ``TALLY_TOPIC_<NAME>`` overrides each one."""

    erp: str = _topic("TALLY_TOPIC_ERP", "inventory.erp.v1", "ERP source events")
    wms: str = _topic("TALLY_TOPIC_WMS", "inventory.wms.v1", "WMS source events")
    pos: str = _topic("TALLY_TOPIC_POS", "inventory.pos.v1", "POS source events")
    tpl: str = _topic("TALLY_TOPIC_3PL", "inventory.3pl.v1", "3PL source events")
    shopify_orders: str = _topic("TALLY_TOPIC_SHOPIFY_ORDERS", "inventory.shopify.v1",
                                 "Shopify order events (from the webhook intake)")
    movements: str = _topic("TALLY_TOPIC_MOVEMENTS", "tally.movements.v1",
                            "validated movements keyed `sku@branch`")
    shopify_push: str = _topic("TALLY_TOPIC_SHOPIFY_PUSH", "tally.shopify-push.v1",
                               "ATS changes for the sink")
    shopify_acks: str = _topic("TALLY_TOPIC_SHOPIFY_ACKS", "tally.shopify-acks.v1",
                               "Shopify acknowledgments and compare-and-set state (compacted)")
    catalog: str = _topic("TALLY_TOPIC_CATALOG", "tally.catalog.v1",
                          "SKU → Shopify inventory item mapping (compacted)")
    unmapped: str = _topic("TALLY_TOPIC_UNMAPPED", "tally.unmapped.v1",
                           "changes to SKUs without a mapping")
    drift: str = _topic("TALLY_TOPIC_DRIFT", "tally.drift.v1",
                        "differences between Shopify and the ledger")
    low_stock: str = _topic("TALLY_TOPIC_LOW_STOCK", "tally.low-stock.v1",
                            "positions at or below their low-stock threshold")
    dead_letter: str = _topic("TALLY_TOPIC_DLQ", "tally.dlq.v1",
                              "dead letters (reason, source topic/partition/offset, original "
                              "bytes)")
    history: str = _topic("TALLY_TOPIC_HISTORY", "tally.ledger-history.v1",
                          "audit trail: one record per applied movement, keyed by `sku@branch`")
    shopify_levels: str = _topic("TALLY_TOPIC_SHOPIFY_LEVELS", "tally.shopify-levels.v1",
                                 "`inventory_levels/update` observations")
    reconciliation: str = _topic("TALLY_TOPIC_RECONCILIATION", "tally.reconciliation.v1",
                                 "delta report rows and run summaries")
    kit_components: str = _topic("TALLY_TOPIC_KIT_COMPONENTS", "tally.kit-components.v1",
                                 "internal: a kit component's ATS at a branch, keyed "
                                 "`kit@branch`, from the ledger agent to the kits agent")

    @classmethod
    def prefixed(cls, prefix: str) -> Topics:
        """Every default topic name under ``prefix.`` (isolated runs: tests, demo, bench)."""
        return cls(**{f.name: f"{prefix}.{f.default}" for f in fields(cls)})

    def env(self) -> dict[str, str]:
        """The ``TALLY_TOPIC_*`` variables that make another process use these topics."""
        return {_variable(f.name): getattr(self, f.name) for f in fields(self)}

    def sources(self) -> dict[str, str]:
        """Source system name → its topic."""
        return {
            "erp": self.erp,
            "wms": self.wms,
            "pos": self.pos,
            "3pl": self.tpl,
            "shopify": self.shopify_orders,
        }


def _variable(name: str) -> str:
    meta = meta_of(next(f for f in fields(Topics) if f.name == name))
    assert meta is not None
    return meta.env[0]
