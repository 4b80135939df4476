"""Per-shop cost budget driven only by Shopify's own ``extensions.cost`` numbers.

Model: Shopify's leaky bucket as last reported (``currentlyAvailable`` at time t0, refilling at
``restoreRate`` up to ``maximumAvailable``), minus the requested cost of calls sent since and not
yet answered. Nothing about plans is hard-coded: when Shopify lowers ``maximumAvailable`` or the
restore rate, the next response (a THROTTLED one included) carries the new numbers and the model
follows. A small reserve absorbs what the model cannot see (clock skew, other callers of the same
app+shop).

Batch cost is estimated from measured calls. Assuming requested cost = a + b·n with a, b >= 0 for
n items, each observation (n_i, c_i) gives an upper bound for any n: c_i if n <= n_i, else
c_i·n/n_i. The estimate is the tightest (smallest) such bound over recent observations, so it
never under-estimates a linear cost, yet learns quickly that bigger batches are cheap.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CostReport:
    """``extensions.cost`` of one response."""

    requested: float | None
    actual: float | None
    maximum_available: float
    currently_available: float
    restore_rate: float

    @classmethod
    def from_extensions(cls, body: dict[str, Any] | None) -> CostReport | None:
        """Parse ``body["extensions"]["cost"]``; None when absent or malformed."""
        try:
            cost = (body or {})["extensions"]["cost"]
            ts = cost["throttleStatus"]
            return cls(
                requested=_num(cost.get("requestedQueryCost")),
                actual=_num(cost.get("actualQueryCost")),
                maximum_available=float(ts["maximumAvailable"]),
                currently_available=float(ts["currentlyAvailable"]),
                restore_rate=float(ts["restoreRate"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True)
class BudgetConfig:
    reserve_fraction: float = 0.05  # of maximumAvailable, kept back for what the model can't see
    min_reserve: float = 10.0
    max_request_cost: float = 1000.0  # Shopify's single-query cap (all plans), not a plan limit
    max_items: int = 250  # Shopify's input array cap
    probe_items: int = 25  # batch size before the first cost report of a shop
    probe_wait: float = 1.0  # wait while the first (probe) call is still unanswered
    history: int = 32  # cost observations kept for the estimate


@dataclass
class ShopBudget:
    """Budget of one shop (Shopify meters per app+shop, so shops are independent)."""

    config: BudgetConfig = field(default_factory=BudgetConfig)
    maximum: float | None = None
    restore_rate: float | None = None
    available_at_t0: float = 0.0
    t0: float = 0.0
    outstanding: dict[int, float] = field(default_factory=dict)  # ticket -> requested estimate
    observations: deque[tuple[int, float]] = field(default_factory=deque)
    _next_ticket: int = 0

    @property
    def known(self) -> bool:
        return self.maximum is not None and self.restore_rate is not None

    def reserve_points(self) -> float:
        if self.maximum is None:
            return self.config.min_reserve
        return max(self.config.min_reserve, self.config.reserve_fraction * self.maximum)

    def available(self, now: float) -> float:
        """Modeled points available now, after in-flight calls' requested costs."""
        if not self.known:
            return math.inf
        assert self.maximum is not None and self.restore_rate is not None
        refilled = self.available_at_t0 + self.restore_rate * max(0.0, now - self.t0)
        return min(self.maximum, refilled) - sum(self.outstanding.values())

    def fill(self, now: float) -> float:
        """Modeled fraction of the bucket available now (1.0 while the limits are unknown)."""
        if not self.known:
            return 1.0
        assert self.maximum is not None
        return max(0.0, self.available(now)) / self.maximum

    def estimate_cost(self, items: int) -> float:
        """Upper bound of the requested cost of a call with ``items`` quantities."""
        if not self.observations:
            return 0.0  # probe mode: the first response teaches us the cost
        return min(c if items <= n else c * items / n for n, c in self.observations)

    def max_items(self, now: float, *, when_full: bool = False) -> int:
        """Largest batch affordable now (or, with ``when_full``, once the bucket is full)."""
        if not self.observations:
            return self.config.probe_items if not self.outstanding else 0
        assert self.maximum is not None
        room = (self.maximum if when_full else self.available(now)) - self.reserve_points()
        room = min(room, self.config.max_request_cost)
        lo, hi = 0, self.config.max_items
        while lo < hi:  # estimate_cost is non-decreasing in items: binary search
            mid = (lo + hi + 1) // 2
            if self.estimate_cost(mid) <= room:
                lo = mid
            else:
                hi = mid - 1
        if lo == 0 and when_full and room > 0:
            # Even a full bucket cannot hold the smallest bound (Shopify lowered its limit below
            # every batch measured so far): extrapolate downwards and measure.
            lo = max(1, min(self.config.max_items, self._guess_items(room)))
        return lo

    def _guess_items(self, room: float) -> int:
        """Items that should cost at most ``room``, below every measured batch size.

        With two measured sizes, fit cost = a + b·n through the two smallest (exact for a linear
        cost, so a THROTTLED guess is followed by a fitting one); with one, assume cost ∝ items.
        """
        smallest: dict[int, float] = {}
        for n, c in self.observations:
            smallest[n] = max(c, smallest.get(n, 0.0))
        sizes = sorted(smallest)
        if len(sizes) >= 2:
            (n1, c1), (n2, c2) = (sizes[0], smallest[sizes[0]]), (sizes[1], smallest[sizes[1]])
            b = max(0.0, (c2 - c1) / (n2 - n1))
            a = max(0.0, c1 - b * n1)
            if b > 0:
                return math.floor((room - a) / b)
            return self.config.max_items if a <= room else 1
        n, c = sizes[0], smallest[sizes[0]]
        return math.floor(n * room / c) if c > 0 else 1

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds to wait before sending a call of estimated ``cost`` (0 = send now)."""
        if not self.known:
            # Nothing measured yet: one probe call at a time, its response teaches us the bucket.
            return 0.0 if not self.outstanding else self.config.probe_wait
        assert self.restore_rate is not None and self.maximum is not None
        need = cost + self.reserve_points()
        if need > self.maximum - sum(self.outstanding.values()):
            # Not affordable even with a full bucket (only a guessed batch size, see max_items):
            # wait for answers in flight, else for a full bucket, then measure.
            if self.outstanding:
                return self.config.probe_wait
            full_in = (self.maximum - self.available(now)) / self.restore_rate
            return max(0.0, full_in) if self.restore_rate > 0 else self.config.probe_wait
        short = need - self.available(now)
        if short <= 0:
            return 0.0
        if self.restore_rate <= 0:
            return self.config.probe_wait  # no refill reported: poll; a response will update us
        return short / self.restore_rate

    def reserve(self, cost: float, now: float) -> int:
        """Record a call being sent with estimated requested ``cost``; returns a ticket."""
        self._next_ticket += 1
        self.outstanding[self._next_ticket] = cost
        return self._next_ticket

    def observe(
        self, ticket: int | None, report: CostReport | None, items: int, now: float
    ) -> None:
        """Feed a response's cost report (success, user errors or THROTTLED alike)."""
        if ticket is not None:
            self.outstanding.pop(ticket, None)
        if report is None:
            return
        self.maximum = report.maximum_available
        self.restore_rate = report.restore_rate
        # Shopify may lower the maximum at run time; clamp in case a report lags the new limit.
        self.available_at_t0 = min(report.currently_available, report.maximum_available)
        self.t0 = now
        if report.requested is not None and items > 0:
            self.observations.append((items, report.requested))
            while len(self.observations) > self.config.history:
                self.observations.popleft()

    def lost(self, ticket: int, now: float) -> None:
        """No response (timeout, reset): assume the call was charged in full and not refunded."""
        if ticket not in self.outstanding:
            return
        if not self.known:
            self.outstanding.pop(ticket)
            return
        current = self.available(now)  # still counts this ticket as spent
        self.outstanding.pop(ticket)
        self.available_at_t0 = current + sum(self.outstanding.values())
        self.t0 = now


def pace_delay(requested: float, available: float, restore_rate: float,
               reserve: float = 0.0) -> float:
    """Seconds to wait before a call of ``requested`` points fits the bucket (leaky bucket)."""
    missing = requested + reserve - available
    if missing <= 0:
        return 0.0
    return missing / max(restore_rate, 1e-9)
