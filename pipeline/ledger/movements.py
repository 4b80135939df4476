"""Re-keying: one ``SourceEvent`` → ``Movement``s, each for exactly one ``sku@branch``.

A Movement says what to do to one ledger position and carries its dedupe mark. It travels on the
internal ``tally.movements.v1`` topic keyed by ``Movement.key``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pipeline.ledger import codec
from pipeline.ledger.events import SourceEvent, parse_time

# Ledger components. FOLDABLE ones are changed by deltas that the on-hand owner's next snapshot
# will include, so they are kept as pending entries until a snapshot covers them.
ON_HAND = "on_hand"
PENDING_SALES = "pending_sales"
ALLOCATED = "allocated"
OPEN_ORDERS = "open_orders"
RESERVATIONS = "reservations"
DAMAGED = "damaged"
QUALITY_CONTROL = "quality_control"
QUARANTINE = "quarantine"
IN_TRANSIT = "in_transit"
COMPONENTS = (
    ON_HAND, PENDING_SALES, ALLOCATED, OPEN_ORDERS, RESERVATIONS,
    DAMAGED, QUALITY_CONTROL, QUARANTINE, IN_TRANSIT,
)  # fmt: skip
FOLDABLE = frozenset({ON_HAND, PENDING_SALES})

OP_DELTA = "delta"
OP_SNAPSHOT = "snapshot"
OP_SET_SAFETY_BUFFER = "set_safety_buffer"
OP_HOLD = "hold"

ROLE_RECEIPT = "receipt"

Changes = tuple[tuple[str, int], ...]  # (component, signed units per unit of quantity)
# A leg: (suffix for the mark, which event field names the branch, component changes).
Leg = tuple[str, str, Changes]

# Plain delta types: how one unit of `quantity` changes each component. Omnichannel rows have no
# upstream schema yet; adding their schema makes them flow with no change to the core.
EFFECTS: dict[str, tuple[Leg, ...]] = {
    "erp.goods_receipt": (("", "location", ((ON_HAND, 1),)),),
    "wms.receipt": (("", "location", ((ON_HAND, 1),)),),
    "wms.allocation": (("", "location", ((ALLOCATED, 1),)),),
    "wms.deallocation": (("", "location", ((ALLOCATED, -1),)),),
    "wms.pick_confirmation": (("", "location", ((ALLOCATED, -1), (ON_HAND, -1))),),
    "pos.sale": (("", "location", ((PENDING_SALES, 1),)),),
    # A void gives the units back. As a pending credit with the void's own time it is right
    # whether or not the sale was already folded into a snapshot (see docs/ledger.md).
    "pos.void": (("", "location", ((PENDING_SALES, -1),)),),
    "3pl.shipment": (("", "location", ((ON_HAND, -1),)),),
    # Untracked transfer legs as plain deltas (no upstream schema; kept for internal tools). The
    # upstream types are erp.transfer_*, whose destination leg is a tracked hold (HOLD_TYPES).
    "transfer.out": (
        ("from", "location", ((ON_HAND, -1),)),
        ("to", "to_location", ((IN_TRANSIT, 1),)),
    ),
    "transfer.receipt": (("to", "to_location", ((IN_TRANSIT, -1), (ON_HAND, 1))),),
    "transfer.cancel": (
        ("from", "location", ((ON_HAND, 1),)),
        ("to", "to_location", ((IN_TRANSIT, -1),)),
    ),
    # Omnichannel: the part of a transfer that is a plain delta (the other leg is a hold).
    "erp.transfer_out": (("from", "location", ((ON_HAND, -1),)),),
    "erp.transfer_cancel": (("from", "location", ((ON_HAND, 1),)),),
}
# Types whose effect depends on a tracked hold (order line, reservation, transfer, COD shipment):
# op ``hold``, applied by ``pipeline.ledger.holds``. Legs as in EFFECTS (suffix, branch field).
HOLD_TYPES: dict[str, tuple[tuple[str, str], ...]] = {
    "shopify.order_placed": (("", "location"),),
    "shopify.order_cancelled": (("", "location"),),
    "shopify.order_fulfilled": (("", "location"),),
    "shopify.order_routed": (("from", "location"), ("to", "to_location")),
    "pos.reservation_created": (("", "location"),),
    "pos.reservation_released": (("", "location"),),
    "wms.reservation_confirmed": (("", "location"),),
    "erp.transfer_out": (("to", "to_location"),),
    "erp.transfer_receipt": (("", "location"),),
    "erp.transfer_cancel": (("to", "to_location"),),
    "3pl.delivered": (("", "location"),),
    "3pl.return_to_origin": (("", "location"),),
}
RESERVATION_EXPIRED = "tally.reservation_expired"  # internal: sent by the worker's expiry timer
SNAPSHOT_TYPES = frozenset({"erp.on_hand_snapshot", "erp.cycle_count", "3pl.on_hand_snapshot"})
RECEIPT_TYPES = frozenset({"erp.goods_receipt", "wms.receipt"})
_RETURN_STATE = {"damaged": DAMAGED, "quality_control": QUALITY_CONTROL, "quarantine": QUARANTINE}


def ledger_key(sku: str, branch: str) -> str:
    """The ledger's key and the movements topic's record key."""
    return f"{sku}@{branch}"


def split_key(key: str) -> tuple[str, str]:
    """``ledger_key`` inverse: (sku, branch). A SKU may hold '@'; a branch id never does
    (``pipeline.ledger.identifiers``), so the key splits at its last '@'."""
    sku, _, branch = key.rpartition("@")
    return sku, branch


@dataclass(frozen=True, slots=True)
class Movement:
    """What one source line does to one ``sku@branch`` position.

    ``op`` is ``delta`` (add ``changes``), ``snapshot`` (set on hand to ``quantity`` as of
    ``as_of``) or ``set_safety_buffer`` (``quantity``; negative clears the override).
    ``observed_at`` is set by the adapter from the Kafka timestamp (``with_observed_at``).
    """

    sku: str
    branch: str
    mark: str  # source:transaction_id:line[#leg]; applied at most once per position
    source: str
    type: str
    occurred_at: float
    op: str = OP_DELTA
    changes: Changes = ()
    quantity: int = 0
    as_of: float | None = None
    role: str = ""  # "receipt": counts only if source is the branch's receipt source
    reverses: str | None = None  # mark of the line this one reverses (a sale line for pos.void)
    observed_at: float | None = None
    ref: str | None = None  # op hold: the tracked hold (order line, reservation, transfer)
    expires_at: float | None = None  # op hold: reservation expiry (epoch seconds)
    leg: str = ""  # op hold: "from" | "to" for two-branch types
    args: tuple[tuple[str, Any], ...] = ()  # op hold: type-specific values (payment, damaged, ...)
    digest: str = ""  # the source line's content digest: tells a conflicting duplicate apart

    def arg(self, name: str, default: Any = None) -> Any:
        return dict(self.args).get(name, default)

    @property
    def key(self) -> str:
        return ledger_key(self.sku, self.branch)

    def with_observed_at(self, observed_at: float) -> Movement:
        return replace(self, observed_at=observed_at)  # to_movements(..., observed_at) is faster

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": 1,
            "sku": self.sku,
            "branch": self.branch,
            "mark": self.mark,
            "source": self.source,
            "type": self.type,
            "occurred_at": self.occurred_at,
            "op": self.op,
        }
        if self.changes:
            out["changes"] = dict(self.changes)
        if self.quantity:
            out["quantity"] = self.quantity
        for name in ("as_of", "reverses", "observed_at", "ref", "expires_at"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.role:
            out["role"] = self.role
        if self.leg:
            out["leg"] = self.leg
        if self.args:
            out["args"] = dict(self.args)
        if self.digest:
            out["d"] = self.digest
        return out

    def to_json(self) -> bytes:
        return codec.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Movement:
        return cls(
            sku=d["sku"],
            branch=d["branch"],
            mark=d["mark"],
            source=d["source"],
            type=d["type"],
            occurred_at=float(d["occurred_at"]),
            op=d.get("op", OP_DELTA),
            changes=tuple((str(k), int(v)) for k, v in d.get("changes", {}).items()),
            quantity=int(d.get("quantity", 0)),
            as_of=d.get("as_of"),
            role=d.get("role", ""),
            reverses=d.get("reverses"),
            observed_at=d.get("observed_at"),
            ref=d.get("ref"),
            expires_at=d.get("expires_at"),
            leg=d.get("leg", ""),
            args=tuple(sorted(d.get("args", {}).items())),
            digest=d.get("d", ""),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Movement:
        return cls.from_dict(codec.loads(raw))



def to_movements(event: SourceEvent, observed_at: float | None = None) -> list[Movement]:
    """Split a validated event into one Movement per affected ``sku@branch``, each with
    ``observed_at`` (the same as ``with_observed_at`` on each, without the copies)."""
    q = event.quantity
    base: dict[str, Any] = {
        "sku": event.sku,
        "source": event.source,
        "type": event.type,
        "occurred_at": event.occurred_ts,
        "digest": event.digest,
        "observed_at": observed_at,
    }
    t = event.type
    if t in SNAPSHOT_TYPES:
        return [
            Movement(
                branch=event.location,
                mark=event.mark,
                op=OP_SNAPSHOT,
                quantity=q,
                as_of=event.as_of_ts,
                **base,
            )
        ]
    if t == "erp.adjustment":
        delta = event.delta if event.delta is not None else 0
        changes: Changes = ((ON_HAND, delta),)
        state = _RETURN_STATE.get(event.stock_state or "sellable")
        if state:  # adjusting unsellable stock moves on hand and that state together
            changes = ((ON_HAND, delta), (state, delta))
        return [Movement(branch=event.location, mark=event.mark, changes=changes, **base)]
    if t in ("pos.return", "shopify.order_refunded"):
        state = _RETURN_STATE.get(event.disposition or "restock")
        changes = ((ON_HAND, q), (state, q)) if state else ((ON_HAND, q),)
        return [Movement(branch=event.location, mark=event.mark, changes=changes, **base)]
    if t in HOLD_TYPES:
        return _hold_movements(event, base)
    legs = EFFECTS.get(t)
    if legs is None:
        raise ValueError(f"no ledger effect for event type {t!r}")
    reverses = None
    if t == "pos.void":
        reverses = f"pos:{event.voided_transaction_id}:{event.voided_line or 1}"
    role = ROLE_RECEIPT if t in RECEIPT_TYPES else ""
    out = []
    for suffix, field_name, unit_changes in legs:
        branch = getattr(event, field_name)
        if branch is None:
            raise ValueError(f"{t} needs {field_name}")
        out.append(
            Movement(
                branch=branch,
                mark=f"{event.mark}#{suffix}" if len(legs) > 1 else event.mark,
                changes=tuple((c, s * q) for c, s in unit_changes),
                role=role,
                reverses=reverses,
                **base,
            )
        )
    return out


def _hold_movements(event: SourceEvent, base: dict[str, Any]) -> list[Movement]:
    """Movements of a hold type: the plain-delta leg (if any) and one op ``hold`` per hold leg."""
    t = event.type
    q = event.quantity
    out = []
    plain = EFFECTS.get(t, ())
    legs = HOLD_TYPES[t]
    multi = len(plain) + len(legs) > 1
    for suffix, field_name, unit_changes in plain:
        out.append(Movement(
            branch=getattr(event, field_name), mark=f"{event.mark}#{suffix}",
            changes=tuple((c, s * q) for c, s in unit_changes), **base,
        ))
    args = {
        "payment": event.payment, "damaged": event.damaged_quantity,
        "complete": event.complete, "disposition": event.disposition,
    }
    expires = parse_time(event.expires_at) if event.expires_at is not None else None
    for suffix, field_name in legs:
        branch = getattr(event, field_name)
        if branch is None:
            raise ValueError(f"{t} needs {field_name}")
        out.append(Movement(
            branch=branch, mark=f"{event.mark}#{suffix}" if multi else event.mark,
            op=OP_HOLD, quantity=q, ref=event.reference, expires_at=expires, leg=suffix,
            args=tuple(sorted((k, v) for k, v in args.items() if v is not None)), **base,
        ))
    return out
