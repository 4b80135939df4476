"""Build ``inventorySetQuantities`` calls (the Admin API version of ``pipeline.shopify.shops``) with
content-derived idempotency keys.

Key derivation: SHA-256 over the shop, the salt and the *sorted* item tuples
(key, ledger_version, quantity, changeFromQuantity, compare-and-set round), shaped as a UUID (the
form Shopify recommends). Consequences:

- a retry of the same batch, even after a crash that re-reads and re-batches the same records,
  sends the same key, so Shopify applies it at most once;
- any different content yields a different key, so a new batch never collides with an old one.
  ``ledger_version`` only grows, and ``round`` grows on every level read, so even a later push of
  the same quantity from the same level (A→X, X→A, A→X) gets a fresh key;
- ``salt`` is bumped only on ``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED`` (Shopify demands a new key).

Batch composition is a pure function of the pending set: entries are ordered by the record
contents (oldest_event_at, key), never by arrival time, and the first ``n`` are taken; within the
call quantities are sorted by key, so ``quantities[i]`` always maps back to ``items[i]``.
Correctness does not depend on this determinism: if a crash changes the composition, the
compare-and-set guard turns an already-applied item into a CHANGE_FROM_QUANTITY_STALE that
resolves to a no-op; determinism just saves that round trip.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

MAX_QUANTITIES = 250  # Shopify's input array cap
QUANTITY_NAME = "available"
DEFAULT_REASON = "correction"  # one of Shopify's accepted reasons (INVALID_REASON otherwise)

SET_QUANTITIES_MUTATION = """\
mutation TallySetAvailable($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}
"""


@dataclass(frozen=True)
class BatchItem:
    """One quantity in a call. ``change_from`` is always a number (see compare_and_set)."""

    key: str  # push_key(shop, item, location)
    inventory_item_id: str
    location_id: str
    quantity: int
    change_from: int
    ledger_version: int
    round: int = 0

    def fingerprint(self) -> tuple[str, int, int, int, int]:
        return (self.key, self.ledger_version, self.quantity, self.change_from, self.round)

    def to_input(self) -> dict[str, Any]:
        return {
            "inventoryItemId": self.inventory_item_id,
            "locationId": self.location_id,
            "quantity": self.quantity,
            "changeFromQuantity": self.change_from,
        }


@dataclass(frozen=True)
class BatchRequest:
    """A ready-to-send GraphQL call; POST ``{"query": query, "variables": variables}``."""

    shop: str
    idempotency_key: str
    items: tuple[BatchItem, ...]  # same order as input.quantities
    query: str
    variables: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {"query": self.query, "variables": self.variables}


def idempotency_key(
    shop: str, items: list[BatchItem] | tuple[BatchItem, ...], salt: int = 0
) -> str:
    """Content-derived key: same shop+items+salt → same key, anything else → another key."""
    canonical = json.dumps(
        [shop, salt, sorted(i.fingerprint() for i in items)], separators=(",", ":")
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def build_request(
    shop: str,
    items: list[BatchItem] | tuple[BatchItem, ...],
    *,
    salt: int = 0,
    reason: str = DEFAULT_REASON,
    reference_scheme: str = "logistics://tally/push",
) -> BatchRequest:
    """The mutation document + variables for up to 250 items of one shop."""
    if not items:
        raise ValueError("a batch needs at least one item")
    if len(items) > MAX_QUANTITIES:
        raise ValueError(f"{len(items)} items exceed Shopify's {MAX_QUANTITIES}-item input cap")
    ordered = tuple(sorted(items, key=lambda i: i.key))
    if len({i.key for i in ordered}) != len(ordered):
        # Shopify rejects duplicate item/location pairs; coalescing must have prevented this.
        raise ValueError("duplicate keys in one batch")
    key = idempotency_key(shop, ordered, salt)
    variables = {
        "idempotencyKey": key,
        "input": {
            "name": QUANTITY_NAME,
            "reason": reason,
            "referenceDocumentUri": f"{reference_scheme}/{key}",
            "quantities": [i.to_input() for i in ordered],
        },
    }
    return BatchRequest(shop, key, ordered, SET_QUANTITIES_MUTATION, variables)
