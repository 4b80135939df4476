"""Bytes from a source topic → ``SourceEvent`` or ``Rejection``. Never raises.

Validators are compiled once per schemas directory (this is the hot path). The schemas live in
``<repo>/schemas`` unless ``TALLY_SCHEMAS_DIR`` points elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import urljoin

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from pipeline.ledger import codec
from pipeline.ledger.events import EVENT_TYPES, MAX_QUANTITY, Rejection, SourceEvent
from pipeline.ledger.fastcheck import Check, Unsupported, compile_schema
from pipeline.ledger.identifiers import location_problem, sku_problem, transaction_id_problem
from pipeline.settings import load, setting

MAX_PAYLOAD_BYTES = 64 * 1024
SCHEMA_VERSION_DIR = "v1"
_DETAIL_MAX = 300


# Checked before the schema, so the reason names the field and the code point.
_IDENTIFIERS = (
    ("sku", sku_problem),
    ("transaction_id", transaction_id_problem),
    ("voided_transaction_id", transaction_id_problem),
    ("reference", transaction_id_problem),
    ("location", location_problem),
    ("to_location", location_problem),
)


@dataclass(frozen=True, kw_only=True)
class SchemaSettings:
    """Where the JSON Schemas of source events are."""

    schemas_dir: Path | None = setting(
        None, "root of the JSON Schemas of source events (`/app/schemas` in the image)",
        env="TALLY_SCHEMAS_DIR", doc_default="<repo>/schemas")


def schemas_dir() -> Path:
    """Root of the JSON Schemas: ``$TALLY_SCHEMAS_DIR`` or ``<repo>/schemas``."""
    override = load(SchemaSettings).schemas_dir
    return override if override else Path(__file__).resolve().parents[2] / "schemas"


@dataclass(frozen=True)
class SchemaSet:
    """Compiled validators, one per event type: ``fast`` for the hot path, ``validators``
    (jsonschema, the reference) to explain rejections and for types the fast path can't do."""

    root: Path
    validators: dict[str, Draft202012Validator]
    fast: dict[str, Check]


@lru_cache(maxsize=4)
def load_schemas(root: Path | None = None) -> SchemaSet:
    """Load and compile ``<root>/v1`` once. Raises if a schema is missing or invalid."""
    base = (root or schemas_dir()) / SCHEMA_VERSION_DIR
    paths = [base / "envelope.schema.json", *sorted((base / "events").glob("*.schema.json"))]
    docs = {p: json.loads(p.read_text(encoding="utf-8")) for p in paths}
    registry: Registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in docs.values()
    )
    validators: dict[str, Draft202012Validator] = {}
    fast: dict[str, Check] = {}
    by_id: dict[str, dict[str, Any]] = {doc["$id"]: doc for doc in docs.values()}

    def resolve(base_uri: str, ref: str) -> dict[str, Any]:
        return by_id[urljoin(base_uri, ref)]

    for path, doc in docs.items():
        if path.parent.name != "events":
            continue
        Draft202012Validator.check_schema(doc)
        event_type = path.name.removesuffix(".schema.json")
        validators[event_type] = Draft202012Validator(doc, registry=registry)
        try:
            fast[event_type] = compile_schema(doc, resolve)
        except Unsupported:
            fast[event_type] = validators[event_type].is_valid
    missing = set(EVENT_TYPES) - set(validators)
    if missing:
        raise RuntimeError(f"schemas missing for event types: {sorted(missing)} in {base}")
    return SchemaSet(root=base, validators=validators, fast=fast)


def _reject_constant(name: str) -> Any:
    # NaN / Infinity are not JSON; Python's parser accepts them unless told otherwise.
    raise ValueError(f"non-JSON constant {name}")


# json.loads(text, parse_constant=...) builds this decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _is_int(value: Any) -> TypeGuard[int]:
    return type(value) is int  # bool is an int subclass; 5.0 passes JSON Schema "integer"


def decode_event(
    raw: bytes,
    *,
    source_topic_system: str,
    known_locations: Container[str],
    schemas: SchemaSet | None = None,
) -> SourceEvent | Rejection:
    """Parse, validate and semantically check one source-topic record.

    ``source_topic_system`` is the system owning the topic the record came from (erp, wms, pos,
    3pl); the record's ``source`` must match it. Returns a ``Rejection`` (never raises) for
    anything Tally cannot use, so the caller can dead-letter it and go on.
    """
    try:
        return _decode(raw, source_topic_system, known_locations, schemas or load_schemas())
    except Exception as exc:  # safety net: a bug here must dead-letter, not stop the stream
        return Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:_DETAIL_MAX])


