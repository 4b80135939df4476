"""Validated upstream events (the Python side of ``schemas/v1``) and rejections."""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from itertools import repeat
from operator import call
from typing import Any

import orjson

# Every event type Tally accepts from upstream, by producing system. A type added here needs a
# schema in ``schemas/v1/events`` and a row in ``movements.EFFECTS``.
EVENT_TYPES: dict[str, str] = {
    "erp.on_hand_snapshot": "erp",
    "erp.goods_receipt": "erp",
    "erp.adjustment": "erp",
    "erp.cycle_count": "erp",
    "wms.allocation": "wms",
    "wms.deallocation": "wms",
    "wms.pick_confirmation": "wms",
    "wms.receipt": "wms",
    "pos.sale": "pos",
    "pos.return": "pos",
    "pos.void": "pos",
    "3pl.on_hand_snapshot": "3pl",
    "3pl.shipment": "3pl",
    # Omnichannel (see docs/omnichannel.md).
    "shopify.order_placed": "shopify",
    "shopify.order_cancelled": "shopify",
    "shopify.order_fulfilled": "shopify",
    "shopify.order_refunded": "shopify",
    "shopify.order_routed": "shopify",
    "pos.reservation_created": "pos",
    "pos.reservation_released": "pos",
    "wms.reservation_confirmed": "wms",
    "erp.transfer_out": "erp",
    "erp.transfer_receipt": "erp",
    "erp.transfer_cancel": "erp",
    "3pl.delivered": "3pl",
    "3pl.return_to_origin": "3pl",
}
MAX_QUANTITY = 1_000_000

# Optional, type-specific fields of SourceEvent, in the order they are serialized.
_OPTIONAL = (
    "as_of",
    "delta",
    "reason",
    "stock_state",
    "disposition",
    "voided_transaction_id",
    "voided_line",
    "to_location",
    "purchase_order",
    "pick_task_id",
    "asn",
    "register_id",
    "original_transaction_id",
    "facility_id",
    "order_reference",
    "reference",
    "expires_at",
    "payment",
    "damaged_quantity",
    "complete",
    "meta",
)


def parse_time(value: str) -> float:
    """RFC 3339 timestamp → epoch seconds. Raises ValueError when it has no offset."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without offset: {value!r}")
    return dt.timestamp()


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """One validated line of an upstream transaction (any ``EVENT_TYPES`` type).

    Timestamps keep their original RFC 3339 text (so examples round-trip) and carry parsed epoch
    seconds in ``occurred_ts`` / ``as_of_ts``.
    """

    schema_version: str
    type: str
    source: str
    transaction_id: str
    line: int
    occurred_at: str
    sku: str
    location: str
    quantity: int
    as_of: str | None = None
    delta: int | None = None
    reason: str | None = None
    stock_state: str | None = None
    disposition: str | None = None
    voided_transaction_id: str | None = None
    voided_line: int | None = None
    to_location: str | None = None
    purchase_order: str | None = None
    pick_task_id: str | None = None
    asn: str | None = None
    register_id: str | None = None
    original_transaction_id: str | None = None
    facility_id: str | None = None
    order_reference: str | None = None
    reference: str | None = None  # the hold this line acts on: order line, reservation, transfer
    expires_at: str | None = None
    payment: str | None = None  # prepaid | cod
    damaged_quantity: int | None = None
    complete: bool | None = None
    meta: dict[str, Any] | None = None
    occurred_ts: float = field(default=0.0, compare=False)
    as_of_ts: float | None = field(default=None, compare=False)
    digest: str = field(default="", compare=False)  # content digest (``content_digest``)

    @property
    def mark(self) -> str:
        """Idempotency key: source system + transaction ID + line."""
        return f"{self.source}:{self.transaction_id}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        """The wire form (omits absent optional fields and the parsed timestamps)."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "type": self.type,
            "source": self.source,
            "transaction_id": self.transaction_id,
            "line": self.line,
            "occurred_at": self.occurred_at,
            "sku": self.sku,
            "location": self.location,
            "quantity": self.quantity,
        }
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceEvent:
        """Build from an already schema-valid dict. Raises ValueError on a bad timestamp."""
        as_of = data.get("as_of")
        if data.get("expires_at") is not None:
            parse_time(data["expires_at"])  # reject a bad expiry here, not in the ledger
        occurred_ts = parse_time(data["occurred_at"])
        as_of_ts = parse_time(as_of) if as_of is not None else None
        digest = content_digest(data)
        try:
            return _build(data, occurred_ts, as_of_ts, digest)
        except KeyError:  # a required field missing: the dataclass's own error
            return cls(**{k: data[k] for k in data if k in _FIELDS}, occurred_ts=occurred_ts,
                       as_of_ts=as_of_ts, digest=digest)


