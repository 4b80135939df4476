"""Idempotency-key store for ``@idempotent(key:)`` mutations (pure; time passed in)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Claim(enum.Enum):
    NEW = "new"
    REPLAY = "replay"
    MISMATCH = "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    IN_FLIGHT = "IDEMPOTENCY_CONCURRENT_REQUEST"
    FAILED = "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"


@dataclass
class _Entry:
    fingerprint: str
    created: float
    done: bool = False
    failed: bool = False
    result: Any = None


class IdempotencyStore:
    """Keys are scoped per (shop, key), kept ``ttl`` seconds (Shopify's window is unknown)."""

    def __init__(self, ttl: float = 24 * 3600.0) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], _Entry] = {}

    def claim(self, shop: str, key: str, fingerprint: str, now: float) -> tuple[Claim, Any]:
        """Register an attempt; says whether to run it, replay a stored result, or refuse."""
        entry = self._entries.get((shop, key))
        if entry is not None and now - entry.created > self.ttl:
            entry = None
        if entry is None:
            self._entries[(shop, key)] = _Entry(fingerprint, now)
            return Claim.NEW, None
        if entry.fingerprint != fingerprint:
            return Claim.MISMATCH, None
        if not entry.done:
            return Claim.IN_FLIGHT, None
        if entry.failed:
            return Claim.FAILED, None
        return Claim.REPLAY, entry.result

    def complete(self, shop: str, key: str, result: Any) -> None:
        entry = self._entries[(shop, key)]
        entry.done, entry.result = True, result

    def fail(self, shop: str, key: str) -> None:
        """The attempt crashed: later retries with this key get PREVIOUS_ATTEMPT_FAILED."""
        entry = self._entries[(shop, key)]
        entry.done, entry.failed = True, True

    def __len__(self) -> int:
        return len(self._entries)
