"""Where the worker's handlers write: an ``Emitter`` (topic role, key, value) and dead letters.

``FaustEmitter`` sends to the app's faust topics; tests use an in-memory one
(``tests/support/emitter.py``) to run the handlers without Kafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Literal, Protocol

import faust
from faust.types import Message

from agents.guard import RecordGuard

# The topics the worker writes, by role (``WorkerSettings.topics`` names them).
Role = Literal["movements", "push", "unmapped", "low_stock", "history", "kit_components"]
ROLES: tuple[Role, ...] = ("movements", "push", "unmapped", "low_stock", "history",
                           "kit_components")


class Emitter(Protocol):
    """The worker's writes. ``send`` returns the send's awaitable (await it): no coroutine of
    its own per record on the hot path."""

    def send(self, role: Role, key: bytes | None, value: bytes) -> Awaitable[Any]:
        """Send ``value`` with ``key`` to the topic of ``role``."""
        ...

    async def dead_letter(self, reason: str, detail: str, msg: Message,
                          extra: dict[str, Any] | None = None) -> None:
        """Dead-letter ``msg`` (the input record being processed) with ``reason``."""
        ...


class FaustEmitter:
    """The worker's ``Emitter``: faust topics (raw keys and values) and the record guard's
    dead-letter send (bounded, retried until Kafka takes it)."""

    def __init__(self, topics: Mapping[Role, faust.TopicT], guard: RecordGuard) -> None:
        missing = set(ROLES) - set(topics)
        if missing:
            raise ValueError(f"no topic for {sorted(missing)}")
        self.topics = dict(topics)
        self.guard = guard

    def send(self, role: Role, key: bytes | None, value: bytes) -> Awaitable[Any]:
        return self.topics[role].send(key=key, value=value)

    async def dead_letter(self, reason: str, detail: str, msg: Message,
                          extra: dict[str, Any] | None = None) -> None:
        await self.guard.send(reason, detail, msg, extra=extra)
