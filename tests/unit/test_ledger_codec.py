"""The hot path's JSON (``pipeline.ledger.codec``, orjson with the standard library where they
differ): every record reads to the same values as with ``json``, records written before the
upgrade (``json.dumps``, non-ASCII as ``\\uXXXX``) still read, and the fast encodings of pushes,
ATS breakdowns and position updates equal the slow ones they replace."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.ledger import codec
from pipeline.ledger.ats import available_to_sell
from pipeline.ledger.decode import decode_event
from pipeline.ledger.events import canonical_bytes
from pipeline.ledger.movements import Movement, to_movements
from pipeline.ledger.outputs import PublishAvailable
from pipeline.ledger.position import Hold, LedgerPosition, Pending, pack_mark
from pipeline.ledger.rules import LocationRules

LOCATIONS = {"STORE-1", "WH-1"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_reads_what_json_writes_to_the_same_values(value: object) -> None:
    for wire in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert codec.loads(wire.encode("utf-8", "surrogatepass")) == value
        assert codec.loads(wire) == value


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_writes_what_json_reads_back(value: object) -> None:
    try:
        wire = codec.dumps(value)
    except (UnicodeEncodeError, ValueError):
        # A lone surrogate: json writes an escape orjson refuses, neither reads it back as text.
        assume(False)  # discard this example only, not the whole test
    assert json.loads(wire) == value
    assert json.loads(codec.dumps_sorted(value)) == value


@pytest.mark.parametrize("wire", [
    b'{"n": 123456789012345678901234567890}',  # past 64 bits: an exact int, not a float
    b'{"n": -9223372036854775809}',
    b'{"s": "\\ud800"}',  # a lone surrogate escape: orjson refuses it, json reads it
    b'{"x": 1e999}',  # inf with json
    b"[" * 500 + b"]" * 500,
    b'{"a": 1, "a": 2}',
])
def test_reads_the_documents_orjson_would_read_otherwise_like_json(wire: bytes) -> None:
    assert codec.loads(wire) == json.loads(wire) or (
        math.isinf(json.loads(wire)["x"]) and math.isinf(codec.loads(wire)["x"]))


def test_too_deep_fails_as_with_json() -> None:
    wire = b"[" * 1100 + b"]" * 1100  # past orjson's limit (1,024) and Python's recursion
    with pytest.raises(RecursionError):
        json.loads(wire)
    with pytest.raises(RecursionError):
        codec.loads(wire)


def test_writes_what_orjson_cannot_with_json() -> None:
    assert json.loads(codec.dumps({"n": 2**70})) == {"n": 2**70}
    assert codec.dumps({1: "a"}) == b'{"1":"a"}'


@pytest.mark.parametrize(("wire", "code"), [
    (b'{"quantity": NaN}', "malformed_json"),
    (b'{"type": "pos.sale", "source": "pos", "quantity": 123456789012345678901234567890}',
     "quantity_out_of_range"),
    (b'{"not json', "malformed_json"),
    (b"[" * 30_000 + b"]" * 30_000, "malformed_json"),
])
def test_source_records_are_judged_as_with_json(wire: bytes, code: str) -> None:
    out = decode_event(wire, source_topic_system="pos", known_locations=LOCATIONS)
    assert getattr(out, "code", None) == code, out


def _position() -> LedgerPosition:
    return LedgerPosition(
        "TEE ÉTÉ 日本 😀", "STORE-1", 12, 3, 1, 0, 2, 0, 0, 0, 4, safety_buffer_override=2,
        pending=(Pending(1_790_000_001.5, "pending_sales", 2),), on_hand_as_of=1_790_000_000.125,
        snapshot_as_of={"erp": 1_790_000_000.125}, last_applied={"pos": 1_796_182_608.4371},
        version=7, marks={"pos:POS-1:1": pack_mark(1_796_182_608, "a1b2c3d4e5f6"),
                          "rev:pos:POS-0:1": 1_796_182_000},
        last_published_ats=8, unpublished_since=None,
        holds={"r:RES-1": Hold("reservation", 2, 1_796_200_000.0, 1_796_182_000.0, None)})


def test_positions_written_by_the_old_encoder_still_read() -> None:
    """A deployment upgrades in place: the table and its changelog hold positions that
    ``json.dumps`` wrote (non-ASCII escaped); they read to the same position."""
    pos = _position()
    old_wire = json.dumps(pos.to_dict(), separators=(",", ":")).encode()
    assert b"\\u" in old_wire  # the SKU's non-ASCII characters are escaped there
    assert LedgerPosition.from_json(old_wire) == pos
    assert LedgerPosition.from_json(pos.to_json()) == pos
    # ...and what the new encoder writes, the old reader (json.loads) reads the same.
    assert LedgerPosition.from_dict(json.loads(pos.to_json())) == pos
    assert json.loads(pos.to_json()) == json.loads(old_wire)


def test_movements_written_by_the_old_encoder_still_read() -> None:
    m = Movement(sku="TEE ÉTÉ", branch="STORE-1", mark="pos:POS-1:1", source="pos",
                 type="pos.sale", occurred_at=1_790_000_000.5, changes=(("pending_sales", 2),),
                 observed_at=1_790_000_001.25, digest="a1b2c3d4e5f6")
    old_wire = json.dumps(m.to_dict(), separators=(",", ":")).encode()
    assert Movement.from_json(old_wire) == m
    assert Movement.from_dict(json.loads(m.to_json())) == m
    assert m.with_observed_at(3.5) == dataclasses.replace(m, observed_at=3.5)


def test_push_record_is_the_push_topic_record() -> None:
    out = PublishAvailable(sku="SKU-1", branch="STORE-1", shop="s.myshopify.com",
                           inventory_item_id="gid://shopify/InventoryItem/1",
                           location_id="gid://shopify/Location/2", available=5,
                           ledger_version=9, oldest_event_at=1_790_000_000.25,
                           breakdown={"value": 5, "raw": 5})
    push = out.to_push(emitted_at=1_790_000_001.5, correlation_id="pos:T:1")
    assert out.push_record(emitted_at=1_790_000_001.5, correlation_id="pos:T:1") == (
        push.key.encode(), push.to_json())


def test_fast_ats_dict_and_position_update_equal_the_dataclass_ones() -> None:
    pos = _position()
    ats = available_to_sell(pos, LocationRules("STORE-1", safety_buffer=1))
    assert ats.as_dict() == dataclasses.asdict(ats)
    assert list(ats.as_dict()) == [f.name for f in dataclasses.fields(ats)]
    assert pos.evolve(version=8, on_hand=1) == dataclasses.replace(pos, version=8, on_hand=1)
    with pytest.raises(TypeError):
        pos.evolve(no_such_field=1)


def test_movements_made_with_observed_at_equal_the_copies() -> None:
    from pipeline.simulation.traffic import TrafficGenerator

    gen = TrafficGenerator(skus=["SKU-1", "SKU-2"], branches=["STORE-1", "WH-1"], seed=3)
    for system, raw in gen.encoded(200):
        event = decode_event(raw, source_topic_system=system, known_locations=LOCATIONS)
        assert not hasattr(event, "code"), event
        assert to_movements(event, observed_at=12.5) == [
            m.with_observed_at(12.5) for m in to_movements(event)]


def _old_canonical(data: dict) -> bytes:
    """The digest's document as every stored mark was made: ``json`` with sorted keys."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_content_digest_document_is_the_one_json_writes(data: dict) -> None:
    assert canonical_bytes(data) == _old_canonical(data)


def test_content_digest_document_is_the_one_json_writes_for_every_code_point() -> None:
    # Escapes are where encoders differ: every code point, surrogates included, in a value and
    # a key, beside the other scalar kinds a source line holds.
    surrogates = range(0xD800, 0xE000)  # each alone: one in a run sends the run to ``json``
    runs = [chr(cp) for cp in surrogates] + [
        "".join(chr(cp) for cp in range(start, start + 256) if cp not in surrogates)
        for start in range(0, 0x110000, 256)]
    for text in runs:
        data = {"sku": text, text: "k", "line": 2**63 - 1, "complete": True, "as_of": None}
        assert canonical_bytes(data) == _old_canonical(data), hex(ord(text[0]))
    wide = {"line": 2**64, "quantity": -(2**70)}
    assert canonical_bytes(wide) == _old_canonical(wide)
