"""A paced reader of many inventory levels (reconciliation's bulk read).

Loops over ``ShopClient.post``, pacing each call by Shopify's reported bucket (``ShopBudget``) so a
long read never runs the bucket dry and leaves a fifth of it to the sink, which shares the app's
budget. Reads only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.shopify.backoff import Backoff
from pipeline.shopify.budget import BudgetConfig, CostReport, ShopBudget, pace_delay
from pipeline.shopify.client import ShopClient
from pipeline.shopify.levels import AVAILABLE_COMMITTED, ShopifyLevel, levels_query, parse_levels


@dataclass
class ReadStats:
    calls: int = 0
    throttled: int = 0
    cost_requested: float = 0.0
    cost_actual: float = 0.0
    waited_s: float = 0.0


# A reader keeps 20 % of the bucket for the sink, which shares the app's budget.
READER_BUDGET = BudgetConfig(reserve_fraction=0.2, min_reserve=0.0)
READER_BACKOFF = Backoff(base=0.25, cap=10.0)


async def read_levels(client: ShopClient, pairs: Sequence[tuple[str, str]], *,
                      batch: int = 100, progress: Callable[[int, int], None] | None = None,
                      clock: Callable[[], float] = time.monotonic,
                      max_attempts: int = 20) -> tuple[list[ShopifyLevel], ReadStats]:
    """Read every pair, pacing each call by Shopify's reported ``throttleStatus`` so the bucket
    never runs dry (a reconciliation must not starve the sink of the same app's budget)."""
    stats = ReadStats()
    budget = ShopBudget(config=READER_BUDGET)
    cost_per_pair = 4.0  # learned from the first answer's requestedQueryCost
    out: list[ShopifyLevel] = []
    for start in range(0, len(pairs), batch):
        chunk = list(pairs[start:start + batch])
        body = {"query": levels_query(chunk, names=AVAILABLE_COMMITTED, item_id=True,
                                      operation="TallyReconcileLevels")}
        for attempt in range(max_attempts):
            if budget.known:
                assert budget.restore_rate is not None
                wait = pace_delay(cost_per_pair * len(chunk), budget.available(clock()),
                                  budget.restore_rate, reserve=budget.reserve_points())
                if wait > 0:
                    stats.waited_s += wait
                    await asyncio.sleep(min(wait, 30.0))
            res = await client.post(body)
            stats.calls += 1
            report = CostReport.from_extensions(res.body)
            budget.observe(None, report, 0, clock())
            if report is not None and report.requested is not None:
                stats.cost_requested += report.requested
                cost_per_pair = max(1.0, report.requested / len(chunk))
            if report is not None and report.actual is not None:
                stats.cost_actual += report.actual
            levels = parse_levels(res.body, len(chunk)) if res.status == 200 else None
            if levels is not None:
                out.extend(levels)
                break
            codes = {(e.get("extensions") or {}).get("code")
                     for e in (res.body or {}).get("errors") or [] if isinstance(e, dict)}
            if "THROTTLED" in codes:
                stats.throttled += 1
                continue  # the re-based bucket paces the retry
            await asyncio.sleep(READER_BACKOFF.ceiling(attempt))
        else:
            raise RuntimeError(f"levels not readable after {max_attempts} attempts "
                               f"(last status {res.status}, error {res.error})")
        if progress is not None:
            progress(len(out), len(pairs))
    return out, stats
