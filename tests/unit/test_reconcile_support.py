"""Pure helpers around reconciliation: catalog matching, audit trail selection, schedule."""

from __future__ import annotations

import json

from pipeline.operations.catalog_sync import match_variants
from pipeline.operations.history import history_for
from pipeline.reconcile.cli import next_run


def test_match_variants_reports_duplicates_and_missing() -> None:
    r = match_variants("s", ["A", "B", "C"], [("A", "i1"), ("B", "i2"), ("B", "i3"), ("Z", "i9")])
    assert [(e.sku, e.inventory_item_id) for e in r.entries] == [("A", "i1")]
    assert r.duplicates == {"B": ["i2", "i3"]}
    assert r.missing == ["C"]


def test_history_for_one_key_in_version_order_without_duplicates() -> None:
    def rec(key: str, v: int) -> tuple[bytes, bytes]:
        return key.encode(), json.dumps({"version": v, "mark": f"m{v}"}).encode()

    records = [rec("A@WH", 2), rec("B@WH", 1), rec("A@WH", 1), rec("A@WH", 2), (b"A@WH", None)]
    assert [r["mark"] for r in history_for(records, "A", "WH")] == ["m1", "m2"]


def test_next_run_is_the_next_daily_time() -> None:
    midnight = 1_773_100_800.0  # 2026-03-10T00:00:00Z
    assert next_run(midnight, "02:00") == midnight + 7200
    assert next_run(midnight + 7200, "02:00") == midnight + 86400 + 7200
