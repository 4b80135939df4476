"""Pure reconciliation: (ledger, acks, Shopify levels) → delta rows with a likely cause.

No I/O and no clock: the adapter (``pipeline.reconcile.service``) reads the three inputs and passes
``now``. One row per mapped key; a key is *in sync* when Shopify shows the ledger's ATS.

Causes, checked in this order (the first that fits explains the difference):

- ``unmapped``: the ledger holds the SKU at a Shopify branch but the catalog has no inventory item.
- ``missing_level``: the item does not exist in Shopify, or is not stocked at the location.
- ``pending_push``: the ledger changed within the grace period and the sink has not acknowledged
  its value yet (or the ledger defers it): a push is in flight, so the key is left out of the
  comparison (not a discrepancy).
- ``unrecorded_shopify_orders``: Shopify is lower and its ``committed`` units exceed the ledger's
  open orders by at least the difference: orders the ledger has not seen (a dropped webhook).
  Never corrected by a push: raising Shopify's level now would re-sell those units.
- ``manual_edit``: the sink's last acknowledged level equals the ledger's value, yet Shopify
  shows something else: Shopify changed behind Tally's back (an admin edit).
- ``never_pushed``: no acknowledgment on record for the key.
- ``unexplained``: anything else; these are the real bugs worth a look.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.ledger.ats import available_to_sell
from pipeline.ledger.position import LedgerPosition
from pipeline.ledger.rules import LocationRules
from pipeline.shopify.levels import ShopifyLevel

IN_SYNC = "in_sync"
PENDING_PUSH = "pending_push"
UNMAPPED = "unmapped"
MISSING_LEVEL = "missing_level"
UNRECORDED_ORDERS = "unrecorded_shopify_orders"
MANUAL_EDIT = "manual_edit"
NEVER_PUSHED = "never_pushed"
UNEXPLAINED = "unexplained"
CAUSES = (UNMAPPED, MISSING_LEVEL, PENDING_PUSH, UNRECORDED_ORDERS, MANUAL_EDIT, NEVER_PUSHED,
          UNEXPLAINED)
# Causes a forced re-assert through the sink may repair. The others need something else: the
# catalog (unmapped, missing level), the order intake (unrecorded orders), or patience (pending).
FIXABLE = frozenset({MANUAL_EDIT, NEVER_PUSHED, UNEXPLAINED})


@dataclass(frozen=True, slots=True)
class LedgerKey:
    """The ledger's side of one key: what Shopify should show."""

    sku: str
    branch: str
    expected: int  # the value the ledger publishes (ATS; 0 below the publish threshold)
    version: int
    open_orders: int = 0
    changed_at: float | None = None  # when the ledger last applied a movement to the key
    deferred: bool = False  # the ledger holds a changed value back (unpublished_since set)


def ledger_key_of(position: LedgerPosition, rules: LocationRules) -> LedgerKey:
    """The ledger side of a key, as the worker would publish it (see ``apply._publish``)."""
    ats = available_to_sell(position, rules).value
    value = ats if ats >= rules.min_publish_threshold else 0
    return LedgerKey(
        sku=position.sku, branch=position.branch, expected=value, version=position.version,
        open_orders=position.open_orders,
        changed_at=max(position.last_applied.values()) if position.last_applied else None,
        deferred=position.unpublished_since is not None,
    )


@dataclass(frozen=True, slots=True)
class AckState:
    """What the sink last saw Shopify acknowledge for a push key (from the acks topic)."""

    acked: int | None
    acked_version: int | None
    acknowledged_at: float | None
    target_version: int | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a ledger key lives in Shopify."""

    shop: str
    inventory_item_id: str | None  # None: the SKU has no mapping in the catalog
    location_id: str


@dataclass(frozen=True, slots=True)
class DeltaRow:
    sku: str
    branch: str
    shop: str
    location_id: str
    inventory_item_id: str | None
    expected: int
    actual: int | None
    difference: int | None  # expected - actual
    ledger_version: int
    last_known_correct_at: float | None
    cause: str
    explanation: str

    @property
    def discrepant(self) -> bool:
        return self.cause not in (IN_SYNC, PENDING_PUSH)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify(ledger: LedgerKey, target: Target, ack: AckState | None,
             level: ShopifyLevel | None, *, now: float, grace_s: float) -> tuple[str, str]:
    """The likely cause of a key's state, and a one-sentence explanation."""
    if target.inventory_item_id is None:
        return UNMAPPED, f"no inventory item mapped for {ledger.sku} in {target.shop}"
    if level is None or not level.item_exists:
        return MISSING_LEVEL, f"inventory item {target.inventory_item_id} not found in Shopify"
    if level.available is None:
        return MISSING_LEVEL, f"item not stocked at {target.location_id}"
    if level.available == ledger.expected:
        return IN_SYNC, ""
    recent = ledger.changed_at is not None and now - ledger.changed_at < grace_s
    if ledger.deferred:
        return PENDING_PUSH, "the ledger holds a value back for publishing (deferred)"
    acked_other = ack is None or ack.acked != ledger.expected or ack.acked_version is None
    if recent and acked_other:
        # The ledger changed moments ago and the sink has not acknowledged its value: the push
        # is on its way (or held by compare-and-set); comparing now would report noise.
        return PENDING_PUSH, (f"ledger changed {now - (ledger.changed_at or now):.0f}s ago; "
                              f"Shopify's acknowledgment of {ledger.expected} not seen yet")
    diff = ledger.expected - level.available
    unseen = level.committed - max(0, ledger.open_orders)
    if diff > 0 and unseen >= diff:
        return UNRECORDED_ORDERS, (f"Shopify committed {level.committed} units to orders, the "
                                   f"ledger knows {max(0, ledger.open_orders)}: {diff} sold units "
                                   f"not yet in the ledger")
    if ack is not None and ack.acked == ledger.expected:
        return MANUAL_EDIT, (f"Shopify acknowledged {ack.acked} (ledger version "
                             f"{ack.acked_version}) and now shows {level.available}")
    if ack is None or ack.acked is None:
        return NEVER_PUSHED, "no acknowledgment on record for this key"
    return UNEXPLAINED, (f"last acknowledged {ack.acked} at version {ack.acked_version}, ledger "
                         f"{ledger.expected} at version {ledger.version}, Shopify "
                         f"{level.available}")


