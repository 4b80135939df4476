"""One hop where the key allows it (``agents.ledger.HomePartition``, ``agents.intake.Intake``):
a movement is applied where its source record was read only when that record sits on the
partition the movements topic's partitioner gives the movement's key and this worker owns that
partition of the positions table; every other movement is re-keyed. No Kafka: an in-memory
emitter and a ledger that records what it was asked to apply."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from agents.intake import Intake
from agents.ledger import HomePartition
from pipeline.ledger.decode import load_schemas
from pipeline.ledger.locations import load_locations
from pipeline.ledger.movements import Movement
from tests.support.emitter import MemoryEmitter
from tests.support.fixtures import write_locations

CHANGELOG = "tally-worker-positions-changelog"
PARTITIONS = 8


@dataclass
class FakeAssignor:
    actives: set[TP] = field(default_factory=set)

    def is_active(self, tp: TP) -> bool:
        return tp in self.actives


@dataclass
class RecordingLedger:
    applied: list[tuple[int, bytes, Movement]] = field(default_factory=list)

    async def apply(self, msg: Any, movement: Movement, key: bytes) -> None:
        self.applied.append((msg.partition, key, movement))


def owning(*partitions: int) -> HomePartition:
    return HomePartition(FakeAssignor({TP(CHANGELOG, p) for p in partitions}),  # type: ignore[arg-type]
                         CHANGELOG, PARTITIONS)


@given(st.binary(min_size=1, max_size=64))
def test_home_partition_agrees_with_aiokafka_and_faust(key: bytes) -> None:
    everything = list(range(PARTITIONS))
    assert owning().of(key) == DefaultPartitioner()(key, everything, everything)


@given(st.text(min_size=1, max_size=30), st.sampled_from(["WH-ONLINE", "STORE-ONLINE"]))
def test_applied_here_only_on_the_keys_partition_and_when_owned(sku: str, branch: str) -> None:
    key = f"{sku}@{branch}".encode()
    home = owning(*range(PARTITIONS)).of(key)
    assert owning(home).here(key, home)
    assert not owning(*(p for p in range(PARTITIONS) if p != home)).here(key, home)
    assert not owning(*range(PARTITIONS)).here(key, (home + 1) % PARTITIONS)


def _intake(tmp_path: Any, home: HomePartition) -> tuple[Intake, MemoryEmitter, RecordingLedger]:
    emitter, ledger = MemoryEmitter(), RecordingLedger()
    intake = Intake(emitter, load_locations(write_locations(tmp_path)), load_schemas(),
                    {"erp-topic": "erp"}, (home, ledger))  # type: ignore[arg-type]
    return intake, emitter, ledger


def _record(partition: int, obj: dict[str, Any]) -> Any:
    return SimpleNamespace(topic="erp-topic", partition=partition, offset=7, key=None,
                           value=json.dumps(obj).encode(), timestamp=1_773_100_000.0)


def _erp(kind: str, txn: str, sku: str, location: str, quantity: int, **extra: Any) -> dict:
    return {"schema_version": "1", "type": kind, "source": "erp", "transaction_id": txn,
            "line": 1, "occurred_at": "2026-03-10T06:00:00Z", "sku": sku, "location": location,
            "quantity": quantity, **extra}


def test_a_receipt_on_its_keys_partition_is_applied_where_read(tmp_path: Any) -> None:
    key = b"SKU-KEYED-BY-SKU-AT-LOCATION@WH-ONLINE"
    home = owning(*range(PARTITIONS))
    intake, emitter, ledger = _intake(tmp_path, home)
    msg = _record(home.of(key), _erp("erp.goods_receipt", "GR-1",
                                     "SKU-KEYED-BY-SKU-AT-LOCATION", "WH-ONLINE", 5))
    asyncio.run(intake.take_in(msg, msg.value))
    assert [(p, k, mv.changes) for p, k, mv in ledger.applied] == [
        (home.of(key), key, (("on_hand", 5),))]
    assert emitter.sent == []


def test_a_receipt_elsewhere_is_rekeyed(tmp_path: Any) -> None:
    key = b"SKU-CRC32-PARTITIONED@WH-ONLINE"
    home = owning(*range(PARTITIONS))
    intake, emitter, ledger = _intake(tmp_path, home)
    msg = _record((home.of(key) + 3) % PARTITIONS, _erp(
        "erp.goods_receipt", "GR-2", "SKU-CRC32-PARTITIONED", "WH-ONLINE", 5))
    asyncio.run(intake.take_in(msg, msg.value))
    assert ledger.applied == []
    assert [(role, k, json.loads(v)["changes"]) for role, k, v in emitter.sent] == [
        ("movements", key, {"on_hand": 5})]


def test_a_transfer_applies_the_leg_on_this_partition_and_rekeys_the_other(tmp_path: Any) -> None:
    sku = "SKU-TRANSFER-SPLIT"
    # A SKU whose two branch keys fall on different partitions (found, not assumed).
    home = owning(*range(PARTITIONS))
    n = next(i for i in range(1000) if home.of(f"{sku}-{i}@WH-ONLINE".encode())
             != home.of(f"{sku}-{i}@STORE-ONLINE".encode()))
    sku = f"{sku}-{n}"
    source, dest = f"{sku}@WH-ONLINE".encode(), f"{sku}@STORE-ONLINE".encode()
    intake, emitter, ledger = _intake(tmp_path, home)
    msg = _record(home.of(source), _erp("erp.transfer_out", "TR-1", sku, "WH-ONLINE", 4,
                                        to_location="STORE-ONLINE", reference="TR-1"))
    asyncio.run(intake.take_in(msg, msg.value))
    assert [k for _, k, _ in ledger.applied] == [source]
    assert [(role, k) for role, k, _ in emitter.sent] == [("movements", dest)]
