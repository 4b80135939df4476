"""Reconciliation core: every difference gets a cause; --fix picks only what a push can repair."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.reconcile.core import (
    IN_SYNC,
    MANUAL_EDIT,
    MISSING_LEVEL,
    NEVER_PUSHED,
    PENDING_PUSH,
    UNEXPLAINED,
    UNMAPPED,
    UNRECORDED_ORDERS,
    AckState,
    LedgerKey,
    ShopifyLevel,
    Target,
    compare,
    summarize,
    to_fix,
)

T = Target("s.myshopify.com", "gid://shopify/InventoryItem/1", "gid://shopify/Location/1")
NOW = 10_000.0


def row(expected: int, ack: AckState | None, level: ShopifyLevel | None, *, open_orders: int = 0,
        changed_at: float = 0.0, target: Target = T, deferred: bool = False):
    ledger = LedgerKey("SKU", "WH", expected, 7, open_orders, changed_at, deferred)
    return compare(ledger, target, ack, level, now=NOW, grace_s=300)


def test_causes() -> None:
    acked = AckState(10, 7, 5000.0)
    assert row(10, acked, ShopifyLevel(10)).cause == IN_SYNC
    edit = row(10, acked, ShopifyLevel(4))
    assert (edit.cause, edit.difference, edit.last_known_correct_at) == (MANUAL_EDIT, 6, 5000.0)
    assert row(10, acked, ShopifyLevel(7, committed=3)).cause == UNRECORDED_ORDERS
    assert row(10, acked, ShopifyLevel(7, committed=3), open_orders=1).cause == MANUAL_EDIT
    assert row(10, None, ShopifyLevel(3)).cause == NEVER_PUSHED
    assert row(10, AckState(8, 6, 1.0), ShopifyLevel(3)).cause == UNEXPLAINED
    assert row(10, AckState(8, 6, 1.0), ShopifyLevel(3), changed_at=NOW - 5).cause == PENDING_PUSH
    assert row(10, acked, ShopifyLevel(3), deferred=True).cause == PENDING_PUSH
    assert row(10, None, None).cause == MISSING_LEVEL
    assert row(10, None, ShopifyLevel(None)).cause == MISSING_LEVEL
    unmapped = Target(T.shop, None, T.location_id)
    assert row(10, None, None, target=unmapped).cause == UNMAPPED


def test_manual_edit_is_not_pending_even_when_recent() -> None:
    # The sink acknowledged the ledger's value; a recent movement that did not change the
    # published value must not hide an admin edit.
    assert row(10, AckState(10, 7, 1.0), ShopifyLevel(2), changed_at=NOW - 1).cause == MANUAL_EDIT


@given(expected=st.integers(0, 50), actual=st.integers(0, 50), committed=st.integers(0, 10),
       acked=st.one_of(st.none(), st.integers(0, 50)), threshold=st.integers(0, 5))
def test_every_row_explained_and_fix_never_raises_over_unseen_orders(
        expected: int, actual: int, committed: int, acked: int | None, threshold: int) -> None:
    ack = None if acked is None else AckState(acked, 7, 1.0)
    r = row(expected, ack, ShopifyLevel(actual, committed))
    assert (r.cause == IN_SYNC) == (expected == actual)
    assert r.cause == IN_SYNC or r.explanation
    fixes = to_fix([r], threshold)
    assert all(f.cause != UNRECORDED_ORDERS for f in fixes)
    if fixes:
        assert abs(expected - actual) > threshold


def test_summary_line_and_ratio() -> None:
    rows = [row(10, AckState(10, 7, 1.0), ShopifyLevel(10)),
            row(10, AckState(10, 7, 1.0), ShopifyLevel(4)),
            row(10, AckState(8, 6, 1.0), ShopifyLevel(3), changed_at=NOW)]
    s = summarize("s", "r1", rows, started_at=0, finished_at=2, corrected=1, cost_points=12,
                  fixed=True, threshold=0)
    assert (s.keys_checked, s.in_sync, s.skipped_in_flight, s.discrepancies) == (3, 1, 1, 1)
    assert s.discrepancy_ratio == 0.5
    assert "manual_edit=1" in s.line() and "1 corrected" in s.line()
