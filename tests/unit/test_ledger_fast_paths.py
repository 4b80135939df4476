"""The ledger core's fast paths against what they replace: each gives the same values, the same
bytes and the same errors as the plain code it stands in for (kept here as the reference)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Container
from typing import Any
from urllib.parse import urljoin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ledger import codec, decode
from pipeline.ledger.decode import SCHEMA_VERSION_DIR, load_schemas
from pipeline.ledger.events import (
    _FIELDS,
    EVENT_TYPES,
    MAX_QUANTITY,
    Rejection,
    SourceEvent,
    content_digest,
    parse_time,
)
from pipeline.ledger.fastcheck import compile_schema
from pipeline.ledger.movements import COMPONENTS
from pipeline.ledger.position import Hold, LedgerPosition, Pending
from tests.unit.test_contracts import _json, _near_valid

_REQUIRED = [f.name for f in dataclasses.fields(SourceEvent) if f.default is dataclasses.MISSING]
_OPTIONAL = sorted(_FIELDS - set(_REQUIRED))


def _reference_digest(data: dict[str, Any]) -> str:
    """``content_digest`` as it was: ``json`` with sorted keys, ``meta`` left out."""
    doc = {k: v for k, v in data.items() if k != "meta"}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def _reference_from_dict(data: dict[str, Any]) -> SourceEvent:
    """``SourceEvent.from_dict`` as it was: the dataclass's own ``__init__``."""
    as_of = data.get("as_of")
    if data.get("expires_at") is not None:
        parse_time(data["expires_at"])
    return SourceEvent(
        **{k: data[k] for k in data if k in _FIELDS},
        occurred_ts=parse_time(data["occurred_at"]),
        as_of_ts=parse_time(as_of) if as_of is not None else None,
        digest=_reference_digest(data),
    )


def _outcome(build: Any, data: dict[str, Any]) -> tuple[str, Any]:
    try:
        event = build(data)
    except Exception as exc:  # the same error is part of the behaviour
        return "raised", (type(exc), str(exc))
    # Every field, the ones equality leaves out (timestamps, digest) included.
    return "built", [(f.name, getattr(event, f.name)) for f in dataclasses.fields(event)]


_times = st.sampled_from(
    ["2026-03-10T08:00:00Z", "2026-03-10T08:00:00.123456+02:00", "2026-03-10 08:00:00-05:30",
     "2026-03-10T08:00:00", "not a time", ""])


