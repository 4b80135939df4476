"""``apply(position, movement, context) -> (position, outputs)``: the ledger's only state change.

Pure: no clock, no I/O. The caller passes ``now`` and the branch's rules and mapping in
``ApplyContext``, writes the returned position to the table and acts on the outputs.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, replace
from typing import Any

from pipeline.ledger.ats import AtsBreakdown, available_to_sell
from pipeline.ledger.holds import DEFAULT_RESERVATION_TTL_S, apply_hold
from pipeline.ledger.movements import (
    FOLDABLE,
    ON_HAND,
    OP_DELTA,
    OP_HOLD,
    OP_SET_SAFETY_BUFFER,
    OP_SNAPSHOT,
    PENDING_SALES,
    ROLE_RECEIPT,
    Movement,
)
from pipeline.ledger.outputs import (
    AlreadyInSnapshot,
    BelowZero,
    ConflictingDuplicate,
    Duplicate,
    LowStock,
    NotOwner,
    Output,
    PublishAvailable,
    ReportUnmapped,
    SafetyBufferBreach,
    StaleSnapshotIgnored,
)
from pipeline.ledger.position import (
    LedgerPosition,
    Pending,
    digest_bits,
    mark_applied_at,
    mark_digest,
    pack_mark,
)
from pipeline.ledger.rules import LocationRules, ShopifyMapping, publish_value

DEFAULT_DEDUPE_RETENTION_S = 7 * 24 * 3600.0
DEFAULT_MAX_MARKS = 10_000
DEFAULT_UNMAPPED_REPORT_INTERVAL_S = 3600.0
REVERSAL_PREFIX = "rev:"  # mark recorded for the line a movement reverses (one void per sale)


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """Everything ``apply`` needs besides the position and the movement."""

    now: float  # epoch seconds, from the caller's clock
    rules: LocationRules
    mapping: ShopifyMapping | None = None  # None: SKU not in the catalog for this branch's shop
    dedupe_retention_s: float = DEFAULT_DEDUPE_RETENTION_S
    max_marks: int = DEFAULT_MAX_MARKS
    unmapped_report_interval_s: float = DEFAULT_UNMAPPED_REPORT_INTERVAL_S
    defer_publish: bool = False  # True: only note unpublished_since; ``refresh`` publishes later
    reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S  # expiry of a reservation without one
    min_publish_threshold: int | None = None  # per-SKU override of the branch's threshold


def apply(
    position: LedgerPosition | None, movement: Movement, ctx: ApplyContext
) -> tuple[LedgerPosition, list[Output]]:
    """Apply one movement at most once (by its mark). Returns the new position and outputs.

    A duplicate returns the *same* position object (nothing to write) and ``[Duplicate]``, or
    ``[ConflictingDuplicate]`` when the mark was applied with another content digest.
    Raises ValueError only for a movement with an unknown ``op`` (a Tally bug, not bad input).
    """
    m = movement
    pos = position if position is not None else LedgerPosition.blank(m.sku, m.branch)
    marks = pos.marks
    if m.mark in marks:
        applied, offered = mark_digest(marks[m.mark]), digest_bits(m.digest)
        if applied is not None and offered is not None and applied != offered:
            return pos, [ConflictingDuplicate(m.mark, f"{applied:06x}", f"{offered:06x}")]
        return pos, [Duplicate(m.mark)]
    if m.reverses is not None and REVERSAL_PREFIX + m.reverses in marks:
        return pos, [Duplicate(m.mark)]

    outputs: list[Output] = []
    updates: dict[str, Any] = {}
    extra_marks: tuple[list[str], list[str]] = ([], [])
    if m.op == OP_DELTA:
        _apply_delta(pos, m, ctx.rules, updates, outputs)
    elif m.op == OP_HOLD:
        sellable = max(0, available_to_sell(pos, ctx.rules).before_buffer)
        held = apply_hold(pos, m, now=ctx.now, sellable=sellable,
                          reservation_ttl_s=ctx.reservation_ttl_s)
        outputs.extend(held.outputs)
        if held.holds != pos.holds:
            updates["holds"] = held.holds
        if held.changes:
            _apply_delta(pos, replace(m, changes=tuple(held.changes), role=""), ctx.rules,
                         updates, outputs)
        extra_marks = (held.add_marks, held.drop_marks)
    elif m.op == OP_SNAPSHOT:
        _apply_snapshot(pos, m, ctx.rules, updates, outputs)
    elif m.op == OP_SET_SAFETY_BUFFER:
        updates["safety_buffer_override"] = m.quantity if m.quantity >= 0 else None
    else:
        raise ValueError(f"unknown movement op {m.op!r}")
    changed = bool(updates)

    for name in ("on_hand", "allocated", "open_orders", "reservations", "damaged",
                 "quality_control", "quarantine", "in_transit"):  # fmt: skip
        value = updates.get(name)
        if value is not None and value < 0:
            outputs.append(BelowZero(pos.sku, pos.branch, name, value))

    updates["marks"] = _record_marks(marks, m, ctx, *extra_marks)
    updates["version"] = pos.version + 1
    updates["last_applied"] = {**pos.last_applied, m.source: ctx.now}
    new = pos.evolve(**updates)
    if changed:
        observed = m.observed_at if m.observed_at is not None else ctx.now
        new = _after_change(pos, new, ctx, observed, outputs)
    return new, outputs


def refresh(position: LedgerPosition, ctx: ApplyContext) -> tuple[LedgerPosition, list[Output]]:
    """Publish if Shopify's last value is not the current one (deferred publish, a new catalog
    mapping, changed branch rules). Bumps ``version`` when it publishes so the sink, which keeps
    only higher versions, accepts the push."""
    since = position.unpublished_since if position.unpublished_since is not None else ctx.now
    outputs: list[Output] = []
    ats = available_to_sell(position, ctx.rules)
    new = _publish(position, ats, replace(ctx, defer_publish=False), since, outputs, bump=True)
    return new, outputs


def _apply_delta(
    pos: LedgerPosition,
    m: Movement,
    rules: LocationRules,
    updates: dict[str, Any],
    outputs: list[Output],
) -> None:
    if m.role == ROLE_RECEIPT and m.source != rules.receipt_source:
        outputs.append(NotOwner(m.mark, m.source, "receipt", rules.receipt_source))
        return
    as_of = pos.on_hand_as_of
    new_pending: list[Pending] | None = None
    covered = False
    for component, delta in m.changes:
        if component in FOLDABLE:
            # Already inside the on-hand owner's snapshot: counting it again would double count.
            if as_of is not None and m.occurred_at <= as_of:
                covered = True
                continue
            if new_pending is None:
                new_pending = list(pos.pending)
            # Sorted, so any delivery order of the same deltas yields an identical record.
            insort(new_pending, Pending(m.occurred_at, component, delta))
        updates[component] = updates.get(component, getattr(pos, component)) + delta
    if new_pending is not None:
        updates["pending"] = tuple(new_pending)
    if covered and not updates:
        outputs.append(AlreadyInSnapshot(m.mark, as_of or 0.0))


def _apply_snapshot(
    pos: LedgerPosition,
    m: Movement,
    rules: LocationRules,
    updates: dict[str, Any],
    outputs: list[Output],
) -> None:
    if m.source != rules.on_hand_source:
        outputs.append(NotOwner(m.mark, m.source, "on_hand", rules.on_hand_source))
        return
    as_of = m.as_of if m.as_of is not None else m.occurred_at
    last = pos.snapshot_as_of.get(m.source)
    if last is not None and as_of < last:
        outputs.append(StaleSnapshotIgnored(m.mark, m.source, as_of, last))
        return
    # Fold: entries at or before as_of are inside the count; newer ones stay pending on top of it.
    keep = tuple(p for p in pos.pending if p.occurred_at > as_of)
    on_hand = m.quantity
    pending_sales = 0
    for p in keep:
        if p.component == ON_HAND:
            on_hand += p.delta
        elif p.component == PENDING_SALES:
            pending_sales += p.delta
    updates.update(
        on_hand=on_hand,
        pending_sales=pending_sales,
        pending=keep,
        on_hand_as_of=as_of,
        snapshot_as_of={**pos.snapshot_as_of, m.source: as_of},
    )


def _record_marks(marks: Any, m: Movement, ctx: ApplyContext, add: list[str] | None = None,
                  drop: list[str] | None = None) -> dict[str, int]:
    out: dict[str, int] = dict(marks)
    now = int(ctx.now)
    out[m.mark] = pack_mark(now, m.digest)
    for mark in drop or ():
        out.pop(mark, None)
    for mark in add or ():
        out[mark] = now
    if m.reverses is not None:
        out[REVERSAL_PREFIX + m.reverses] = now
    # Marks are kept in insertion (≈ applied-time) order, so expired ones are at the front.
    cutoff = ctx.now - ctx.dedupe_retention_s
    expired = []
    for mark, applied in out.items():
        if mark_applied_at(applied) >= cutoff:
            break
        expired.append(mark)
    for mark in expired:
        del out[mark]
    excess = len(out) - ctx.max_marks
    if excess > 0:
        for mark in list(out)[:excess]:
            del out[mark]
    return out


def _after_change(
    old: LedgerPosition,
    new: LedgerPosition,
    ctx: ApplyContext,
    observed: float,
    outputs: list[Output],
) -> LedgerPosition:
    rules = ctx.rules
    after = available_to_sell(new, rules)
    buffer = after.safety_buffer
    threshold = rules.low_stock_threshold
    if buffer > 0 or threshold > 0:  # the ATS before matters only for these crossings
        before = available_to_sell(old, rules)
        if (buffer > 0 and before.before_buffer > before.safety_buffer
                and after.before_buffer <= buffer):
            outputs.append(SafetyBufferBreach(new.sku, new.branch, after.before_buffer, buffer))
        if threshold > 0 and before.value > threshold >= after.value:
            outputs.append(LowStock(new.sku, new.branch, after.value, threshold))
    return _publish(new, after, ctx, observed, outputs, bump=False)


def _publish(
    pos: LedgerPosition,
    ats: AtsBreakdown,
    ctx: ApplyContext,
    observed: float,
    outputs: list[Output],
    *,
    bump: bool,
) -> LedgerPosition:
    rules = ctx.rules
    if not (rules.fulfills_online and rules.on_shopify):
        return pos  # not sold online from this branch: nothing to publish or report
    mapping = ctx.mapping
    if mapping is None:
        last = pos.unmapped_reported_at
        if last is None or ctx.now - last >= ctx.unmapped_report_interval_s:
            outputs.append(ReportUnmapped(pos.sku, pos.branch, rules.shop or "", ats.value))
            return pos.evolve(unmapped_reported_at=ctx.now)
        return pos
    threshold = ctx.min_publish_threshold  # per-SKU override, else the branch's
    if threshold is None:
        threshold = rules.min_publish_threshold
    value = publish_value(ats.value, threshold)
    if value == pos.last_published_ats:
        # Shopify already shows this value: nothing waits to be published.
        return pos if pos.unpublished_since is None else pos.evolve(unpublished_since=None)
    since = observed if pos.unpublished_since is None else min(pos.unpublished_since, observed)
    if ctx.defer_publish:
        return pos.evolve(unpublished_since=since)
    version = pos.version + 1 if bump else pos.version
    outputs.append(
        PublishAvailable(
            sku=pos.sku,
            branch=pos.branch,
            shop=mapping.shop,
            inventory_item_id=mapping.inventory_item_id,
            location_id=mapping.location_id,
            available=value,
            ledger_version=version,
            oldest_event_at=since,
            breakdown=ats.as_dict(),
        )
    )
    return pos.evolve(last_published_ats=value, unpublished_since=None, version=version)