def _decode(
    raw: bytes, system: str, known_locations: Container[str], schemas: SchemaSet
) -> SourceEvent | Rejection:
    if not isinstance(raw, bytes | bytearray | memoryview):
        return Rejection("malformed_json", f"expected bytes, got {type(raw).__name__}")
    if len(raw) > MAX_PAYLOAD_BYTES:
        return Rejection("too_large", f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    data = bytes(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("not_utf8", str(exc)[:_DETAIL_MAX])
    try:
        obj = codec.loads_text(text, data, _DECODER)
    except (ValueError, RecursionError) as exc:
        return Rejection("malformed_json", str(exc)[:_DETAIL_MAX])
    if not isinstance(obj, dict):
        return Rejection("not_an_object", f"top-level JSON {type(obj).__name__}, expected object")

    event_type = obj.get("type")
    if not isinstance(event_type, str):
        return Rejection("schema_violation", "'type' is missing or not a string")
    validator = schemas.validators.get(event_type)
    if validator is None:
        return Rejection("unknown_type", f"unknown event type {event_type[:80]!r}")
    # The mark (for a rejection only) is made when one is returned.
    source = obj.get("source")
    if source != system or EVENT_TYPES.get(event_type, system) != system:
        return Rejection(
            "source_mismatch",
            f"type {event_type!r} with source {str(source)[:20]!r} on the {system!r} topic",
            event_type,
            _mark(obj),
        )
    quantity, delta = obj.get("quantity"), obj.get("delta")
    for name, value in (("quantity", quantity), ("delta", delta)):
        if _is_int(value) and not -MAX_QUANTITY <= value <= MAX_QUANTITY:
            return Rejection("quantity_out_of_range", f"{name}={value} outside ±{MAX_QUANTITY}",
                             event_type, _mark(obj))
    if _is_int(quantity) and quantity < 0:
        return Rejection("quantity_out_of_range", "quantity is negative", event_type, _mark(obj))

    for name, problem_of in _IDENTIFIERS:
        value = obj.get(name)
        if isinstance(value, str) and (problem := problem_of(value, name)):
            return Rejection("invalid_identifier", problem[:_DETAIL_MAX], event_type, _mark(obj))

    if not schemas.fast[event_type](obj) and (detail := _explain(validator, obj)):
        return Rejection("schema_violation", detail[:_DETAIL_MAX], event_type, _mark(obj))
    # JSON Schema accepts 3.0 as an integer; the ledger wants exact ints. (Python's re lets '$'
    # match before a final newline too, but every identifier string got here through the rule
    # above, which refuses a newline anywhere.)
    for name in ("line", "quantity", "delta", "voided_line", "damaged_quantity"):
        if name in obj and not _is_int(obj[name]):
            return Rejection("schema_violation", f"{name}: must be an integer", event_type,
                             _mark(obj))

    for name in ("location", "to_location"):
        loc = obj.get(name)
        if loc is not None and loc not in known_locations:
            return Rejection("unknown_location", f"{name} {loc!r} is not a configured branch",
                             event_type, _mark(obj))
    if event_type == "erp.adjustment" and abs(obj["delta"]) != obj["quantity"]:
        return Rejection(
            "quantity_mismatch",
            f"quantity {obj['quantity']} != |delta| {abs(obj['delta'])}",
            event_type,
            _mark(obj),
        )
    try:
        return SourceEvent.from_dict(obj)
    except (ValueError, OverflowError, OSError) as exc:
        return Rejection("invalid_timestamp", str(exc)[:_DETAIL_MAX], event_type, _mark(obj))


def _explain(validator: Draft202012Validator, obj: dict[str, Any]) -> str | None:
    """The schema error that names the actual problem. A property failing inside the envelope
    also makes every property "unevaluated" at the top: that noise is the last resort."""
    errors = list(validator.iter_errors(obj))
    real = [e for e in errors if e.validator != "unevaluatedProperties"] or errors
    error = best_match(real)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def _mark(obj: dict[str, Any]) -> str | None:
    txn, line, source = obj.get("transaction_id"), obj.get("line", 1), obj.get("source")
    if isinstance(txn, str) and isinstance(source, str):
        return f"{source[:20]}:{txn[:128]}:{line}"
    return None


def validate_example(obj: dict[str, Any], schemas: SchemaSet | None = None) -> list[str]:
    """Schema errors for a dict (empty when valid). For tests and the upstream-facing CLI."""
    s = schemas or load_schemas()
    validator = s.validators.get(str(obj.get("type")))
    if validator is None:
        return [f"unknown type {obj.get('type')!r}"]
    return [e.message for e in validator.iter_errors(obj)]
