"""Backoff for transient failures: exponential, full jitter, capped, honouring Retry-After."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """``delay(attempt)`` = uniform(0, min(cap, base·2^attempt)), but never before Retry-After.

    Full jitter spreads retries of many shops/workers apart; the random source is injectable so
    tests are deterministic.
    """

    base: float = 0.5
    cap: float = 60.0
    max_retry_after: float = 300.0  # distrust absurd Retry-After values
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * float(2 ** min(attempt, 62)))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        jittered = self.rand() * self.ceiling(attempt)
        if retry_after is None:
            return jittered
        return max(jittered, min(max(0.0, retry_after), self.max_retry_after))


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a ``Retry-After`` header (integer or float string); None if absent/invalid.

    HTTP-date values are not produced by Shopify; they are ignored (backoff applies instead).
    """
    if not headers:
        return None
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                seconds = float(value.strip())
            except (ValueError, AttributeError):
                return None
            return seconds if seconds >= 0 else None
    return None
