"""Records that cross service boundaries on Kafka (besides source events, see ``schemas/``).

Each record is a frozen dataclass with ``to_json()``/``from_json()`` so producers and consumers
share one definition.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Self


class _JsonRecord:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(**data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        return cls.from_dict(json.loads(raw))


@dataclass(frozen=True)
class ShopifyPush(_JsonRecord):
    """The ATS Shopify should show for one inventory item at one location.

    Keyed on the push topic by ``push_key(shop, inventory_item_id, location_id)``. A consumer keeps
    only the highest ``ledger_version`` per key; lower or equal versions are superseded duplicates.
    """

    shop: str
    inventory_item_id: str  # gid://shopify/InventoryItem/…
    location_id: str  # gid://shopify/Location/…
    sku: str
    branch: str
    available: int
    ledger_version: int
    oldest_event_at: float  # epoch seconds of the oldest source event not yet published
    emitted_at: float
    breakdown: dict[str, int] = field(default_factory=dict)
    correlation_id: str = ""

    @property
    def key(self) -> str:
        return push_key(self.shop, self.inventory_item_id, self.location_id)


def push_key(shop: str, inventory_item_id: str, location_id: str) -> str:
    return f"{shop}|{inventory_item_id}|{location_id}"


@dataclass(frozen=True)
class ShopifyAck(_JsonRecord):
    """Shopify acknowledged ``available`` for a key (written by the sink to the acks topic)."""

    shop: str
    inventory_item_id: str
    location_id: str
    available: int
    ledger_version: int
    acknowledged_at: float
    idempotency_key: str = ""


# A dead letter is at most this many bytes (key included), under the DLQ topic's message limit
# (Kafka's default max.message.bytes is 1,048,588; producers refuse requests over 1 MB). A bigger
# original is cut to ``DEAD_LETTER_PREFIX_BYTES``; its length, SHA-256 and source topic, partition
# and offset still lead to the whole of it while the source retains it (``tally dlq show``).
DEAD_LETTER_MAX_BYTES = 900_000
DEAD_LETTER_PREFIX_BYTES = 64 * 1024
DEAD_LETTER_MAX_KEY_BYTES = 4096
_DETAIL_MAX = 2000


@dataclass(frozen=True)
class DeadLetter(_JsonRecord):
    """Something Tally could not use, kept with its reason so nothing is silently dropped."""

    reason: str  # short machine-readable code, e.g. "schema_violation", "unknown_location"
    detail: str  # human-readable explanation
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    original: str  # the original bytes, base64 when not valid UTF-8 (see ``original_encoding``)
    original_encoding: str = "utf-8"  # "utf-8" or "base64"
    service: str = "worker"
    at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    original_length: int | None = None  # bytes in the original record's value
    original_sha256: str = ""  # of the whole original value
    truncated: bool = False  # ``original`` is only its first DEAD_LETTER_PREFIX_BYTES

    @classmethod
    def of_record(cls, *, reason: str, detail: str, topic: str, partition: int | None,
                  offset: int | None, value: bytes | None, service: str, at: float,
                  extra: dict[str, Any] | None = None) -> DeadLetter:
        """A letter for one record that always fits ``DEAD_LETTER_MAX_BYTES``: the original
        whole when it fits, else its prefix (``truncated``); never escaped to many times its
        size (text that JSON would escape heavily is kept as base64)."""
        raw = bytes(value or b"")
        letter = cls(
            reason=reason, detail=detail[:_DETAIL_MAX], source_topic=topic,
            source_partition=partition, source_offset=offset, original="", service=service,
            at=at, extra=dict(extra or {}), original_length=len(raw),
            original_sha256=hashlib.sha256(raw).hexdigest(),
        )
        original, encoding = cls.encode_original(raw)
        whole = replace(letter, original=original, original_encoding=encoding)
        if len(whole.to_json()) <= DEAD_LETTER_MAX_BYTES - DEAD_LETTER_MAX_KEY_BYTES:
            return whole
        original, encoding = cls.encode_original(_prefix(raw, DEAD_LETTER_PREFIX_BYTES))
        return replace(letter, original=original, original_encoding=encoding, truncated=True)

    def original_bytes(self) -> bytes:
        """The original value (its prefix when ``truncated``)."""
        if self.original_encoding == "base64":
            return base64.b64decode(self.original)
        return self.original.encode("utf-8", "surrogateescape")

    def to_json(self) -> bytes:
        # Unescaped UTF-8: \uXXXX escapes would triple the size of non-ASCII text.
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True,
                          ensure_ascii=False).encode("utf-8", "backslashreplace")

    @staticmethod
    def encode_original(raw: bytes) -> tuple[str, str]:
        """(text, "utf-8") for UTF-8 that JSON escapes little; (base64, "base64") otherwise."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii"), "base64"
        # JSON escapes a quote or backslash in 2 bytes and a control byte in 6; base64 is 4/3.
        grown = sum(5 if ch < " " else 1 for ch in text if ch < " " or ch in '"\\\\')
        if grown * 3 > len(raw):
            return base64.b64encode(raw).decode("ascii"), "base64"
        return text, "utf-8"


def _prefix(raw: bytes, size: int) -> bytes:
    """``raw[:size]``, shortened by up to 3 bytes so that UTF-8 text is not cut mid-character."""
    for cut in range(size, max(0, size - 4), -1):
        try:
            raw[:cut].decode("utf-8")
            return raw[:cut]
        except UnicodeDecodeError:
            continue
    return raw[:size]