_FIELDS = frozenset(SourceEvent.__dataclass_fields__) - {"occurred_ts", "as_of_ts", "digest"}
_REQUIRED_FIELDS = tuple(f.name for f in fields(SourceEvent) if f.default is MISSING)
if {*_REQUIRED_FIELDS, *_OPTIONAL} != _FIELDS:  # _build would leave a slot unset
    raise RuntimeError("SourceEvent fields and _OPTIONAL disagree")


def _setter(name: str) -> Callable[[SourceEvent, Any], None]:
    setter: Callable[[SourceEvent, Any], None] = SourceEvent.__dict__[name].__set__
    return setter


# The slots' own setters: a frozen dataclass's __init__ goes through object.__setattr__ once per
# field (~35 of them, ~60 % of from_dict); these skip its lookup and checks. Same instance.
_SET_REQUIRED = tuple(_setter(name) for name in _REQUIRED_FIELDS)
_SET_OPTIONAL = tuple(_setter(name) for name in _OPTIONAL)
_SET_PARSED = tuple(_setter(name) for name in ("occurred_ts", "as_of_ts", "digest"))
_new = object.__new__
_consume: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend


def _build(data: dict[str, Any], occurred_ts: float, as_of_ts: float | None,
           digest: str) -> SourceEvent:
    """``SourceEvent(**fields of data, occurred_ts=..., as_of_ts=..., digest=...)``, faster.
    Raises KeyError (not the dataclass's TypeError) when a required field is missing."""
    event = _new(SourceEvent)
    # map, not a for loop: the calls run in C (a third cheaper).
    _consume(map(call, _SET_REQUIRED, repeat(event), map(data.__getitem__, _REQUIRED_FIELDS)))
    _consume(map(call, _SET_OPTIONAL, repeat(event), map(data.get, _OPTIONAL)))
    set_occurred, set_as_of, set_digest = _SET_PARSED
    set_occurred(event, occurred_ts)
    set_as_of(event, as_of_ts)
    set_digest(event, digest)
    return event


# json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False), built once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_SCALARS = frozenset({str, int, bool, type(None)})


def canonical_bytes(data: dict[str, Any]) -> bytes:
    """``_CANONICAL``'s document as UTF-8 (lone surrogates passed through): the bytes every
    stored mark's digest was made from, so they must never change. orjson writes the same bytes
    for a flat object of strings, booleans, nulls and 64-bit integers (a test checks every code
    point and arbitrary such objects), several times faster; anything else goes to ``json``."""
    if _SCALARS.issuperset(map(type, data.values())):  # no generator per call
        try:
            return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a lone surrogate, an integer past 64 bits
            pass
    return _CANONICAL.encode(data).encode("utf-8", "surrogatepass")


def content_digest(data: dict[str, Any]) -> str:
    """A short digest of what a line says (``meta``, free-form tracing data, left out): a line
    sent again with the same source, transaction and line but another digest is a conflict."""
    if "meta" in data:
        data = {k: v for k, v in data.items() if k != "meta"}
    canonical = canonical_bytes(data)
    return hashlib.blake2b(canonical, digest_size=6).hexdigest()


# Every dead-letter reason the worker gives a record of a source topic, with what it means. The
# table in schemas/README.md is rendered from this (``reason_table``; a test keeps it current).
REJECTION_REASONS: dict[str, str] = {
    "empty_record": "the record has no value (a tombstone)",
    "too_large": "the value is over 64 KiB",
    "not_utf8": "the value is not UTF-8",
    "malformed_json": "the value is not JSON (or nests too deeply, or holds NaN/Infinity)",
    "not_an_object": "the JSON is not an object",
    "unknown_type": "`type` names no event type of this contract version",
    "source_mismatch": "`source` (or the type's system) does not own the topic",
    "invalid_identifier": "a SKU, location or transaction id breaks the identifier rule",
    "schema_violation": "the event does not match its type's schema (the detail names where)",
    "quantity_out_of_range": "a quantity is negative or over 1,000,000",
    "quantity_mismatch": "`erp.adjustment`: `quantity` is not the absolute `delta`",
    "unknown_location": "`location` or `to_location` is not a configured branch",
    "invalid_timestamp": "a time does not parse or has no offset",
    "conflicting_duplicate": "same source, transaction id and line as an applied line, other "
                             "content; the first stays applied (the letter has both digests)",
    "internal_error": "Tally failed on this record (a bug: the detail has the exception type "
                      "and a traceback digest); the partition went on",
    "bad_movement": "an internal movement record Tally could not read (a bug or a foreign "
                    "producer on `tally.movements.v1`)",
}


def reason_table() -> str:
    """The Markdown table of ``REJECTION_REASONS`` (as in schemas/README.md)."""
    rows = ["| reason | meaning |", "|---|---|"]
    rows += [f"| `{code}` | {meaning} |" for code, meaning in REJECTION_REASONS.items()]
    return "\n".join(rows)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an upstream record cannot be used. ``code`` (a ``REJECTION_REASONS`` key) is the
    dead-letter ``reason``."""

    code: str
    detail: str
    event_type: str | None = None
    mark: str | None = None
