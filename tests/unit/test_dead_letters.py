"""Dead letters always fit, keep what can be kept, and say what each reason means; conflicting
duplicates are told apart from redeliveries; the worker's record guard retries what passes and
dead-letters what does not."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from faust.exceptions import PartitionsMismatch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.guard import RecordGuard, is_transient, traceback_digest
from pipeline.ledger import ApplyContext, Duplicate, LocationRules, apply
from pipeline.ledger.decode import decode_event
from pipeline.ledger.events import REJECTION_REASONS, SourceEvent, reason_table
from pipeline.ledger.movements import to_movements
from pipeline.ledger.outputs import ConflictingDuplicate
from pipeline.ledger.position import LedgerPosition, mark_applied_at, mark_digest, pack_mark
from pipeline.messages import (
    DEAD_LETTER_MAX_BYTES,
    DEAD_LETTER_MAX_KEY_BYTES,
    DEAD_LETTER_PREFIX_BYTES,
    DeadLetter,
)
from pipeline.observability.health import Readiness

ROOT = Path(__file__).resolve().parents[2]


def _letter(value: bytes | None) -> DeadLetter:
    return DeadLetter.of_record(reason="too_large", detail="x", topic="inventory.pos.v1",
                                partition=3, offset=77, value=value, service="worker", at=1.0)


@pytest.mark.parametrize("value", [
    b"\x00" * 200_000,  # control bytes: JSON would escape each into 6
    b"\x1b[" * 500_000,  # 1 MB of escapes
    os.urandom(1_048_000),  # the broker's limit, not UTF-8
    ("品" * 349_000).encode(),  # ~1 MB of 3-byte UTF-8
    json.dumps({"note": "x" * 1_000_000}).encode(),
    b"",
])
def test_every_dead_letter_fits_and_leads_back_to_its_original(value: bytes) -> None:
    letter = _letter(value)
    wire = letter.to_json()
    assert len(wire) + DEAD_LETTER_MAX_KEY_BYTES <= DEAD_LETTER_MAX_BYTES
    back = DeadLetter.from_json(wire)
    assert back.original_length == len(value)
    assert back.original_sha256 == hashlib.sha256(value).hexdigest()
    assert (back.source_topic, back.source_partition, back.source_offset) == (
        "inventory.pos.v1", 3, 77)
    kept = back.original_bytes()
    if back.truncated:
        assert len(value) > 600_000 and 0 < len(kept) <= DEAD_LETTER_PREFIX_BYTES
        assert value.startswith(kept)
    else:
        assert kept == value


def test_a_200kb_value_of_control_bytes_is_kept_whole_without_escaping() -> None:
    letter = _letter(b"\x01" * 200_000)
    assert not letter.truncated and letter.original_encoding == "base64"
    assert len(letter.to_json()) < 200_000 * 4 // 3 + 1000


def test_plain_json_originals_stay_readable_text() -> None:
    raw = json.dumps({"sku": "TEE BLUE M", "name": "été 日本"}, ensure_ascii=False).encode()
    letter = _letter(raw)
    assert letter.original_encoding == "utf-8" and letter.original_bytes() == raw
    assert "日本".encode() in letter.to_json()  # unescaped: 3 bytes a character, not 6


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=5000))
def test_any_bytes_round_trip_through_a_letter(value: bytes) -> None:
    back = DeadLetter.from_json(_letter(value).to_json())
    assert back.original_bytes() == value and not back.truncated


def test_schemas_readme_lists_every_reason_the_code_gives() -> None:
    readme = (ROOT / "schemas" / "README.md").read_text()
    assert reason_table() in readme, "schemas/README.md: paste `tally dlq reasons` output"
    code = "\n".join(p.read_text() for p in [*(ROOT / "pipeline").rglob("*.py"),
                                             *(ROOT / "agents").rglob("*.py")])
    given_by_code = set(re.findall(r'Rejection\(\s*"([a-z_]+)"', code))
    given_by_code |= set(re.findall(r'guard\.send\(\s*"([a-z_]+)"', code))
    given_by_code.add("internal_error")  # RecordGuard.internal_error
    assert given_by_code <= set(REJECTION_REASONS), given_by_code - set(REJECTION_REASONS)


# --- conflicting duplicates --------------------------------------------------------------------

RULES = LocationRules("BKN-RETAIL", fulfills_online=False)


def _event(**fields: Any) -> SourceEvent:
    obj = json.loads((ROOT / "schemas/v1/examples/pos.sale.json").read_text())
    obj.update(fields)
    result = decode_event(json.dumps(obj).encode(), source_topic_system="pos",
                          known_locations={"BKN-RETAIL"})
    assert isinstance(result, SourceEvent), result
    return result


def _apply(position: LedgerPosition | None, event: SourceEvent) -> tuple[LedgerPosition, list]:
    (movement,) = to_movements(event)
    return apply(position, movement, ApplyContext(now=1_800_000_000.0, rules=RULES))


def test_same_line_with_other_content_is_a_conflict_and_the_first_stays() -> None:
    first, _ = _apply(None, _event(sku="SKU-CONFLICT", quantity=2))
    again, outputs = _apply(first, _event(sku="SKU-CONFLICT", quantity=5))
    assert again is first and again.pending_sales == 2
    (out,) = outputs
    assert isinstance(out, ConflictingDuplicate)
    assert out.applied_digest != out.digest and out.mark == "pos:POS-BKN-0042-118833:1"


def test_redelivery_and_meta_only_changes_are_plain_duplicates() -> None:
    first, _ = _apply(None, _event(sku="SKU-REDELIVERED", quantity=2))
    again, outputs = _apply(first, _event(sku="SKU-REDELIVERED", quantity=2,
                                          meta={"trace": "retry-2"}))
    assert again is first and outputs == [Duplicate("pos:POS-BKN-0042-118833:1")]


def test_marks_written_before_digests_existed_still_dedupe() -> None:
    first, _ = _apply(None, _event(sku="SKU-LEGACY-MARK", quantity=2))
    legacy = LedgerPosition.from_dict({**first.to_dict(), "m": {
        k: mark_applied_at(v) for k, v in first.to_dict()["m"].items()}})
    assert all(v < 2**32 for v in legacy.marks.values())  # bare epoch seconds, as before
    again, outputs = _apply(legacy, _event(sku="SKU-LEGACY-MARK", quantity=9))
    assert again is legacy and isinstance(outputs[0], Duplicate)
    assert LedgerPosition.from_json(first.to_json()) == first


def test_a_mark_packs_its_applied_time_and_digest_into_one_int() -> None:
    value = pack_mark(1_800_000_123, "a1b2c3d4e5f6")
    assert mark_applied_at(value) == 1_800_000_123 and mark_digest(value) == 0xd4e5f6
    assert mark_applied_at(1_800_000_123) == 1_800_000_123
    assert mark_digest(1_800_000_123) is None


# --- the record guard ----------------------------------------------------------------------------

@dataclass
class FakeTopic:
    sent: list[tuple[bytes | None, bytes]] = field(default_factory=list)

    async def send(self, key: bytes | None, value: bytes) -> None:
        self.sent.append((key, value))


@dataclass
class FakeMessage:
    topic: str = "inventory.pos.v1"
    partition: int = 1
    offset: int = 42
    key: bytes | None = b"SKU-GUARDED@BKN-RETAIL"
    value: bytes | None = b'{"type":"pos.sale"}'


def test_transient_failures_are_waited_out_never_dead_lettered() -> None:
    dlq = FakeTopic()
    guard = RecordGuard(dlq, first_backoff_s=0.001)  # type: ignore[arg-type]
    calls = []

    async def flaky(n: int) -> None:
        calls.append(n)
        if len(calls) < 3:
            raise KafkaTimeoutError()

    asyncio.run(guard.run("intake", FakeMessage(), flaky, 7))
    assert calls == [7, 7, 7] and dlq.sent == []


def test_a_bug_dead_letters_one_record_as_internal_error() -> None:
    dlq = FakeTopic()
    guard = RecordGuard(dlq, first_backoff_s=0.001)  # type: ignore[arg-type]

    async def buggy() -> None:
        {}["missing"]

    asyncio.run(guard.run("ledger", FakeMessage(key=b"k" * 10_000), buggy))
    ((key, value),) = dlq.sent
    letter = DeadLetter.from_json(value)
    assert letter.reason == "internal_error" and letter.detail.startswith("KeyError")
    assert letter.extra["agent"] == "ledger" and len(letter.extra["traceback_digest"]) == 12
    assert "buggy" in letter.extra["where"]
    assert letter.original_bytes() == FakeMessage.value
    assert key is not None and key.startswith(b"sha256:")  # an oversized key is replaced


def test_transient_is_told_from_permanent() -> None:
    assert is_transient(KafkaTimeoutError()) and is_transient(TimeoutError())
    assert is_transient(PartitionsMismatch("changelog has 0 partitions"))  # metadata not known
    assert not is_transient(MessageSizeTooLargeError()) and not is_transient(ValueError())


def test_the_same_bug_gives_the_same_digest() -> None:
    def fail(x: int) -> None:
        raise ValueError(f"value {x}")

    digests = set()
    for x in (1, 2):
        try:
            fail(x)
        except ValueError as exc:
            digests.add(traceback_digest(exc))
    assert len(digests) == 1


def test_an_agent_stuck_retrying_one_record_is_not_ready_until_it_passes() -> None:
    now = [0.0]
    readiness = Readiness("worker", clock=lambda: now[0])
    guard = RecordGuard(FakeTopic(), first_backoff_s=0.001,  # type: ignore[arg-type]
                        readiness=readiness)
    guard.register("ledger")
    seen = []

    async def broker_away_for_a_while() -> None:
        seen.append(readiness.report()[0])
        if len(seen) < 4:
            now[0] += 20.0  # 20 s per attempt: failing for 40 s (> 30 s grace) at the fourth
            raise KafkaTimeoutError()

    asyncio.run(guard.run("ledger", FakeMessage(), broker_away_for_a_while))
    assert seen == [200, 200, 200, 503]
    status, body = readiness.report()
    assert status == 200 and body["checks"]["agent:ledger"] is True
