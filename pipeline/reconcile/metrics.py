"""Reconciliation metrics (``tally_`` prefix, base units, no SKU labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

KEYS_CHECKED = Counter(
    "tally_reconciliation_keys_checked_total", "Keys compared by reconciliation runs.", ["shop"]
)
DISCREPANCIES = Counter(
    "tally_reconciliation_discrepancies_total", "Differences found, by cause.", ["shop", "cause"]
)
CORRECTED = Counter(
    "tally_reconciliation_corrected_total", "Differences re-asserted through the sink (--fix).",
    ["shop"],
)
COST_POINTS = Counter(
    "tally_reconciliation_cost_points_total", "Shopify query cost points reconciliation used.",
    ["shop"],
)
DISCREPANCY_RATIO = Gauge(
    "tally_reconciliation_discrepancy_ratio",
    "Share of compared keys that differ, last run (0..1).", ["shop"],
)
LAST_SUCCESS = Gauge(
    "tally_reconciliation_last_success_timestamp_seconds",
    "When the last reconciliation run of a shop finished.", ["shop"],
)
DURATION = Gauge(
    "tally_reconciliation_duration_seconds", "Duration of the last run.", ["shop"]
)
