"""The worker's handlers (``agents/handlers.py``) with an in-memory emitter: what the ledger and
kits agents send for each output of the core, without Kafka. SKUs are named after the scenario."""

from __future__ import annotations

import json
import typing
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from agents.handlers import (
    HANDLERS,
    Applied,
    Env,
    handle_movement_outputs,
    publish,
    report_unmapped,
)
from pipeline.ledger import ApplyContext, Catalog, LocationRules, Movement, apply
from pipeline.ledger.locations import Branch, Locations
from pipeline.ledger.outputs import (
    BelowZero,
    ConflictingDuplicate,
    LowStock,
    NotOwner,
    Output,
    PublishAvailable,
    ReportUnmapped,
    TransferShortfall,
)
from pipeline.ledger.position import LedgerPosition
from tests.support.emitter import MemoryEmitter

SHOP = "tally-demo.myshopify.com"
LOC_GID = "gid://shopify/Location/1002"
RULES = LocationRules("BKN", fulfills_online=True, shop=SHOP, shopify_location_id=LOC_GID,
                      low_stock_threshold=5)
LOCATIONS = Locations({"BKN": Branch("BKN", "Brooklyn", RULES)}, {(SHOP, LOC_GID): "BKN"})
T0 = 1_773_100_000.0
MSG: Any = SimpleNamespace(topic="tally.movements.v1", partition=3, offset=41, key=b"k",
                           value=b"{}")


def env_with(*mapped_skus: str) -> tuple[Env, MemoryEmitter]:
    emitter = MemoryEmitter()
    catalog = Catalog({(SHOP, sku): f"gid://shopify/InventoryItem/{i}"
                       for i, sku in enumerate(mapped_skus, 1)})
    return Env(emitter, LOCATIONS, catalog), emitter


def receipt(sku: str, mark: str, units: int, digest: str = "") -> Movement:
    return Movement(sku=sku, branch="BKN", mark=mark, source="erp", type="erp.receipt",
                    occurred_at=T0, changes=(("on_hand", units),), observed_at=T0,
                    digest=digest)


def sale(sku: str, mark: str, units: int) -> Movement:
    return Movement(sku=sku, branch="BKN", mark=mark, source="pos", type="pos.sale",
                    occurred_at=T0, changes=(("on_hand", -units),), observed_at=T0)


def applied(env: Env, position: LedgerPosition | None, movement: Movement
            ) -> tuple[LedgerPosition, list[Output]]:
    mapping = env.catalog.mapping_for(RULES, movement.sku)
    return apply(position, movement, ApplyContext(now=T0, rules=RULES, mapping=mapping))


async def test_every_output_kind_has_one_handler() -> None:
    assert set(HANDLERS) == set(typing.get_args(Output))


async def test_an_applied_movement_writes_one_push_and_one_history_record() -> None:
    env, emitter = env_with("SKU-APPLIED")
    movement = receipt("SKU-APPLIED", "erp:R1:1", 12)
    position, outputs = applied(env, None, movement)
    await handle_movement_outputs(env, Applied(), MSG, movement, position, outputs)
    assert [role for role, _, _ in emitter.sent] == ["push", "history"]
    [(key, history)] = emitter.records("history")
    assert key == b"SKU-APPLIED@BKN"
    assert history["mark"] == "erp:R1:1" and history["outcome"] == ["PublishAvailable"]
    assert history["components"]["on_hand"] == 12 and history["version"] == position.version
    [(_, push)] = emitter.records("push")
    assert push["available"] == 12 and push["correlation_id"] == "erp:R1:1"


async def test_a_duplicate_republishes_the_current_value_and_writes_no_history() -> None:
    env, emitter = env_with("SKU-REDELIVERED")
    movement = receipt("SKU-REDELIVERED", "erp:R2:1", 7)
    position, _ = applied(env, None, movement)
    again, outputs = applied(env, position, movement)
    await handle_movement_outputs(env, Applied(), MSG, movement, again, outputs)
    assert [role for role, _, _ in emitter.sent] == ["push"]
    [(_, push)] = emitter.records("push")
    assert push["available"] == 7 and push["ledger_version"] == again.version
    assert not emitter.dead_letters


async def test_a_duplicate_of_an_unmapped_sku_sends_nothing() -> None:
    env, emitter = env_with()
    movement = receipt("SKU-DUPLICATE-UNMAPPED", "erp:R3:1", 7)
    position, _ = applied(env, None, movement)
    again, outputs = applied(env, position, movement)
    await handle_movement_outputs(env, Applied(), MSG, movement, again, outputs)
    assert emitter.sent == []


async def test_a_conflicting_duplicate_dead_letters_with_both_digests_and_sends_no_history(
) -> None:
    env, emitter = env_with("SKU-CONFLICT")
    first = receipt("SKU-CONFLICT", "erp:R4:1", 3, digest="a1b2c3")
    position, _ = applied(env, None, first)
    other = replace(first, changes=(("on_hand", 30),), digest="d4e5f6")
    again, outputs = applied(env, position, other)
    assert isinstance(outputs[0], ConflictingDuplicate)
    await handle_movement_outputs(env, Applied(), MSG, other, again, outputs)
    assert emitter.sent == []
    [(reason, detail, msg, extra)] = emitter.dead_letters
    assert reason == "conflicting_duplicate" and msg is MSG
    assert extra == {"mark": "erp:R4:1", "applied_digest": "a1b2c3", "digest": "d4e5f6"}
    assert "a1b2c3" in detail and "d4e5f6" in detail


