"""The demo's summary: latency percentiles and whether Shopify equals the ledger, key by key."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def end_to_end_latencies(
    pushes: Iterable[Mapping], acks: Iterable[Mapping]
) -> list[float]:
    """Seconds from the oldest source event a pushed value reflects to Shopify's acknowledgment,
    joining push and ack records on (key, ledger version)."""
    oldest: dict[tuple[str, str, str, int], float] = {}
    for p in pushes:
        k = (p["shop"], p["inventory_item_id"], p["location_id"], int(p["ledger_version"]))
        oldest[k] = min(oldest.get(k, math.inf), float(p["oldest_event_at"]))
    out = []
    for a in acks:
        k = (a["shop"], a["inventory_item_id"], a["location_id"], int(a["ledger_version"]))
        if k in oldest:
            out.append(max(0.0, float(a["acknowledged_at"]) - oldest[k]))
    return out


@dataclass(frozen=True)
class Comparison:
    keys: int
    equal: int
    differences: list[tuple[str, int, int]]  # (key, ledger, shopify)

    @property
    def all_equal(self) -> bool:
        return not self.differences


def compare_levels(ledger: Mapping[str, int], shopify: Mapping[str, int]) -> Comparison:
    """Compare ledger ATS and Shopify available on every key either side knows."""
    keys = sorted(set(ledger) | set(shopify))
    diffs = [(k, ledger.get(k, -1), shopify.get(k, -1)) for k in keys
             if ledger.get(k) != shopify.get(k)]
    return Comparison(len(keys), len(keys) - len(diffs), diffs)
