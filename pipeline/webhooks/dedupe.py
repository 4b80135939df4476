"""Bounded, expiring memory of webhook event ids already published (``X-Shopify-Event-Id``),
plus the ids being published right now (claims), so racing deliveries publish once."""

from __future__ import annotations

import asyncio
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
        self._claims: dict[str, asyncio.Future[bool]] = {}  # id -> outcome of its publish

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

    def claim(self, event_id: str, now: float) -> asyncio.Future[bool] | None:
        """Claim ``event_id`` for publishing. None: the caller owns it and must call
        ``confirm`` (published) or ``release`` (failed). Otherwise a future that another
        delivery's outcome settles: True once that one published, False if it failed.
        A seen id answers a done future (True) at once."""
        if self.seen(event_id, now):
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            done.set_result(True)
            return done
        owner = self._claims.get(event_id)
        if owner is not None:
            return asyncio.shield(owner)
        self._claims[event_id] = asyncio.get_running_loop().create_future()
        return None

    def confirm(self, event_id: str, now: float) -> None:
        """The claimed id was published: remember it and tell the deliveries waiting on it."""
        self.remember(event_id, now)
        fut = self._claims.pop(event_id, None)
        if fut is not None and not fut.done():
            fut.set_result(True)

    def release(self, event_id: str) -> None:
        """The claimed id was not published: forget the claim so a retry can publish it."""
        fut = self._claims.pop(event_id, None)
        if fut is not None and not fut.done():
            fut.set_result(False)

    def _expire(self, now: float) -> None:
        cutoff = now - self.ttl_s
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at > cutoff:
                break
            del self._seen[oldest]
