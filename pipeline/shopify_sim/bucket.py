"""Cost-based leaky bucket, one per (app token, shop), as Shopify's GraphQL Admin API uses.

Pure logic: time is passed in, so tests can drive the arithmetic without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

# (bucket size, restore rate per second). Sizes are 20 x restore rate as observed in real
# responses; the enterprise size is an extrapolation (see docs/shopify-simulator.md).
PLANS: dict[str, tuple[float, float]] = {
    "standard": (2000.0, 100.0),
    "advanced": (4000.0, 200.0),
    "plus": (20000.0, 1000.0),
    "enterprise": (40000.0, 2000.0),
}

SINGLE_QUERY_MAX_COST = 1000


@dataclass
class LeakyBucket:
    """Points available to spend; refills continuously at ``restore_rate`` up to ``capacity``."""

    capacity: float
    restore_rate: float
    available: float
    updated_at: float

    @classmethod
    def full(cls, capacity: float, restore_rate: float, now: float) -> LeakyBucket:
        return cls(capacity, restore_rate, capacity, now)

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated_at)
        self.available = min(self.capacity, self.available + elapsed * self.restore_rate)
        self.updated_at = now

    def try_charge(self, cost: int, now: float) -> bool:
        """Take ``cost`` points up front if the bucket holds them; False (nothing taken) if not."""
        self.refill(now)
        if cost > self.available:
            return False
        self.available -= cost
        return True

    def refund(self, points: int, now: float) -> None:
        """Give back the difference between requested and actual cost."""
        self.refill(now)
        self.available = min(self.capacity, self.available + max(0, points))

    def reconfigure(self, capacity: float, restore_rate: float, now: float) -> None:
        """Change the limits at run time; the current level is clipped to the new capacity."""
        self.refill(now)
        self.capacity = capacity
        self.restore_rate = restore_rate
        self.available = min(self.available, capacity)

    def seconds_until(self, cost: int, now: float) -> float:
        """How long until ``cost`` points are available (0 if they already are)."""
        self.refill(now)
        missing = cost - self.available
        return 0.0 if missing <= 0 else missing / self.restore_rate

    def status(self, now: float) -> dict[str, float | int]:
        """The ``throttleStatus`` object: floats for the limits, an int for what is available."""
        self.refill(now)
        return {
            "maximumAvailable": float(self.capacity),
            "currentlyAvailable": int(self.available),
            "restoreRate": float(self.restore_rate),
        }
