"""Paced level reads for reconciliation: aliased ``inventoryItem → inventoryLevel`` queries.

Pure parts (query text, parsing, pacing arithmetic in ``core.pace_delay``) plus one async loop
over ``ShopClient.post``. Reads only; reconciliation never writes to Shopify (``--fix`` goes
through the sink).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.reconcile.core import ShopifyLevel, pace_delay
from pipeline.sink.shopify_client import ShopClient

QUANTITIES = 'quantities(names: ["available", "committed"]) { name quantity }'


def levels_query(pairs: Sequence[tuple[str, str]]) -> str:
    parts = [
        f"l{i}: inventoryItem(id: {json.dumps(item)}) {{ id "
        f"inventoryLevel(locationId: {json.dumps(loc)}) {{ {QUANTITIES} }} }}"
        for i, (item, loc) in enumerate(pairs)
    ]
    return "query TallyReconcileLevels {\n  " + "\n  ".join(parts) + "\n}\n"


def parse_levels(body: dict[str, Any] | None, n: int) -> list[ShopifyLevel] | None:
    """One ``ShopifyLevel`` per pair; None when the body carries no data (retry)."""
    data = (body or {}).get("data")
    if not isinstance(data, dict):
        return None
    out: list[ShopifyLevel] = []
    for i in range(n):
        item = data.get(f"l{i}")
        if not isinstance(item, dict):
            out.append(ShopifyLevel(available=None, item_exists=False))
            continue
        level = item.get("inventoryLevel")
        if not isinstance(level, dict):
            out.append(ShopifyLevel(available=None))
            continue
        q = {e.get("name"): int(e.get("quantity", 0)) for e in level.get("quantities") or []}
        out.append(ShopifyLevel(available=q.get("available"), committed=q.get("committed", 0)))
    return out


@dataclass
class ReadStats:
    calls: int = 0
    throttled: int = 0
    cost_requested: float = 0.0
    cost_actual: float = 0.0
    waited_s: float = 0.0


@dataclass
class _Bucket:
    available: float | None = None
    restore: float = 50.0
    maximum: float = 1000.0
    at: float = 0.0

    def now_available(self, now: float) -> float | None:
        if self.available is None:
            return None
        return min(self.maximum, self.available + (now - self.at) * self.restore)


async def read_levels(client: ShopClient, pairs: Sequence[tuple[str, str]], *,
                      batch: int = 100, progress: Callable[[int, int], None] | None = None,
                      clock: Callable[[], float] = time.monotonic,
                      max_attempts: int = 20) -> tuple[list[ShopifyLevel], ReadStats]:
    """Read every pair, pacing each call by Shopify's reported ``throttleStatus`` so the bucket
    never runs dry (a reconciliation must not starve the sink of the same app's budget)."""
    stats = ReadStats()
    bucket = _Bucket()
    cost_per_pair = 4.0  # learned from the first answer's requestedQueryCost
    out: list[ShopifyLevel] = []
    for start in range(0, len(pairs), batch):
        chunk = list(pairs[start:start + batch])
        body = {"query": levels_query(chunk)}
        for attempt in range(max_attempts):
            have = bucket.now_available(clock())
            if have is not None:
                # Keep 20 % of the bucket for the sink, which shares the app's budget.
                wait = pace_delay(cost_per_pair * len(chunk), have, bucket.restore,
                                  reserve=0.2 * bucket.maximum)
                if wait > 0:
                    stats.waited_s += wait
                    await asyncio.sleep(min(wait, 30.0))
            res = await client.post(body)
            stats.calls += 1
            cost = ((res.body or {}).get("extensions") or {}).get("cost") or {}
            throttle = cost.get("throttleStatus") or {}
            if throttle:
                bucket = _Bucket(float(throttle.get("currentlyAvailable", 0)),
                                 float(throttle.get("restoreRate", 50.0)),
                                 float(throttle.get("maximumAvailable", 1000.0)), clock())
            if cost.get("requestedQueryCost") is not None:
                stats.cost_requested += float(cost["requestedQueryCost"])
                cost_per_pair = max(1.0, float(cost["requestedQueryCost"]) / len(chunk))
            if cost.get("actualQueryCost") is not None:
                stats.cost_actual += float(cost["actualQueryCost"])
            levels = parse_levels(res.body, len(chunk)) if res.status == 200 else None
            if levels is not None:
                out.extend(levels)
                break
            codes = {(e.get("extensions") or {}).get("code")
                     for e in (res.body or {}).get("errors") or [] if isinstance(e, dict)}
            if "THROTTLED" in codes:
                stats.throttled += 1
                continue  # the re-based bucket paces the retry
            await asyncio.sleep(min(10.0, 0.25 * 2 ** attempt))
        else:
            raise RuntimeError(f"levels not readable after {max_attempts} attempts "
                               f"(last status {res.status}, error {res.error})")
        if progress is not None:
            progress(len(out), len(pairs))
    return out, stats
