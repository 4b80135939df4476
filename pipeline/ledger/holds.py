"""Tracked holds: order lines, soft reservations, transfers in transit, COD shipments.

A hold is remembered per reference inside the position (``LedgerPosition.holds``), so releases,
confirmations and receipts act on what is actually held: a component can never be driven below
what its holds account for, and releasing an unknown hold is reported, not applied. Pure: the
caller (``apply``) turns the returned component changes into a delta (foldable on-hand changes
stay pending until a snapshot covers them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.ledger.movements import (
    ALLOCATED,
    DAMAGED,
    IN_TRANSIT,
    ON_HAND,
    OPEN_ORDERS,
    QUALITY_CONTROL,
    QUARANTINE,
    RESERVATION_EXPIRED,
    RESERVATIONS,
    Movement,
)
from pipeline.ledger.outputs import (
    NotCod,
    OrderClosed,
    Output,
    ReservationExpired,
    ReservationShort,
    TransferShortfall,
    UnknownHold,
)
from pipeline.ledger.position import Hold, LedgerPosition

DEFAULT_RESERVATION_TTL_S = 24 * 3600.0
KIND_COMPONENT = {"order": OPEN_ORDERS, "reservation": RESERVATIONS, "transit": IN_TRANSIT}
_STATE = {"damaged": DAMAGED, "quality_control": QUALITY_CONTROL, "quarantine": QUARANTINE}
# Marks recorded next to the movement's own mark, so a late or reordered create is not re-held.
END_PREFIX = "end:"  # the order line was released here (cancelled, fully fulfilled)
MOVED_PREFIX = "moved:"  # routing said the order line is held at another branch


def hold_key(kind: str, ref: str) -> str:
    return f"{kind[0]}:{ref}"


@dataclass
class HoldResult:
    """What a hold movement does: new holds, component deltas, extra marks, outputs."""

    holds: dict[str, Hold]
    changes: list[tuple[str, int]] = field(default_factory=list)
    add_marks: list[str] = field(default_factory=list)
    drop_marks: list[str] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)


def apply_hold(
    pos: LedgerPosition, m: Movement, *, now: float, sellable: int,
    reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S,
) -> HoldResult:
    """Effect of one op-``hold`` movement on ``pos``. ``sellable`` is ATS before the safety
    buffer (what a store hold may take). Raises ValueError for a type that is not a hold type."""
    r = HoldResult(holds=dict(pos.holds))
    ref = m.ref or m.mark
    q = m.quantity
    t = m.type
    if t == "shopify.order_placed" or (t == "shopify.order_routed" and m.leg == "to"):
        _order_in(pos, r, ref, q, m.arg("payment"), now, routed=t == "shopify.order_routed")
    elif t == "shopify.order_routed":
        held = _release(r, "order", ref, 0)
        if held is None:  # not here (yet): a late order_placed at this branch must not hold it
            r.add_marks.append(MOVED_PREFIX + hold_key("order", ref))
    elif t == "shopify.order_cancelled":
        # Cancels go to every online branch of the shop (only one holds the line), so no hold
        # here is normal and not reported. A full cancel closes the line here for good.
        released = _release(r, "order", ref, q)
        if q == 0 or (released is not None and hold_key("order", ref) not in r.holds):
            r.add_marks.append(END_PREFIX + hold_key("order", ref))
    elif t == "shopify.order_fulfilled":
        hold = pos.holds.get(hold_key("order", ref))
        if _release(r, "order", ref, q) is None:
            r.outputs.append(UnknownHold(pos.sku, pos.branch, "order", ref, t))
        r.changes.append((ON_HAND, -q))  # the units left this branch whatever was held
        if hold is not None and hold.payment == "cod":
            _add(r, "cod", ref, q, now)  # provisional until delivered or returned to origin
        if hold_key("order", ref) not in r.holds:
            r.add_marks.append(END_PREFIX + hold_key("order", ref))
    elif t == "pos.reservation_created":
        _reserve(pos, m, r, ref, q, now, sellable, reservation_ttl_s)
    elif t == "pos.reservation_released":
        if _release(r, "reservation", ref, q) is None:
            r.outputs.append(UnknownHold(pos.sku, pos.branch, "reservation", ref, t))
    elif t == "wms.reservation_confirmed":
        if _release(r, "reservation", ref, 0) is None:
            r.outputs.append(UnknownHold(pos.sku, pos.branch, "reservation", ref, t))
        r.changes.append((ALLOCATED, q))  # the WMS allocated: its allocation is the truth now
    elif t == RESERVATION_EXPIRED:
        hold = pos.holds.get(hold_key("reservation", ref))
        if hold is not None and hold.expires_at is not None and hold.expires_at <= now:
            _release(r, "reservation", ref, 0)
            r.outputs.append(ReservationExpired(pos.sku, pos.branch, ref, hold.quantity,
                                                max(0.0, now - hold.expires_at)))
    elif t == "erp.transfer_out":
        _add(r, "transit", ref, q, now)
        r.changes.append((IN_TRANSIT, q))
    elif t == "erp.transfer_receipt":
        _receive(pos, m, r, ref, q)
    elif t == "erp.transfer_cancel":
        if _release(r, "transit", ref, 0) is None:
            r.outputs.append(UnknownHold(pos.sku, pos.branch, "transit", ref, t))
    elif t == "3pl.delivered":
        _take(r, "cod", ref, q)  # final; a prepaid delivery has no COD record: nothing to do
    elif t == "3pl.return_to_origin":
        back = _take(r, "cod", ref, q)
        if back == 0:
            r.outputs.append(NotCod(pos.sku, pos.branch, ref))
        else:
            r.changes.append((ON_HAND, back))
            state = _STATE.get(m.arg("disposition") or "restock")
            if state:
                r.changes.append((state, back))
    else:
        raise ValueError(f"{t!r} is not a hold type")
    return r


def _order_in(pos: LedgerPosition, r: HoldResult, ref: str, q: int, payment: str | None,
              now: float, *, routed: bool) -> None:
    key = hold_key("order", ref)
    marks = pos.marks
    if key in r.holds:
        return  # already held here (redelivery under another mark, or routed to where it is)
    if END_PREFIX + key in marks:
        r.outputs.append(OrderClosed(ref, "released"))
        return
    if MOVED_PREFIX + key in marks:
        if not routed:
            r.outputs.append(OrderClosed(ref, "moved"))
            return
        r.drop_marks.append(MOVED_PREFIX + key)  # routed back here
    r.holds[key] = Hold("order", q, None, now, payment)
    r.changes.append((OPEN_ORDERS, q))


def _reserve(pos: LedgerPosition, m: Movement, r: HoldResult, ref: str, q: int, now: float,
             sellable: int, ttl: float) -> None:
    key = hold_key("reservation", ref)
    if key in r.holds:
        return
    granted = max(0, min(q, sellable))  # a soft hold never takes units that are not there
    if granted < q:
        r.outputs.append(ReservationShort(pos.sku, pos.branch, ref, q, granted))
    if granted == 0:
        return
    # Expiry from the event's own time, so a replay computes the same deadline.
    expires = m.expires_at if m.expires_at is not None else m.occurred_at + ttl
    r.holds[key] = Hold("reservation", granted, expires, now)
    r.changes.append((RESERVATIONS, granted))


def _receive(pos: LedgerPosition, m: Movement, r: HoldResult, ref: str, q: int) -> None:
    damaged = int(m.arg("damaged") or 0)
    received = q + damaged
    key = hold_key("transit", ref)
    hold = r.holds.get(key)
    if hold is None:
        r.outputs.append(UnknownHold(pos.sku, pos.branch, "transit", ref, m.type))
    else:
        _take(r, "transit", ref, received)
        r.changes.append((IN_TRANSIT, -min(received, hold.quantity)))
        left = r.holds.get(key)
        if left is not None and m.arg("complete"):
            del r.holds[key]
            r.changes.append((IN_TRANSIT, -left.quantity))
            r.outputs.append(TransferShortfall(pos.sku, pos.branch, ref, left.quantity))
    if received:
        r.changes.append((ON_HAND, received))  # the units are here, expected or not
    if damaged:
        r.changes.append((DAMAGED, damaged))


def _add(r: HoldResult, kind: str, ref: str, q: int, now: float) -> None:
    key = hold_key(kind, ref)
    old = r.holds.get(key)
    r.holds[key] = Hold(kind, q + (old.quantity if old else 0), None, old.created_at if old
                        else now)


def _take(r: HoldResult, kind: str, ref: str, q: int) -> int:
    """Reduce hold ``ref`` by up to ``q`` (0 = all); returns the units taken (0 if none held)."""
    key = hold_key(kind, ref)
    hold = r.holds.get(key)
    if hold is None:
        return 0
    n = hold.quantity if q == 0 else min(q, hold.quantity)
    if n >= hold.quantity:
        del r.holds[key]
    else:
        r.holds[key] = hold._replace(quantity=hold.quantity - n)
    return n


def _release(r: HoldResult, kind: str, ref: str, q: int) -> int | None:
    """Release up to ``q`` (0 = all) of a hold and its component; None when not held here."""
    if hold_key(kind, ref) not in r.holds:
        return None
    n = _take(r, kind, ref, q)
    r.changes.append((KIND_COMPONENT[kind], -n))
    return n


def expired_reservations(pos: LedgerPosition, now: float) -> list[tuple[str, float]]:
    """(reference, expires_at) of this position's reservations due at ``now`` (timer scan)."""
    return [(key[2:], h.expires_at) for key, h in pos.holds.items()
            if h.kind == "reservation" and h.expires_at is not None and h.expires_at <= now]