async def test_a_conflicting_duplicate_stops_the_outputs_after_it() -> None:
    env, emitter = env_with()
    movement = receipt("SKU-CONFLICT-FIRST", "erp:R5:1", 1)
    position = LedgerPosition("SKU-CONFLICT-FIRST", "BKN", on_hand=1, version=1)
    await handle_movement_outputs(env, Applied(), MSG, movement, position, [
        ConflictingDuplicate("erp:R5:1", "aaaaaa", "bbbbbb"),
        LowStock("SKU-CONFLICT-FIRST", "BKN", 1, 5)])
    assert emitter.sent == [] and len(emitter.dead_letters) == 1


async def test_an_unmapped_output_writes_the_unmapped_record() -> None:
    env, emitter = env_with()
    movement = receipt("SKU-UNMAPPED", "erp:R6:1", 4)
    position, outputs = applied(env, None, movement)
    assert any(isinstance(o, ReportUnmapped) for o in outputs)
    await handle_movement_outputs(env, Applied(), MSG, movement, position, outputs)
    [(key, record)] = emitter.records("unmapped")
    assert key == b"SKU-UNMAPPED@BKN"
    assert {k: record[k] for k in ("sku", "branch", "shop", "available")} == {
        "sku": "SKU-UNMAPPED", "branch": "BKN", "shop": SHOP, "available": 4}
    assert "kit" not in record
    [(_, history)] = emitter.records("history")
    assert history["outcome"] == ["ReportUnmapped"]


async def test_a_kit_unmapped_output_is_marked_kit_and_keyed_by_the_kit() -> None:
    env, emitter = env_with()
    at = Applied(MSG, b"KIT-UNMAPPED@BKN", "", "kit:SKU-A:3", kit=True)
    await report_unmapped(env, ReportUnmapped("KIT-UNMAPPED", "BKN", SHOP, 2), at)
    [(key, record)] = emitter.records("unmapped")
    assert key == b"KIT-UNMAPPED@BKN" and record["kit"] is True


async def test_a_low_stock_output_writes_its_record() -> None:
    env, emitter = env_with("SKU-LOW-STOCK")
    movement = receipt("SKU-LOW-STOCK", "erp:R7:1", 8)
    position, _ = applied(env, None, movement)
    sold = sale("SKU-LOW-STOCK", "pos:S7:1", 5)
    position, outputs = applied(env, position, sold)
    await handle_movement_outputs(env, Applied(), MSG, sold, position, outputs)
    [(key, record)] = emitter.records("low_stock")
    assert key == b"SKU-LOW-STOCK@BKN"
    assert {k: record[k] for k in ("sku", "branch", "available", "threshold")} == {
        "sku": "SKU-LOW-STOCK", "branch": "BKN", "available": 3, "threshold": 5}
    assert sorted(role for role, _, _ in emitter.sent) == ["history", "low_stock", "push"]


async def test_a_kit_push_uses_the_kit_correlation_id() -> None:
    env, emitter = env_with()
    out = PublishAvailable("KIT-PUSHED", "BKN", SHOP, "gid://shopify/InventoryItem/9", LOC_GID,
                           2, 4, T0)
    await publish(env, out, Applied(MSG, b"KIT-PUSHED@BKN", "", "kit:SKU-A:4", kit=True))
    [(key, push)] = emitter.records("push")
    assert push["correlation_id"] == "kit:SKU-A:4" and push["available"] == 2
    assert key == f"{SHOP}|gid://shopify/InventoryItem/9|{LOC_GID}".encode()


@pytest.mark.parametrize("out", [
    BelowZero("SKU-BELOW-ZERO", "BKN", "on_hand", -2),
    TransferShortfall("SKU-TRANSFER-SHORT", "BKN", "T-9", 3),
    NotOwner("wms:X:1", "wms", "on_hand", "erp"),
])
async def test_counted_or_recorded_outputs_send_nothing_but_history(out: Output) -> None:
    env, emitter = env_with()
    movement = receipt("SKU-COUNTED", "erp:R8:1", 1)
    position = LedgerPosition("SKU-COUNTED", "BKN", on_hand=1, version=1)
    await handle_movement_outputs(env, Applied(), MSG, movement, position, [out])
    [(_, history)] = emitter.records("history")
    assert history["outcome"] == [type(out).__name__]
    assert [role for role, _, _ in emitter.sent] == ["history"]


def test_memory_emitter_records_are_json() -> None:
    emitter = MemoryEmitter()
    emitter.sent.append(("history", b"k", json.dumps({"a": 1}).encode()))
    assert emitter.records("history") == [(b"k", {"a": 1})]
