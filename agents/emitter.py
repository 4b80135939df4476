"""Where the worker's handlers write: an ``Emitter`` (topic role, key, value) and dead letters.

``FaustEmitter`` sends to the app's faust topics, and the roles no agent of the worker reads back
(``DIRECT_ROLES``) through the C-backed ``DirectProducer`` (``agents/direct_producer.py``) when it
has one; tests use an in-memory one (``tests/support/emitter.py``) to run the handlers without
Kafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Literal, Protocol

import faust
from faust.types import Message

from agents.direct_producer import DirectProducer
from agents.guard import RecordGuard

# The topics the worker writes, by role (``WorkerSettings.topics`` names them).
Role = Literal["movements", "push", "unmapped", "low_stock", "history", "kit_components"]
ROLES: tuple[Role, ...] = ("movements", "push", "unmapped", "low_stock", "history",
                           "kit_components")
# Written for others (the sink, operators): no agent of the worker reads them back, so they may
# go through the C-backed producer. Movements and kit components stay on faust's.
DIRECT_ROLES: tuple[Role, ...] = ("push", "unmapped", "low_stock", "history")


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
    """The worker's ``Emitter``: faust topics (raw keys and values), or ``direct`` for
    ``DIRECT_ROLES`` when given, and the record guard's dead-letter send (bounded, retried
    until Kafka takes it)."""

    def __init__(self, topics: Mapping[Role, faust.TopicT], guard: RecordGuard,
                 direct: DirectProducer | None = None) -> None:
        missing = set(ROLES) - set(topics)
        if missing:
            raise ValueError(f"no topic for {sorted(missing)}")
        self.topics = dict(topics)
        self.guard = guard
        self.direct = direct
        # One callable per role, chosen once: the hot path only looks it up.
        self._send: dict[Role, Callable[[bytes | None, bytes], Awaitable[Any]]] = {
            role: (partial(direct.send, topic.get_topic_name())
                   if direct is not None and role in DIRECT_ROLES else partial(_faust_send, topic))
            for role, topic in self.topics.items()}

    def send(self, role: Role, key: bytes | None, value: bytes) -> Awaitable[Any]:
        return self._send[role](key, value)

    async def dead_letter(self, reason: str, detail: str, msg: Message,
                          extra: dict[str, Any] | None = None) -> None:
        await self.guard.send(reason, detail, msg, extra=extra)


def _faust_send(topic: faust.TopicT, key: bytes | None, value: bytes) -> Awaitable[Any]:
    return topic.send(key=key, value=value)
