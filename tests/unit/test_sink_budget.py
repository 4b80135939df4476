"""The cost budget against an independent leaky-bucket oracle playing Shopify."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.shopify.budget import BudgetConfig, CostReport, ShopBudget, pace_delay
from pipeline.sink.core import SinkCore


@dataclass
class ShopifyBucket:
    """Oracle: Shopify's leaky bucket. Charges requested cost up front, refunds to actual."""

    maximum: float
    rate: float
    level: float
    t: float = 0.0

    def advance(self, t: float) -> None:
        self.level = min(self.maximum, self.level + self.rate * (t - self.t))
        self.t = t

    def call(self, t: float, requested: float, actual: float) -> tuple[bool, CostReport]:
        self.advance(t)
        if requested > self.level + 1e-9:
            return True, self.report(requested, None)
        self.level -= actual
        return False, self.report(requested, actual)

    def report(self, requested: float, actual: float | None) -> CostReport:
        return CostReport(requested, actual, self.maximum, math.floor(self.level), self.rate)


@settings(max_examples=60, deadline=None)
@given(
    maximum=st.sampled_from([1000.0, 2000.0, 4000.0, 20000.0]),
    rate=st.sampled_from([50.0, 100.0, 200.0, 1000.0]),
    base=st.integers(2, 30),
    per_item=st.floats(0.0, 3.0),
    latency=st.floats(0.0, 2.0),
    drops=st.lists(st.tuples(st.integers(1, 80), st.floats(0.1, 0.9)), max_size=3),
    idle=st.lists(st.floats(0.0, 5.0), min_size=100, max_size=100),
)
def test_paced_calls_never_overdraw_the_bucket(
    maximum: float,
    rate: float,
    base: int,
    per_item: float,
    latency: float,
    drops: list[tuple[int, float]],
    idle: list[float],
) -> None:
    shop = ShopifyBucket(maximum, rate, level=maximum)
    budget = ShopBudget()
    now, throttled, sent_items = 0.0, 0, 0
    drop_at = dict(drops)
    for step in range(100):
        if step in drop_at:  # Shopify lowers the plan limit at run time, without notice
            shop.advance(now)
            shop.maximum = max(200.0, shop.maximum * drop_at[step])
            shop.rate = max(10.0, shop.rate * drop_at[step])
            shop.level = min(shop.level, shop.maximum)
        n = budget.max_items(now)
        if n == 0:
            n = max(1, budget.max_items(now, when_full=True))
        estimate = budget.estimate_cost(n)
        wait = budget.wait_for(estimate, now)
        assert wait != math.inf
        now += wait
        true_cost = base + per_item * n
        ticket = budget.reserve(estimate, now)
        was_throttled, report = shop.call(now, requested=true_cost, actual=true_cost * 0.8)
        now += latency
        budget.observe(ticket, report, n, now)
        throttled += was_throttled
        sent_items += 0 if was_throttled else n
        now += idle[step]
    # Only a call made before Shopify's new (lower) numbers were seen, or the one probe that
    # re-measures a batch size never tried under the new limit, may be throttled.
    assert throttled <= 2 * len(drop_at)
    assert sent_items > 0


def test_batch_size_follows_measured_cost_and_grows_when_calls_are_cheap() -> None:
    b = ShopBudget()
    assert b.max_items(0.0) == b.config.probe_items  # nothing known yet: one probe
    t = b.reserve(b.estimate_cost(25), 0.0)
    assert b.max_items(0.0) == 0 and b.wait_for(0.0, 0.0) == b.config.probe_wait
    b.observe(t, CostReport(10, 10, 2000.0, 1990, 100.0), items=25, now=0.1)
    assert b.max_items(0.1) == 250  # a flat cost of 10 for 25 items bounds 250 items by 100 points
    assert b.estimate_cost(250) == 100.0
    b.observe(None, CostReport(12, 12, 2000.0, 1978, 100.0), items=250, now=0.2)
    assert b.estimate_cost(250) == 12.0  # measured: big batches are cheap


def test_lowered_maximum_shrinks_batches_and_waits() -> None:
    b = ShopBudget()
    b.observe(None, CostReport(500, 500, 20000.0, 20000, 1000.0), items=250, now=0.0)
    assert b.max_items(0.0) == 250
    # Shopify drops the bucket to 400 points: a 250-item call (500 points) can never fit
    b.observe(None, CostReport(500, None, 400.0, 50, 20.0), items=250, now=1.0)
    assert b.max_items(1.0) == 0
    # a guess scaled from the measured 2 points/item, to be measured on a full bucket
    assert b.max_items(1.0, when_full=True) == 190  # (400 - 20 reserve) / 2 per item
    assert b.wait_for(b.estimate_cost(190), 1.0) == (400 - 50) / 20.0


def test_lost_call_counts_as_spent() -> None:
    b = ShopBudget()
    b.observe(None, CostReport(10, 10, 1000.0, 1000, 50.0), items=1, now=0.0)
    t = b.reserve(300.0, 0.0)
    b.lost(t, 0.0)
    assert b.available(0.0) == 700.0
    assert b.available(2.0) == 800.0


def test_shops_are_independent() -> None:
    shops = SinkCore.for_shops(["big-plus.myshopify.com", "tiny-basic.myshopify.com"]).shops
    budgets = {domain: shop.budget for domain, shop in shops.items()}
    budgets["big-plus.myshopify.com"].observe(
        None, CostReport(10, 10, 20000.0, 0, 1000.0), items=1, now=0.0
    )
    assert budgets["tiny-basic.myshopify.com"].max_items(0.0) == BudgetConfig().probe_items
    assert budgets["big-plus.myshopify.com"].wait_for(10.0, 0.0) > 0


def test_cost_report_parses_shopify_extensions_and_throttled_null_actual() -> None:
    body = {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {
            "cost": {
                "requestedQueryCost": 12,
                "actualQueryCost": None,
                "throttleStatus": {
                    "maximumAvailable": 2000.0,
                    "currentlyAvailable": 3,
                    "restoreRate": 100.0,
                },
            }
        },
    }
    report = CostReport.from_extensions(body)
    assert report == CostReport(12.0, None, 2000.0, 3.0, 100.0)
    assert CostReport.from_extensions({"data": {}}) is None


def test_pace_delay() -> None:
    assert pace_delay(100, 500, 50) == 0.0
    assert pace_delay(100, 50, 50) == 1.0
    assert pace_delay(100, 150, 50, reserve=100) == 1.0
