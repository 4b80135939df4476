"""An in-memory ``Emitter`` (``agents/emitter.py``): the worker's handlers without Kafka."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from faust.types import Message

from agents.emitter import Role


@dataclass
class MemoryEmitter:
    """Keeps what was sent, per topic role, and the dead letters, in order."""

    sent: list[tuple[Role, bytes | None, bytes]] = field(default_factory=list)
    dead_letters: list[tuple[str, str, Message, dict[str, Any] | None]] = field(
        default_factory=list)

    async def send(self, role: Role, key: bytes | None, value: bytes) -> None:
        self.sent.append((role, key, value))

    async def dead_letter(self, reason: str, detail: str, msg: Message,
                          extra: dict[str, Any] | None = None) -> None:
        self.dead_letters.append((reason, detail, msg, extra))

    def records(self, role: Role) -> list[tuple[bytes | None, Any]]:
        """(key, decoded JSON value) of what was sent to ``role``."""
        return [(key, json.loads(value)) for r, key, value in self.sent if r == role]
