"""``LedgerPosition``: the canonical record for one ``sku@branch`` (one faust table value)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from itertools import repeat
from operator import attrgetter, call
from types import MappingProxyType
from typing import Any, NamedTuple

from pipeline.ledger import codec
from pipeline.ledger.movements import COMPONENTS, ON_HAND, PENDING_SALES, ledger_key

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_CODE = {ON_HAND: "o", PENDING_SALES: "s"}
_COMPONENT_OF = {v: k for k, v in _CODE.items()}
FORMAT_VERSION = 1


# A dedupe mark's value: the epoch second it was applied, packed with the low MARK_DIGEST_BITS of
# the line's content digest when it came from a source line (``applied_at << bits | digest``: one
# JSON int, so positions with thousands of marks cost no more to read and write); a bare epoch
# second for internal marks and records written before digests.
MARK_DIGEST_BITS = 24
_PACKED_FROM = 1 << 40  # any packed value is above this; any bare epoch second below it


def pack_mark(applied_at: int, digest: str) -> int:
    """A mark value: ``applied_at`` with the digest (hex) when there is one."""
    if not digest:
        return applied_at
    return applied_at << MARK_DIGEST_BITS | int(digest, 16) & ((1 << MARK_DIGEST_BITS) - 1)


def mark_applied_at(value: int) -> int:
    return value >> MARK_DIGEST_BITS if value >= _PACKED_FROM else value


def mark_digest(value: int) -> int | None:
    """The low bits of the content digest a mark was applied with (None: recorded without)."""
    return value & ((1 << MARK_DIGEST_BITS) - 1) if value >= _PACKED_FROM else None


def digest_bits(digest: str) -> int | None:
    """A movement's digest (hex) as a mark keeps it."""
    return int(digest, 16) & ((1 << MARK_DIGEST_BITS) - 1) if digest else None


class Hold(NamedTuple):
    """One tracked hold at this position, keyed ``<kind letter>:<ref>`` in ``holds``.

    ``kind``: ``order`` (open_orders), ``reservation`` (reservations), ``transit`` (in_transit) or
    ``cod`` (a shipped cash-on-delivery quantity, provisional until delivered; no component).
    """

    kind: str
    quantity: int
    expires_at: float | None = None
    created_at: float = 0.0
    payment: str | None = None


class Pending(NamedTuple):
    """A foldable delta newer than the last on-hand snapshot: dropped once a snapshot covers it."""

    occurred_at: float
    component: str  # on_hand | pending_sales
    delta: int


