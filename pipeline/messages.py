"""Records that cross service boundaries on Kafka (besides source events, see ``schemas/``).

Each record is a frozen dataclass with ``to_json()``/``from_json()`` so producers and consumers
share one definition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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

    @staticmethod
    def encode_original(raw: bytes) -> tuple[str, str]:
        import base64

        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii"), "base64"