def compare(ledger: LedgerKey, target: Target, ack: AckState | None,
            level: ShopifyLevel | None, *, now: float, grace_s: float = 300.0) -> DeltaRow:
    """One delta row."""
    cause, why = classify(ledger, target, ack, level, now=now, grace_s=grace_s)
    actual = level.available if level is not None else None
    last_ok = None
    if ack is not None and ack.acked is not None and ack.acked == ledger.expected:
        last_ok = ack.acknowledged_at
    return DeltaRow(
        sku=ledger.sku, branch=ledger.branch, shop=target.shop, location_id=target.location_id,
        inventory_item_id=target.inventory_item_id, expected=ledger.expected, actual=actual,
        difference=None if actual is None else ledger.expected - actual,
        ledger_version=ledger.version, last_known_correct_at=last_ok, cause=cause,
        explanation=why,
    )


@dataclass(frozen=True)
class Summary:
    shop: str
    run_id: str
    started_at: float
    finished_at: float
    keys_checked: int
    in_sync: int
    skipped_in_flight: int
    discrepancies: int
    by_cause: Mapping[str, int]
    corrected: int
    cost_points: float
    fixed: bool
    threshold: int
    rows: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def discrepancy_ratio(self) -> float:
        compared = self.keys_checked - self.skipped_in_flight
        return self.discrepancies / compared if compared > 0 else 0.0

    def line(self) -> str:
        """The one-line summary."""
        causes = ", ".join(f"{k}={v}" for k, v in sorted(self.by_cause.items()) if v) or "none"
        return (f"reconcile {self.shop} run {self.run_id}: {self.keys_checked} keys, "
                f"{self.in_sync} in sync, {self.skipped_in_flight} in flight, "
                f"{self.discrepancies} differences ({self.discrepancy_ratio:.2%}; {causes}), "
                f"{self.corrected} corrected, {self.cost_points:.0f} cost points, "
                f"{self.finished_at - self.started_at:.1f}s")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["by_cause"] = dict(self.by_cause)
        d["discrepancy_ratio"] = self.discrepancy_ratio
        d["line"] = self.line()
        return d


def to_fix(rows: Iterable[DeltaRow], threshold: int) -> list[DeltaRow]:
    """Rows a ``--fix`` run re-asserts: fixable causes with |difference| above the threshold."""
    return [r for r in rows if r.cause in FIXABLE and r.difference is not None
            and abs(r.difference) > threshold]


def summarize(shop: str, run_id: str, rows: list[DeltaRow], *, started_at: float,
              finished_at: float, corrected: int, cost_points: float, fixed: bool,
              threshold: int) -> Summary:
    by_cause: dict[str, int] = {}
    for r in rows:
        if r.discrepant:
            by_cause[r.cause] = by_cause.get(r.cause, 0) + 1
    return Summary(
        shop=shop, run_id=run_id, started_at=started_at, finished_at=finished_at,
        keys_checked=len(rows), in_sync=sum(r.cause == IN_SYNC for r in rows),
        skipped_in_flight=sum(r.cause == PENDING_PUSH for r in rows),
        discrepancies=sum(by_cause.values()), by_cause=by_cause, corrected=corrected,
        cost_points=cost_points, fixed=fixed, threshold=threshold, rows=len(rows),
    )


CSV_FIELDS = ("sku", "branch", "shop", "location_id", "inventory_item_id", "expected", "actual",
              "difference", "ledger_version", "last_known_correct_at", "cause", "explanation")