@dataclass(frozen=True, slots=True)
class LedgerPosition:
    """Everything Tally knows about one SKU at one branch.

    ``on_hand`` and ``pending_sales`` already include the ``pending`` entries (materialized so
    ATS is O(1)); a snapshot recomputes them from its count plus the entries it does not cover.
    ``marks`` (dedupe mark → applied epoch second and content digest, oldest first) live in the
    same record so the dedupe and the change are one table write.
    """

    sku: str
    branch: str
    on_hand: int = 0
    pending_sales: int = 0
    allocated: int = 0
    open_orders: int = 0
    reservations: int = 0
    damaged: int = 0
    quality_control: int = 0
    quarantine: int = 0
    in_transit: int = 0
    safety_buffer_override: int | None = None
    pending: tuple[Pending, ...] = ()
    on_hand_as_of: float | None = None  # as_of of the snapshot that set on_hand
    snapshot_as_of: Mapping[str, float] = field(default_factory=dict)  # source → last applied as_of
    last_applied: Mapping[str, float] = field(default_factory=dict)  # source → when (ctx.now)
    version: int = 0
    marks: Mapping[str, int] = field(default_factory=dict)
    last_published_ats: int | None = None
    unpublished_since: float | None = None
    unmapped_reported_at: float | None = None
    holds: Mapping[str, Hold] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return ledger_key(self.sku, self.branch)

    def components(self) -> dict[str, int]:
        """The component counters, by name."""
        return {name: getattr(self, name) for name in COMPONENTS}

    def to_dict(self) -> dict[str, Any]:
        return self._document(dict)

    def _document(self, as_dict: Callable[[Mapping[str, Any]], dict[str, Any]]
                  ) -> dict[str, Any]:
        """The stored form; ``as_dict`` makes each mapping field a dict."""
        d: dict[str, Any] = {
            "f": FORMAT_VERSION,
            "sku": self.sku,
            "br": self.branch,
            "c": list(_get_components(self)),
            "v": self.version,
        }
        if self.safety_buffer_override is not None:
            d["sb"] = self.safety_buffer_override
        if self.on_hand_as_of is not None:
            d["oa"] = self.on_hand_as_of
        if self.last_published_ats is not None:
            d["lp"] = self.last_published_ats
        if self.unpublished_since is not None:
            d["us"] = self.unpublished_since
        if self.unmapped_reported_at is not None:
            d["ur"] = self.unmapped_reported_at
        if self.pending:
            d["p"] = [[p.occurred_at, _CODE[p.component], p.delta] for p in self.pending]
        if self.snapshot_as_of:
            d["sa"] = as_dict(self.snapshot_as_of)
        if self.last_applied:
            d["la"] = as_dict(self.last_applied)
        if self.marks:
            d["m"] = as_dict(self.marks)
        if self.holds:
            d["h"] = {k: list(h) for k, h in self.holds.items()}
        return d

    def to_json(self) -> bytes:
        # The encoder only reads the mappings: no copy of a dict (marks run to thousands).
        return codec.dumps(self._document(_dict_or_copy))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LedgerPosition:
        if d.get("f") != FORMAT_VERSION:
            raise ValueError(f"unsupported ledger position format {d.get('f')!r}")
        components = d["c"]
        if type(components) is not list or len(components) != len(COMPONENTS):
            return cls._from_dict(d)  # fewer counters (an older record) or a bad one
        # In field order, so a bad record fails where the keyword call below failed.
        return _make((
            d["sku"],
            d["br"],
            *components,
            d.get("sb"),
            tuple(Pending(t, _COMPONENT_OF[c], q) for t, c, q in d.get("p", ())),
            d.get("oa"),
            d.get("sa", {}),
            d.get("la", {}),
            d["v"],
            d.get("m", {}),
            d.get("lp"),
            d.get("us"),
            d.get("ur"),
            {k: Hold(*h) for k, h in d.get("h", {}).items()},
        ))

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> LedgerPosition:
        """``from_dict`` through the dataclass's ``__init__``: for any record (the reference)."""
        if d.get("f") != FORMAT_VERSION:
            raise ValueError(f"unsupported ledger position format {d.get('f')!r}")
        return cls(  # type: ignore[misc]  # mypy: ``*d["c"]`` might fill the keywords below
            d["sku"],
            d["br"],
            *d["c"],
            safety_buffer_override=d.get("sb"),
            pending=tuple(Pending(t, _COMPONENT_OF[c], q) for t, c, q in d.get("p", ())),
            on_hand_as_of=d.get("oa"),
            snapshot_as_of=d.get("sa", {}),
            last_applied=d.get("la", {}),
            version=d["v"],
            marks=d.get("m", {}),
            last_published_ats=d.get("lp"),
            unpublished_since=d.get("us"),
            unmapped_reported_at=d.get("ur"),
            holds={k: Hold(*h) for k, h in d.get("h", {}).items()},
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> LedgerPosition:
        return cls.from_dict(codec.loads(raw))

    @classmethod
    def blank(cls, sku: str, branch: str) -> LedgerPosition:
        """``LedgerPosition(sku, branch)``, faster (the ledger makes one per new key)."""
        new = _make(_get_fields(_BLANK))
        _set_sku(new, sku)
        _set_branch(new, branch)
        for set_field, factory in _SET_FACTORY_DEFAULTS:
            set_field(new, factory())
        return new

    def evolve(self, **changes: Any) -> LedgerPosition:
        """``dataclasses.replace(self, **changes)``, without its per-call introspection (the
        ledger makes one or two per movement)."""
        if not _FIELD_SET.issuperset(changes):  # the dataclass's own TypeError
            return LedgerPosition(*[changes.pop(name) if name in changes
                                    else getattr(self, name) for name in _FIELDS], **changes)
        new = _make(_get_fields(self))
        for name, value in changes.items():
            _SETTER_OF[name](new, value)
        return new


def _dict_or_copy(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return mapping if type(mapping) is dict else dict(mapping)


_FIELDS = tuple(f.name for f in fields(LedgerPosition))
if _FIELDS[2:2 + len(COMPONENTS)] != COMPONENTS:  # the stored "c" fills these in this order
    raise RuntimeError("LedgerPosition's counters are not in COMPONENTS order")
_FIELD_SET = frozenset(_FIELDS)
_get_fields = attrgetter(*_FIELDS)
_get_components = attrgetter(*COMPONENTS)
# The slots' own setters: the frozen dataclass's __init__ calls object.__setattr__ per field
# (22 of them), most of what building a position cost.
_SETTERS: tuple[Callable[[LedgerPosition, Any], None], ...] = tuple(
    LedgerPosition.__dict__[name].__set__ for name in _FIELDS)
_SETTER_OF = dict(zip(_FIELDS, _SETTERS, strict=True))
_set_sku, _set_branch = _SETTER_OF["sku"], _SETTER_OF["branch"]
_SET_FACTORY_DEFAULTS = tuple((_SETTER_OF[f.name], f.default_factory)
                              for f in fields(LedgerPosition) if f.default_factory is not MISSING)
_BLANK = LedgerPosition("", "")
_new = object.__new__


_consume: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend


def _make(values: Iterable[Any]) -> LedgerPosition:
    """A position from every field's value, in field order (no defaults)."""
    position = _new(LedgerPosition)
    _consume(map(call, _SETTERS, repeat(position), values))  # a third cheaper than a for loop
    return position
