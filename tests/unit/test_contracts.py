"""Contracts: schemas/v1 ↔ Python models, and decode_event on hostile input."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ledger.decode import MAX_PAYLOAD_BYTES, decode_event, load_schemas, validate_example
from pipeline.ledger.events import EVENT_TYPES, Rejection, SourceEvent
from pipeline.ledger.movements import Movement, to_movements

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "v1"
EXAMPLES = sorted((SCHEMAS / "examples").glob("*.json"))
# Fuzz budget multiplier: the default keeps unit tests fast; TALLY_FUZZ_SCALE=10 for a long run.
_SCALE = int(os.environ.get("TALLY_FUZZ_SCALE", "1"))
LOCATIONS = frozenset({"AUS-WH", "BKN-RETAIL", "EU-3PL", "MAN-RETAIL"})


def _example(event_type: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / "examples" / f"{event_type}.json").read_text())


def _decode(obj: Any, system: str | None = None) -> SourceEvent | Rejection:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    if system is None:
        system = obj["source"] if isinstance(obj, dict) else "pos"
    return decode_event(raw, source_topic_system=system, known_locations=LOCATIONS)


def test_every_event_type_has_schema_and_example() -> None:
    schemas = {p.name.removesuffix(".schema.json") for p in (SCHEMAS / "events").glob("*.json")}
    examples = {p.stem for p in EXAMPLES}
    assert schemas == set(EVENT_TYPES) == examples


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates_and_round_trips(path: Path) -> None:
    obj = json.loads(path.read_text())
    assert validate_example(obj) == []
    assert load_schemas().fast[obj["type"]](obj)
    event = _decode(obj)
    assert isinstance(event, SourceEvent), event
    assert event.to_dict() == obj  # models and schemas cannot drift silently
    assert SourceEvent.from_dict(event.to_dict()) == event
    movements = to_movements(event)
    assert movements and all(m.sku == obj["sku"] for m in movements)
    for m in movements:
        assert Movement.from_json(m.to_json()) == m
        assert Movement.from_json(m.with_observed_at(1.5).to_json()).observed_at == 1.5


@pytest.mark.parametrize(
    ("mutate", "system", "code"),
    [
        (lambda o: o.update(type="pos.teleport"), "pos", "unknown_type"),
        (lambda o: o.update(location="NOWHERE"), "pos", "unknown_location"),
        (lambda o: o.update(quantity=1_000_001), "pos", "quantity_out_of_range"),
        (lambda o: o.update(quantity=-3), "pos", "quantity_out_of_range"),
        (lambda o: None, "erp", "source_mismatch"),
        (lambda o: o.update(source="erp"), "erp", "source_mismatch"),
        (lambda o: o.update(quantity=2.0), "pos", "schema_violation"),
        (lambda o: o.update(quantity=True), "pos", "schema_violation"),
        (lambda o: o.update(sku=" SKU-LEADING-SPACE"), "pos", "invalid_identifier"),
        (lambda o: o.update(sku="SKU-NEWLINE\n"), "pos", "invalid_identifier"),
        (lambda o: o.update(sku="SKU-\ud800"), "pos", "invalid_identifier"),
        (lambda o: o.update(sku="SKU-\u202e"), "pos", "invalid_identifier"),
        (lambda o: o.update(transaction_id="TX\u200b1"), "pos", "invalid_identifier"),
        (lambda o: o.update(location="BKN RETAIL"), "pos", "invalid_identifier"),
        (lambda o: o.update(line=0), "pos", "schema_violation"),
        (lambda o: o.update(quantityy=1), "pos", "schema_violation"),
        (lambda o: o.pop("transaction_id"), "pos", "schema_violation"),
        (lambda o: o.update(occurred_at="2026-03-10T15:04:05"), "pos", "schema_violation"),
        (lambda o: o.update(occurred_at="2026-13-45T15:04:05Z"), "pos", "invalid_timestamp"),
        (lambda o: o.pop("type"), "pos", "schema_violation"),
    ],
)
def test_semantic_rejections(mutate: Any, system: str, code: str) -> None:
    obj = _example("pos.sale")
    mutate(obj)
    result = _decode(obj, system)
    assert isinstance(result, Rejection)
    assert result.code == code, result


def test_adjustment_quantity_must_match_delta() -> None:
    obj = _example("erp.adjustment") | {"delta": -5}
    result = _decode(obj)
    assert isinstance(result, Rejection) and result.code == "quantity_mismatch"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xff\xfe not utf-8", "not_utf8"),
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"string"', "not_an_object"),
        (b'{"quantity": NaN}', "malformed_json"),
        (b"[" * 50_000 + b"]" * 50_000, "too_large"),
        (b"[" * 30_000 + b"]" * 30_000, "malformed_json"),  # recursion depth
        (b"1" * 5000, "malformed_json"),  # int too long to convert
        (b" " * (MAX_PAYLOAD_BYTES + 1), "too_large"),
    ],
)
def test_hostile_bytes(raw: bytes, code: str) -> None:
    result = decode_event(raw, source_topic_system="pos", known_locations=LOCATIONS)
    assert isinstance(result, Rejection) and result.code == code, result


def test_schemas_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pipeline.ledger.decode import schemas_dir

    monkeypatch.setenv("TALLY_SCHEMAS_DIR", str(tmp_path))
    assert schemas_dir() == tmp_path
    monkeypatch.delenv("TALLY_SCHEMAS_DIR")
    assert schemas_dir() == SCHEMAS.parent


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = sorted({k for p in EXAMPLES for k in json.loads(p.read_text())} | {"meta", "stock_state"})


@st.composite
def _near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """An example with a few fields dropped, replaced by arbitrary JSON, or added."""
    obj = _example(draw(st.sampled_from(sorted(EVENT_TYPES))))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "replace", "add", "edge"]))
        name = draw(st.sampled_from(_FIELDS))
        if action == "drop":
            obj.pop(name, None)
        elif action == "replace":
            obj[name] = draw(_json)
        elif action == "add":
            obj[draw(st.text(max_size=8))] = draw(_json)
        else:
            obj[name] = draw(
                st.sampled_from([0, -1, 1.0, 1_000_000, 1_000_001, "", "x\n", True, "2026-03-10"])
            )
    return obj


@settings(max_examples=800 * _SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_near_valid())
def test_fast_validator_agrees_with_jsonschema(obj: dict[str, Any]) -> None:
    s = load_schemas()
    event_type = obj.get("type")
    if not isinstance(event_type, str) or event_type not in s.validators:
        return
    assert s.fast[event_type](obj) == s.validators[event_type].is_valid(obj)


@settings(max_examples=1000 * _SCALE, deadline=None)
@given(_near_valid(), st.sampled_from(["erp", "wms", "pos", "3pl"]))
def test_decode_never_raises_on_near_valid_json(obj: dict[str, Any], system: str) -> None:
    result = decode_event(
        json.dumps(obj).encode(), source_topic_system=system, known_locations=LOCATIONS
    )
    assert isinstance(result, SourceEvent | Rejection)
    if isinstance(result, Rejection):
        assert result.code != "internal_error", result
    else:
        to_movements(result)  # an accepted event always has a ledger effect


@settings(max_examples=4000 * _SCALE, deadline=None)
@given(st.binary(max_size=300))
def test_decode_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    result = decode_event(raw, source_topic_system="erp", known_locations=LOCATIONS)
    assert isinstance(result, Rejection) and result.code != "internal_error"


@settings(max_examples=800 * _SCALE, deadline=None)
@given(_json)
def test_decode_never_raises_on_arbitrary_json(obj: Any) -> None:
    result = decode_event(
        json.dumps(obj).encode(), source_topic_system="wms", known_locations=LOCATIONS
    )
    assert isinstance(result, Rejection) and result.code != "internal_error"
