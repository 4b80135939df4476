"""Classify a Shopify response to an ``inventorySetQuantities`` call into what the sink does next.

The call is atomic: if any quantity has a user error, none is applied. So per-item problems split
the batch into items to dead-letter (permanent), items for the compare-and-set path (stale) and
items to retry in a new batch (everything else; new content → new idempotency key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.shopify.backoff import parse_retry_after
from pipeline.shopify.budget import CostReport

STALE = "CHANGE_FROM_QUANTITY_STALE"
CONCURRENT = "IDEMPOTENCY_CONCURRENT_REQUEST"
KEY_MISMATCH = "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
PREVIOUS_FAILED = "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"
# Wrong data for one item: retrying cannot help; dead-letter the item with Shopify's answer.
PERMANENT_ITEM_CODES = frozenset(
    {
        "INVALID_INVENTORY_ITEM",
        "INVALID_LOCATION",
        "ITEM_NOT_STOCKED_AT_LOCATION",
        "INVALID_QUANTITY_NEGATIVE",
        "INVALID_QUANTITY_TOO_HIGH",
        "INVALID_QUANTITY_TOO_LOW",
        "NON_MUTABLE_INVENTORY_ITEM",
    }
)
TRANSIENT_GRAPHQL_CODES = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"})


@dataclass(frozen=True)
class ItemError:
    index: int  # into BatchRequest.items
    code: str
    message: str
    field: tuple[str, ...] | None


@dataclass(frozen=True)
class Applied:
    """Every item was applied; Shopify's level is now each item's quantity."""

    adjustment_group_id: str | None
    cost: CostReport | None


@dataclass(frozen=True)
class Throttled:
    """THROTTLED (HTTP 200): retry the same request once the budget allows."""

    cost: CostReport | None


@dataclass(frozen=True)
class Transient:
    """Network/5xx/429: retry the same request (same key) after backoff."""

    reason: str
    retry_after: float | None = None
    cost: CostReport | None = None


@dataclass(frozen=True)
class Rejected:
    """Per-item user errors; nothing was applied."""

    dead: tuple[ItemError, ...]  # dead-letter these items
    stale: tuple[int, ...]  # read Shopify's level for these, then compare-and-set
    retry: tuple[int, ...]  # innocent bystanders: back to pending, new batch
    cost: CostReport | None


@dataclass(frozen=True)
class RetrySameKey:
    """``IDEMPOTENCY_CONCURRENT_REQUEST``: the first attempt is still running."""

    cost: CostReport | None


@dataclass(frozen=True)
class RetryNewKey:
    """``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED``: Shopify wants the same content under a new key."""

    cost: CostReport | None


@dataclass(frozen=True)
class Split:
    """A problem that cannot be pinned to an item (or a cost cap): retry the halves separately."""

    reason: str
    cost: CostReport | None


@dataclass(frozen=True)
class BatchBug:
    """Tally sent something inconsistent (e.g. key reused with other content): dead-letter all."""

    code: str
    detail: str
    cost: CostReport | None


@dataclass(frozen=True)
class Halt:
    """Stop this shop and alert (auth, scope, wrong version, bad request): not the data's fault."""

    reason: str
    detail: str


Outcome = (
    Applied
    | Throttled
    | Transient
    | Rejected
    | RetrySameKey
    | RetryNewKey
    | Split
    | BatchBug
    | Halt
)


def classify_transport_error(kind: str) -> Transient:
    """Timeout, connection reset…: the call may or may not have run; retry with the same key."""
    return Transient(reason=f"transport:{kind}")


def item_index(field: Any) -> int | None:
    """``["input","quantities","3","changeFromQuantity"]`` → 3."""
    if not isinstance(field, list):
        return None
    for i, part in enumerate(field[:-1]):
        if part == "quantities":
            try:
                return int(field[i + 1])
            except (TypeError, ValueError):
                return None
    return None


def classify(
    status: int,
    body: dict[str, Any] | None,
    headers: Mapping[str, str] | None,
    n_items: int,
) -> Outcome:
    """Classify one HTTP response to a batch of ``n_items`` quantities."""
    cost = CostReport.from_extensions(body)
    retry_after = parse_retry_after(headers)
    if status == 429:
        return Transient("http_429", retry_after, cost)
    if status >= 500:
        return Transient(f"http_{status}", retry_after, cost)
    if status in (401, 403):
        return Halt("auth", f"HTTP {status}: check the access token and write_inventory scope")
    if status != 200:
        return Halt("http", f"HTTP {status}: {str(body)[:500]}")
    if not isinstance(body, dict):
        return Transient("unparseable_body", retry_after, cost)  # e.g. a proxy's HTML page

    errors = body.get("errors") or []
    if errors:
        codes = {(e.get("extensions") or {}).get("code") for e in errors if isinstance(e, dict)}
        if "THROTTLED" in codes:
            return Throttled(cost)
        if codes & TRANSIENT_GRAPHQL_CODES:
            return Transient("graphql_" + "_".join(sorted(c for c in codes if c)), None, cost)
        if "MAX_COST_EXCEEDED" in codes and n_items > 1:
            return Split("MAX_COST_EXCEEDED", cost)
        return Halt("graphql_errors", str(errors)[:1000])

    payload = (body.get("data") or {}).get("inventorySetQuantities")
    if not isinstance(payload, dict):
        return Halt("no_payload", str(body)[:1000])
    user_errors = payload.get("userErrors") or []
    if not user_errors:
        group = payload.get("inventoryAdjustmentGroup") or {}
        return Applied(group.get("id") if isinstance(group, dict) else None, cost)
    return _classify_user_errors(user_errors, n_items, cost)


def _classify_user_errors(
    user_errors: list[dict[str, Any]], n_items: int, cost: CostReport | None
) -> Outcome:
    codes = {e.get("code") for e in user_errors}
    if KEY_MISMATCH in codes:
        return BatchBug(KEY_MISMATCH, str(user_errors)[:1000], cost)
    if CONCURRENT in codes:
        return RetrySameKey(cost)
    if PREVIOUS_FAILED in codes:
        return RetryNewKey(cost)

    dead: dict[int, ItemError] = {}
    stale: set[int] = set()
    for err in user_errors:
        code = str(err.get("code"))
        raw_field = err.get("field")
        idx = item_index(raw_field)
        if idx is not None and not 0 <= idx < n_items:
            idx = None
        if idx is None and n_items == 1:
            idx = 0  # a one-item batch: it can only be that item
        if code == STALE:
            if idx is None:
                stale.update(range(n_items))  # unknown which: reading every level is safe
            else:
                stale.add(idx)
        elif code in PERMANENT_ITEM_CODES:
            if idx is None:
                return Split(f"unmapped {code}", cost)  # bisect until the bad item stands alone
            dead.setdefault(
                idx,
                ItemError(
                    idx,
                    code,
                    str(err.get("message", "")),
                    tuple(map(str, raw_field)) if isinstance(raw_field, list) else None,
                ),
            )
        else:
            # INVALID_REASON, INVALID_NAME, INVALID_REFERENCE_DOCUMENT, duplicates…: Tally's bug or
            # configuration, the same for every batch; dead-lettering data would hide it.
            return Halt(f"user_error:{code}", str(user_errors)[:1000])
    stale -= dead.keys()
    retry = tuple(i for i in range(n_items) if i not in dead and i not in stale)
    return Rejected(tuple(dead[i] for i in sorted(dead)), tuple(sorted(stale)), retry, cost)
