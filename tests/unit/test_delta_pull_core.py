"""Watermark windows: a poller restarted at any point never loses a record at a boundary."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.delta_pull.core import Window, advance, next_window
from pipeline.delta_pull.service import legacy_snapshots, to_event


def test_first_window_starts_at_initial_and_leaves_settle_out() -> None:
    assert next_window(None, 100.0, overlap_s=10, settle_s=5, initial_s=20) == Window(20, 95)
    assert next_window(None, 24.0, overlap_s=10, settle_s=5, initial_s=20) is None


def test_next_window_overlaps_previous_and_watermark_never_moves_back() -> None:
    w = next_window(95.0, 200.0, overlap_s=10, settle_s=5)
    assert w == Window(85.0, 195.0)
    assert advance(300.0, w) == 300.0
    assert advance(95.0, w) == 195.0


@settings(max_examples=300, deadline=None)
@given(
    times=st.lists(st.floats(0, 1000, allow_nan=False), max_size=40),
    polls=st.lists(st.tuples(st.floats(0, 60), st.integers(0, 45), st.booleans()),
                   min_size=1, max_size=25),
    overlap=st.floats(0, 30), settle=st.floats(0, 10),
    late=st.lists(st.tuples(st.floats(0, 1000), st.floats(0, 20)), max_size=10),
)
def test_restart_anywhere_loses_nothing(times: list[float], polls: list[tuple[float, int, bool]],
                                        overlap: float, settle: float,
                                        late: list[tuple[float, float]]) -> None:
    """Simulated source + poller: each poll may crash after publishing k records (before the
    watermark is saved). Records become visible at ``visible_at`` >= their timestamp (late
    commits within ``overlap``). Every record older than the final watermark was published."""
    records = [(t, t) for t in times]  # (timestamp, visible_at)
    records += [(t, t + min(d, overlap)) for t, d in late]  # committed late, within the overlap
    now = 0.0
    watermark: float | None = None
    published: set[int] = set()
    for step, crash_after, crashes in polls:
        now += step
        w = next_window(watermark, now, overlap_s=overlap, settle_s=settle)
        if w is None:
            continue
        batch = [i for i, (t, vis) in enumerate(records) if w.contains(t) and vis <= now - settle]
        if crashes:
            published.update(batch[:crash_after])  # crash mid-window: watermark not saved
            continue
        published.update(batch)
        watermark = advance(watermark, w)
    # One more clean poll once every record is visible (a late record is only guaranteed to be
    # read by a poll that runs after it became visible).
    now = max([now, *(vis for _, vis in records)]) + settle + 1.0
    w = next_window(watermark, now, overlap_s=overlap, settle_s=settle)
    if w is not None:
        published.update(i for i, (t, vis) in enumerate(records)
                         if w.contains(t) and vis <= now - settle)
        watermark = advance(watermark, w)
    if watermark is None:
        return
    missing = [i for i, (t, _) in enumerate(records) if t < watermark and i not in published]
    assert missing == []


def test_to_event_types_integers_and_drops_recorded_at() -> None:
    ev = to_event({"type": "erp.adjustment", "transaction_id": "A", "line": "2",
                   "quantity": "3", "delta": "-3", "reason": "x", "recorded_at": "t",
                   "occurred_at": "2026-03-10T06:00:00Z", "sku": "S", "location": "L",
                   "stock_state": ""}, "erp")
    assert ev == {"type": "erp.adjustment", "transaction_id": "A", "line": 2, "quantity": 3,
                  "delta": -3, "reason": "x", "occurred_at": "2026-03-10T06:00:00Z", "sku": "S",
                  "location": "L", "schema_version": "1", "source": "erp"}


def test_legacy_export_becomes_stable_snapshots() -> None:
    rows = [{"sku": "B", "location": "WH", "on_hand": "4"},
            {"sku": "A", "location": "WH", "on_hand": "-1"},
            {"sku": "A", "location": "ST", "on_hand": "7"}]
    events = legacy_snapshots(rows, "2026-03-10T06:00:00Z")
    assert [(e["transaction_id"], e["line"], e["sku"], e["quantity"]) for e in events] == [
        ("REFRESH-20260310T060000Z-ST", 1, "A", 7),
        ("REFRESH-20260310T060000Z-WH", 1, "A", 0),
        ("REFRESH-20260310T060000Z-WH", 2, "B", 4),
    ]
    assert legacy_snapshots(list(reversed(rows)), "2026-03-10T06:00:00Z") == events
    assert all(e["type"] == "erp.on_hand_snapshot" and e["as_of"] == e["occurred_at"]
               for e in events)
