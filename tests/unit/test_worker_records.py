"""The records the worker writes (``pipeline/ledger/records.py``) are byte for byte what it
wrote before they were typed: the old expressions are the reference here."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.ledger import codec
from pipeline.ledger.movements import Movement
from pipeline.ledger.outputs import Duplicate, LowStock, PublishAvailable, ReportUnmapped
from pipeline.ledger.position import LedgerPosition
from pipeline.ledger.records import history_record, low_stock_record, unmapped_record

AT = 1_790_000_001.123456


def old_history(movement: Movement, position: LedgerPosition, outputs: list[Any],
                applied_at: float) -> bytes:
    return codec.dumps({
        "sku": position.sku, "branch": position.branch, "source": movement.source,
        "type": movement.type, "mark": movement.mark, "op": movement.op,
        "changes": dict(movement.changes), "quantity": movement.quantity,
        "as_of": movement.as_of, "occurred_at": movement.occurred_at,
        "observed_at": movement.observed_at, "applied_at": applied_at,
        "version": position.version, "components": position.components(),
        "outcome": sorted({type(o).__name__ for o in outputs}) or ["Applied"],
    })


@pytest.mark.parametrize("sku", ["SKU-HISTORY", "SKU-ÜNICODE-ß", "SKU-emoji-🧦"])
@pytest.mark.parametrize("outputs", [[], [Duplicate("m")], [
    PublishAvailable("s", "b", "shop", "i", "l", 1, 2, 3.0), LowStock("s", "b", 1, 2)]])
def test_history_record_bytes_are_unchanged(sku: str, outputs: list[Any]) -> None:
    movement = Movement(sku=sku, branch="BKN", mark="erp:R1:1", source="erp",
                        type="erp.receipt", occurred_at=1_790_000_000.5,
                        changes=(("on_hand", 12),), as_of=None, observed_at=1_790_000_000.75)
    position = LedgerPosition(sku, "BKN", on_hand=12, version=4)
    assert history_record(movement, position, outputs, AT) == old_history(
        movement, position, outputs, AT)


@pytest.mark.parametrize("sku", ["SKU-UNMAPPED", "SKU-ÜNMAPPED-ß"])
def test_unmapped_record_bytes_are_unchanged(sku: str) -> None:
    out = ReportUnmapped(sku, "BKN", "shop.myshopify.com", 7)
    assert unmapped_record(out, AT) == json.dumps({
        "sku": out.sku, "branch": out.branch, "shop": out.shop,
        "available": out.available, "at": AT,
    }).encode()
    assert unmapped_record(out, AT, kit=True) == json.dumps({
        "sku": out.sku, "branch": out.branch, "shop": out.shop,
        "available": out.available, "at": AT, "kit": True,
    }).encode()


@pytest.mark.parametrize("sku", ["SKU-LOW-STOCK", "SKU-LÖW-STOCK"])
def test_low_stock_record_bytes_are_unchanged(sku: str) -> None:
    out = LowStock(sku, "BKN", 3, 5)
    assert low_stock_record(out, AT) == json.dumps(
        {k: getattr(out, k) for k in out.__slots__} | {"at": AT}).encode()
