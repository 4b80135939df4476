"""The records the ledger worker writes besides its own types, with their encodings.

Every record the worker writes has one typed definition:

* ``tally.movements.v1``: ``Movement`` (``pipeline.ledger.movements``)
* ``tally.kit-components.v1``: ``ComponentUpdate`` (``pipeline.ledger.kits``)
* ``tally.shopify-push.v1``: ``ShopifyPush`` (``PublishAvailable.push_record``)
* ``tally.dlq.v1``: ``DeadLetter`` (``pipeline.messages``)
* ``tally.ledger-history.v1``, ``tally.unmapped.v1``, ``tally.low-stock.v1``: here.

The three here are ``TypedDict``s: typed for mypy, plain dicts at run time, so the history
record (one per applied movement, on the hot path) costs no object beyond the dict its JSON is
made from. The bytes are those the worker always wrote (consumers and tests read them): the
history record is compact JSON from ``codec`` (orjson), the unmapped and low-stock records are
``json.dumps`` with its default separators.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TypedDict

from pipeline.ledger import codec
from pipeline.ledger.movements import Movement
from pipeline.ledger.outputs import LowStock, ReportUnmapped
from pipeline.ledger.position import LedgerPosition


class HistoryRecord(TypedDict):
    """``tally.ledger-history.v1`` (key ``sku@branch``): a movement applied and the position it
    produced. ``outcome``: the names of the core's outputs, sorted, or ``["Applied"]``."""

    sku: str
    branch: str
    source: str
    type: str
    mark: str
    op: str
    changes: dict[str, int]
    quantity: int
    as_of: float | None
    occurred_at: float
    observed_at: float | None
    applied_at: float
    version: int
    components: dict[str, int]
    outcome: list[str]


class UnmappedRecord(TypedDict):
    """``tally.unmapped.v1`` (key ``sku@branch``): a SKU on Shopify without a catalog mapping.
    Kit records (from the kits agent) carry ``"kit": true`` after ``at``."""

    sku: str
    branch: str
    shop: str
    available: int
    at: float


class KitUnmappedRecord(UnmappedRecord):
    kit: bool


class LowStockRecord(TypedDict):
    """``tally.low-stock.v1`` (key ``sku@branch``): ATS crossed down to its threshold."""

    sku: str
    branch: str
    available: int
    threshold: int
    at: float


def history_record(movement: Movement, position: LedgerPosition, outputs: Iterable[object],
                   applied_at: float) -> bytes:
    """The encoded ``HistoryRecord`` of ``movement`` applied, giving ``position``."""
    record: HistoryRecord = {
        "sku": position.sku, "branch": position.branch, "source": movement.source,
        "type": movement.type, "mark": movement.mark, "op": movement.op,
        "changes": dict(movement.changes), "quantity": movement.quantity,
        "as_of": movement.as_of, "occurred_at": movement.occurred_at,
        "observed_at": movement.observed_at, "applied_at": applied_at,
        "version": position.version, "components": position.components(),
        "outcome": sorted({type(o).__name__ for o in outputs}) or ["Applied"],
    }
    return codec.dumps(record)


def unmapped_record(out: ReportUnmapped, at: float, *, kit: bool = False) -> bytes:
    """The encoded ``UnmappedRecord`` (``KitUnmappedRecord`` for a kit)."""
    record: UnmappedRecord = {
        "sku": out.sku, "branch": out.branch, "shop": out.shop, "available": out.available,
        "at": at,
    }
    if kit:
        record = KitUnmappedRecord(**record, kit=True)
    return json.dumps(record).encode()


def low_stock_record(out: LowStock, at: float) -> bytes:
    """The encoded ``LowStockRecord``."""
    record: LowStockRecord = {
        "sku": out.sku, "branch": out.branch, "available": out.available,
        "threshold": out.threshold, "at": at,
    }
    return json.dumps(record).encode()
