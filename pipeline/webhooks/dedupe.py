"""Bounded, expiring memory of webhook event ids already published (``X-Shopify-Event-Id``)."""

from __future__ import annotations

from collections import OrderedDict


class SeenEvents:
    """Event ids seen in the last ``ttl_s`` seconds, at most ``max_entries`` (oldest dropped).

    This is the cheap first line: it spares Kafka and the ledger most of Shopify's duplicate
    deliveries. It is not durable; the ledger's own (source, transaction, line) marks are what
    make a duplicate that slips through (restart, eviction) harmless.
    """

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max(1, max_entries)
        self._seen: OrderedDict[str, float] = OrderedDict()  # id -> first seen, oldest first

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, event_id: str, now: float) -> bool:
        self._expire(now)
        return event_id in self._seen

    def remember(self, event_id: str, now: float) -> None:
        self._expire(now)
        if event_id in self._seen:
            return
        self._seen[event_id] = now
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def _expire(self, now: float) -> None:
        cutoff = now - self.ttl_s
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at > cutoff:
                break
            del self._seen[oldest]