@st.composite
def _event_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Dicts with SourceEvent's fields (sometimes one required missing), arbitrary values, and
    unknown keys."""
    data: dict[str, Any] = {name: draw(_json) for name in _REQUIRED}
    data["occurred_at"] = draw(_times)
    for name in draw(st.lists(st.sampled_from(_OPTIONAL), unique=True, max_size=8)):
        data[name] = draw(_times if name in ("as_of", "expires_at") else _json)
    for _ in range(draw(st.integers(0, 2))):
        data[draw(st.sampled_from(["occurred_ts", "digest", "x"]))] = draw(_json)
    if draw(st.integers(0, 9)) == 0:
        del data[draw(st.sampled_from(_REQUIRED))]
    return data


@settings(max_examples=300, deadline=None)
@given(_event_dicts())
def test_from_dict_builds_what_the_dataclass_init_builds(data: dict[str, Any]) -> None:
    assert _outcome(SourceEvent.from_dict, data) == _outcome(_reference_from_dict, data)


def test_from_dict_keeps_the_event_immutable_and_equal() -> None:
    data = {"schema_version": "1", "type": "pos.sale", "source": "pos", "transaction_id": "T",
            "line": 1, "occurred_at": "2026-03-10T08:00:00Z", "sku": "S", "location": "L",
            "quantity": 2, "register_id": "R"}
    event = SourceEvent.from_dict(data)
    assert event == _reference_from_dict(data) and hash(event) is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.sku = "other"  # type: ignore[misc]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*_FIELDS, "meta", "x"]), _json, max_size=8))
def test_content_digest_is_the_one_json_gives(data: dict[str, Any]) -> None:
    assert content_digest(data) == _reference_digest(data)


def _plain_checks() -> dict[str, Any]:
    """Every event schema compiled without fusing: one check per keyword."""
    base = load_schemas().root
    docs = [json.loads(p.read_text()) for p in [base / "envelope.schema.json",
                                                *sorted((base / "events").glob("*.json"))]]
    by_id = {doc["$id"]: doc for doc in docs}

    def resolve(base_uri: str, ref: str) -> dict[str, Any]:
        return by_id[urljoin(base_uri, ref)]

    assert base.name == SCHEMA_VERSION_DIR
    return {doc["$id"].rsplit("/", 1)[1].removesuffix(".schema.json"):
            compile_schema(doc, resolve, fuse=False) for doc in docs[1:]}


_PLAIN = _plain_checks()


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_near_valid(), st.sampled_from(sorted(_PLAIN)))
def test_fused_schema_checks_answer_as_the_plain_ones(obj: dict[str, Any], other: str) -> None:
    fast = load_schemas().fast
    own = obj.get("type")
    for event_type in {other, *([own] if isinstance(own, str) and own in fast else [])}:
        assert fast[event_type](obj) == _PLAIN[event_type](obj), event_type
        for value in (obj.get("sku"), obj.get("meta"), [obj], None):
            assert fast[event_type](value) == _PLAIN[event_type](value)


@pytest.mark.parametrize("size", [0, 32, 33])
def test_fused_schema_checks_count_meta_members_as_the_plain_ones(size: int) -> None:
    obj = json.loads((load_schemas().root / "examples" / "pos.sale.json").read_text())
    obj["meta"] = {str(i): i for i in range(size)}
    assert load_schemas().fast["pos.sale"](obj) == _PLAIN["pos.sale"](obj) == (size <= 32)


_floats = st.floats(allow_nan=False, allow_infinity=False, width=32)
_small = st.integers(-(2**40), 2**40)
_pending = st.builds(Pending, _floats, st.sampled_from(["on_hand", "pending_sales"]), _small)
_holds = st.builds(Hold, st.sampled_from(["order", "reservation", "transit", "cod"]), _small,
                   st.none() | _floats, _floats, st.none() | st.sampled_from(["prepaid", "cod"]))
_names = st.text(max_size=6)
_position_values: dict[str, st.SearchStrategy[Any]] = {
    "sku": st.text(min_size=1, max_size=8), "branch": st.text(min_size=1, max_size=8),
    **{name: _small for name in COMPONENTS}, "version": _small,
    "safety_buffer_override": st.none() | _small,
    "pending": st.tuples(_pending, _pending) | st.just(()), "on_hand_as_of": st.none() | _floats,
    "snapshot_as_of": st.dictionaries(_names, _floats, max_size=3),
    "last_applied": st.dictionaries(_names, _floats, max_size=3),
    "marks": st.dictionaries(_names, st.integers(0, 2**63 - 1), max_size=5),
    "last_published_ats": st.none() | _small, "unpublished_since": st.none() | _floats,
    "unmapped_reported_at": st.none() | _floats,
    "holds": st.dictionaries(_names, _holds, max_size=3),
}
_positions = st.builds(LedgerPosition, **_position_values)
_changes = st.lists(st.sampled_from(sorted(_position_values)), unique=True, max_size=6).flatmap(
    lambda names: st.fixed_dictionaries({n: _position_values[n] for n in names}))


def _every_field(position: LedgerPosition) -> list[tuple[str, Any]]:
    return [(f.name, getattr(position, f.name)) for f in dataclasses.fields(position)]


def _reference_position_dict(p: LedgerPosition) -> dict[str, Any]:
    """``LedgerPosition.to_dict`` as it was."""
    d: dict[str, Any] = {"f": 1, "sku": p.sku, "br": p.branch,
                         "c": [getattr(p, name) for name in COMPONENTS], "v": p.version}
    optional = {"sb": p.safety_buffer_override, "oa": p.on_hand_as_of,
                "lp": p.last_published_ats, "us": p.unpublished_since,
                "ur": p.unmapped_reported_at}
    d.update((k, v) for k, v in optional.items() if v is not None)
    if p.pending:
        d["p"] = [[e.occurred_at, {"on_hand": "o", "pending_sales": "s"}[e.component], e.delta]
                  for e in p.pending]
    if p.snapshot_as_of:
        d["sa"] = dict(p.snapshot_as_of)
    if p.last_applied:
        d["la"] = dict(p.last_applied)
    if p.marks:
        d["m"] = dict(p.marks)
    if p.holds:
        d["h"] = {k: list(h) for k, h in p.holds.items()}
    return d


@settings(max_examples=300, deadline=None)
@given(_positions, _changes)
def test_evolve_builds_what_replace_builds(position: LedgerPosition,
                                           changes: dict[str, Any]) -> None:
    before = _every_field(position)
    new = position.evolve(**changes)
    assert _every_field(new) == _every_field(dataclasses.replace(position, **changes))
    assert _every_field(position) == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.version = 0  # type: ignore[misc]


def test_evolve_refuses_an_unknown_field_as_the_dataclass_does() -> None:
    position = LedgerPosition("S", "B")
    with pytest.raises(TypeError) as fast:
        position.evolve(version=2, no_such_field=1)
    with pytest.raises(TypeError) as plain:
        LedgerPosition("S", "B", no_such_field=1)  # type: ignore[call-arg]
    assert str(fast.value) == str(plain.value)


def test_blank_position_is_the_default_one_with_its_own_mappings() -> None:
    first, second = LedgerPosition.blank("S", "B"), LedgerPosition.blank("S", "B")
    assert _every_field(first) == _every_field(LedgerPosition("S", "B"))
    for name in ("snapshot_as_of", "last_applied", "marks", "holds"):
        assert type(getattr(first, name)) is dict
        assert getattr(first, name) is not getattr(second, name)


@settings(max_examples=300, deadline=None)
@given(_positions)
def test_position_encodes_and_reads_as_before(position: LedgerPosition) -> None:
    old_dict = _reference_position_dict(position)
    assert position.to_dict() == old_dict
    assert list(position.to_dict()) == list(old_dict)  # key order: the stored bytes
    assert position.to_json() == codec.dumps(old_dict)
    assert position.components() == {name: getattr(position, name) for name in COMPONENTS}
    stored = json.loads(position.to_json())
    assert _every_field(LedgerPosition.from_dict(stored)) == _every_field(
        LedgerPosition._from_dict(stored))


@settings(max_examples=300, deadline=None)
@given(_positions.map(_reference_position_dict), st.data())
def test_position_from_odd_records_fails_or_reads_as_before(stored: dict[str, Any],
                                                             data: st.DataObject) -> None:
    stored = json.loads(json.dumps(stored))
    action = data.draw(st.sampled_from(["drop", "shorter", "longer", "replace", "none"]))
    if action == "drop":
        del stored[data.draw(st.sampled_from(sorted(stored)))]
    elif action == "shorter":  # records from before a counter was added
        stored["c"] = stored["c"][:data.draw(st.integers(0, len(COMPONENTS) - 1))]
    elif action == "longer":
        stored["c"].append(1)
    elif action == "replace":
        stored[data.draw(st.sampled_from(sorted(stored)))] = data.draw(_json)

    def outcome(read: Any) -> tuple[str, Any]:
        try:
            return "read", _every_field(read(stored))
        except Exception as exc:  # the same error is part of the behaviour
            return "raised", (type(exc), str(exc))

    assert outcome(LedgerPosition.from_dict) == outcome(LedgerPosition._from_dict)


def _reference_decode(raw: bytes, system: str, known_locations: Container[str]) -> Any:
    """``decode._decode`` as it was (with the plain schema checks and the old ``from_dict``)."""
    schemas = load_schemas()
    data = bytes(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("not_utf8", str(exc)[:300])
    try:
        obj = codec.loads_text(text, data, decode._DECODER)
    except (ValueError, RecursionError) as exc:
        return Rejection("malformed_json", str(exc)[:300])
    if not isinstance(obj, dict):
        return Rejection("not_an_object", f"top-level JSON {type(obj).__name__}, expected object")
    event_type = obj.get("type")
    if not isinstance(event_type, str):
        return Rejection("schema_violation", "'type' is missing or not a string")
    validator = schemas.validators.get(event_type)
    if validator is None:
        return Rejection("unknown_type", f"unknown event type {event_type[:80]!r}")
    mark = decode._mark(obj)
    source = obj.get("source")
    if source != system or EVENT_TYPES.get(event_type, system) != system:
        return Rejection(
            "source_mismatch",
            f"type {event_type!r} with source {str(source)[:20]!r} on the {system!r} topic",
            event_type, mark)
    for name in ("quantity", "delta"):
        value = obj.get(name)
        if type(value) is int and not -MAX_QUANTITY <= value <= MAX_QUANTITY:
            return Rejection("quantity_out_of_range", f"{name}={value} outside ±{MAX_QUANTITY}",
                             event_type, mark)
    if type(obj.get("quantity")) is int and obj["quantity"] < 0:
        return Rejection("quantity_out_of_range", "quantity is negative", event_type, mark)
    for name, problem_of in decode._IDENTIFIERS:
        value = obj.get(name)
        if isinstance(value, str) and (problem := problem_of(value, name)):
            return Rejection("invalid_identifier", problem[:300], event_type, mark)
    if not _PLAIN[event_type](obj) and (detail := decode._explain(validator, obj)):
        return Rejection("schema_violation", detail[:300], event_type, mark)
    for name in ("line", "quantity", "delta", "voided_line", "damaged_quantity"):
        if name in obj and type(obj[name]) is not int:
            return Rejection("schema_violation", f"{name}: must be an integer", event_type, mark)
    for name in ("sku", "location", "transaction_id", "voided_transaction_id", "reference"):
        value = obj.get(name)
        if isinstance(value, str) and value.endswith("\n"):
            return Rejection("schema_violation", f"{name}: trailing newline", event_type, mark)
    for name in ("location", "to_location"):
        loc = obj.get(name)
        if loc is not None and loc not in known_locations:
            return Rejection("unknown_location", f"{name} {loc!r} is not a configured branch",
                             event_type, mark)
    if event_type == "erp.adjustment" and abs(obj["delta"]) != obj["quantity"]:
        return Rejection("quantity_mismatch",
                         f"quantity {obj['quantity']} != |delta| {abs(obj['delta'])}",
                         event_type, mark)
    try:
        return _reference_from_dict(obj)
    except (ValueError, OverflowError, OSError) as exc:
        return Rejection("invalid_timestamp", str(exc)[:300], event_type, mark)


_IDENTIFIER_EDGES = ["x\n", "x\r\n", "\n", "x \n", "A-1\n", "x\u2028", " x", "x\x85"]


@st.composite
def _near_valid_lines(draw: st.DrawFn) -> dict[str, Any]:
    obj = draw(_near_valid())
    if draw(st.booleans()):
        name = draw(st.sampled_from([name for name, _ in decode._IDENTIFIERS]))
        obj[name] = draw(st.sampled_from(_IDENTIFIER_EDGES))
    return obj


def _decoded(result: Any) -> Any:
    return _every_field(result) if isinstance(result, SourceEvent) else result


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_near_valid_lines(), st.sampled_from(["erp", "wms", "pos", "3pl", "shopify"]))
def test_decode_gives_what_it_gave(obj: dict[str, Any], system: str) -> None:
    raw = json.dumps(obj).encode()
    locations = {"AUS-WH", "BKN-RETAIL", "EU-3PL", "MAN-RETAIL"}
    new = decode.decode_event(raw, source_topic_system=system, known_locations=locations)
    assert _decoded(new) == _decoded(_reference_decode(raw, system, locations))


@pytest.mark.parametrize("value", _IDENTIFIER_EDGES[:5])
@pytest.mark.parametrize("name", ["sku", "location", "transaction_id", "voided_transaction_id",
                                  "reference"])
def test_an_identifier_ending_in_a_newline_is_refused_by_the_identifier_rule(
        name: str, value: str) -> None:
    obj = json.loads((load_schemas().root / "examples" / "pos.void.json").read_text())
    obj[name] = value
    result = decode.decode_event(json.dumps(obj).encode(), source_topic_system="pos",
                                 known_locations={"BKN-RETAIL"})
    assert isinstance(result, Rejection) and result.code == "invalid_identifier", result


_wide_ints = st.integers() | st.sampled_from(
    [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**19, -(10**19), 10**30])
_flat = st.dictionaries(st.text(max_size=6), st.none() | st.booleans() | _wide_ints
                        | st.text(max_size=24) | st.from_regex(r"[0-9]{17,22}", fullmatch=True)
                        | st.floats(allow_nan=False, allow_infinity=False), max_size=6)


@settings(max_examples=400, deadline=None)
@given(_flat | st.lists(_flat, max_size=2) | st.dictionaries(st.text(max_size=3), _flat,
                                                             max_size=2))
def test_codec_reads_wide_integers_as_json_does(value: Any) -> None:
    """Types too: an integer orjson widened to a float would still compare equal."""
    raw = json.dumps(value).encode()
    for read in (codec.loads(raw), codec.loads_text(raw.decode(), raw, decode._DECODER)):
        assert repr(read) == repr(json.loads(raw))
