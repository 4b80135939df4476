"""Pure inventory mutation logic: validation to Shopify user error codes, then atomic apply."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.shopify_sim.state import (
    ON_HAND_PARTS,
    InventoryItem,
    Level,
    Location,
    Shop,
    next_id,
    now_iso,
    parse_gid,
)

# The documented "possible reasons" (§3.3 of the reference notes).
REASONS = frozenset({
    "correction", "cycle_count_available", "damaged", "movement_created", "movement_updated",
    "movement_received", "movement_canceled", "other", "promotion", "quality_control", "received",
    "reservation_created", "reservation_deleted", "reservation_updated", "restock", "safety_stock",
    "shrinkage",
})
SET_NAMES = frozenset({"available", "on_hand"})
# committed is only moved by orders; it is never adjustable through the Admin API.
ADJUST_NAMES = frozenset({
    "available", "on_hand", "reserved", "damaged", "safety_stock", "quality_control", "incoming",
})
SET_LIMIT = 1_000_000_000
ADJUST_LIMIT = 2_000_000_000

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://\S+$")
_GID = re.compile(r"^gid://[^/\s]+/[^/\s]+/[^/\s]+$")

MESSAGES = {
    "CHANGE_FROM_QUANTITY_STALE": "The changeFromQuantity value does not match persisted value.",
    "COMPARE_QUANTITY_REQUIRED": "The compareQuantity argument must be given to each quantity or "
    "ignored using ignoreCompareQuantity.",
    "COMPARE_QUANTITY_STALE": "The compareQuantity value does not match persisted value.",
    "IDEMPOTENCY_CONCURRENT_REQUEST": "This request is currently in progress, please try again.",
    "IDEMPOTENCY_KEY_PARAMETER_MISMATCH": "The same idempotency key cannot be used with different "
    "operation parameters.",
    "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED": "A previous request with this idempotency key failed. "
    "Retry with a new idempotency key.",
    "INVALID_INVENTORY_ITEM": "The specified inventory item could not be found.",
    "INVALID_LOCATION": "The specified location could not be found.",
    "INVALID_NAME": "The quantity name must be either 'available' or 'on_hand'.",
    "INVALID_QUANTITY_NAME": "The specified quantity name is invalid.",
    "INVALID_QUANTITY_NEGATIVE": "The quantity can't be negative.",
    "INVALID_QUANTITY_TOO_HIGH": "The total quantity can't be higher than 1,000,000,000.",
    "INVALID_QUANTITY_TOO_LOW": "The total quantity can't be lower than -1,000,000,000.",
    "INVALID_REASON": "The specified reason is invalid.",
    "INVALID_REFERENCE_DOCUMENT": "The specified reference document is invalid.",
    "ITEM_NOT_STOCKED_AT_LOCATION": "The specified inventory item is not stocked at the location.",
    "NON_MUTABLE_INVENTORY_ITEM": "The specified inventory item is not allowed to be adjusted via "
    "API. Example: if the inventory item is a parent bundle.",
    "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR": "The combination of inventoryItemId and "
    "locationId must be unique.",
    "INTERNAL_LEDGER_DOCUMENT": "Internal (gid://shopify/) ledger documents are not allowed to be "
    "adjusted via API.",
    "INVALID_AVAILABLE_DOCUMENT": "A ledger document URI is not allowed when adjusting available.",
    "INVALID_LEDGER_DOCUMENT": "The specified ledger document is invalid.",
    "INVALID_QUANTITY_DOCUMENT": "A ledger document URI is required except when adjusting "
    "available.",
    "MAX_ONE_LEDGER_DOCUMENT": "All changes must have the same ledger document URI or, in the case "
    "of adjusting available, no ledger document URI.",
    "CHANGE_FROM_QUANTITY_REQUIRED": "changeFromQuantity is required from API version 2026-04: "
    "pass the expected current quantity, or null explicitly to opt out of the compare-and-swap "
    "check.",
}


def version_at_least(version: str, floor: str) -> bool:
    return version == "unstable" or version >= floor


@dataclass
class UserError:
    code: str | None
    field: list[str]
    message: str


def user_error(code: str, *path: str | int) -> UserError:
    """A user error with Shopify's documented message for ``code``."""
    # Omitting changeFromQuantity on 2026-04+ has no documented enum value: report code null.
    shown = None if code == "CHANGE_FROM_QUANTITY_REQUIRED" else code
    return UserError(shown, [str(p) for p in path], MESSAGES[code])


@dataclass
class Change:
    name: str
    delta: int
    quantity_after: int
    item: InventoryItem
    location: Location
    ledger_document_uri: str | None = None


@dataclass
class AdjustmentGroup:
    reason: str
    reference_document_uri: str | None
    changes: list[Change]
    id: int = field(default_factory=next_id)
    created_at: str = field(default_factory=now_iso)


@dataclass
class MutationOutcome:
    group: AdjustmentGroup | None
    errors: list[UserError]
    touched: list[Level]


def valid_reference(uri: Any) -> bool:
    if not isinstance(uri, str) or not _URI.match(uri):
        return False
    return not uri.startswith("gid://") or bool(_GID.match(uri))


def _resolve(shop: Shop, row: dict[str, Any], path: tuple[str | int, ...]
             ) -> tuple[Level | None, UserError | None]:
    item_id = parse_gid(row["inventoryItemId"], "InventoryItem")
    item = shop.items.get(item_id) if item_id is not None else None
    if item is None:
        return None, user_error("INVALID_INVENTORY_ITEM", *path, "inventoryItemId")
    loc_id = parse_gid(row["locationId"], "Location")
    loc = shop.locations.get(loc_id) if loc_id is not None else None
    if loc is None:
        return None, user_error("INVALID_LOCATION", *path, "locationId")
    if not item.mutable:
        return None, user_error("NON_MUTABLE_INVENTORY_ITEM", *path, "inventoryItemId")
    level = shop.levels.get((item.id, loc.id))
    if level is None:
        return None, user_error("ITEM_NOT_STOCKED_AT_LOCATION", *path, "locationId")
    return level, None


def _cas(row: dict[str, Any], level: Level, name: str, version: str,
         path: tuple[str | int, ...], ignore_compare: bool) -> UserError | None:
    """Compare-and-set per API version (see the version table in the docs)."""
    current = level.get(name)
    if "changeFromQuantity" in row:
        # Present, even as null, it overrides compareQuantity/ignoreCompareQuantity (2026-01+).
        expected = row["changeFromQuantity"]
        if expected is not None and expected != current:
            return user_error("CHANGE_FROM_QUANTITY_STALE", *path, "changeFromQuantity")
        return None
    if version_at_least(version, "2026-04"):
        return user_error("CHANGE_FROM_QUANTITY_REQUIRED", *path, "changeFromQuantity")
    if ignore_compare:
        return None
    if "compareQuantity" in row or not version_at_least(version, "2026-01"):
        expected = row.get("compareQuantity")
        if expected is None:
            return user_error("COMPARE_QUANTITY_REQUIRED", *path, "compareQuantity")
        if expected != current:
            return user_error("COMPARE_QUANTITY_STALE", *path, "compareQuantity")
        return None
    # 2026-01 with neither field: the old rule applies (compareQuantity required unless ignored).
    return user_error("COMPARE_QUANTITY_REQUIRED", *path, "compareQuantity")


def _apply(level: Level, name: str, delta: int, ledger: str | None = None) -> list[Change]:
    """Apply a delta to one named state and report every name whose value moved."""
    item, loc = level.item, level.location
    if name == "on_hand":
        # on_hand is derived; moving it moves available by the same amount.
        level.q["available"] += delta
        moved = ["on_hand", "available"]
    else:
        level.q[name] += delta
        moved = [name, "on_hand"] if name in ON_HAND_PARTS else [name]
    level.updated_at = now_iso()
    item.updated_at = level.updated_at
    return [Change(n, delta, level.get(n), item, loc, ledger) for n in moved]


def set_quantities(shop: Shop, inp: dict[str, Any], version: str) -> MutationOutcome:
    """``inventorySetQuantities``: all-or-nothing absolute set of available or on_hand."""
    errors: list[UserError] = []
    name, reason = inp["name"], inp["reason"]
    if name not in SET_NAMES:
        errors.append(user_error("INVALID_NAME", "input", "name"))
    if reason not in REASONS:
        errors.append(user_error("INVALID_REASON", "input", "reason"))
    uri = inp.get("referenceDocumentUri")
    if uri is not None and not valid_reference(uri):
        errors.append(user_error("INVALID_REFERENCE_DOCUMENT", "input", "referenceDocumentUri"))
    ignore = bool(inp.get("ignoreCompareQuantity", False))
    planned: list[tuple[Level, int]] = []
    seen: set[tuple[str, str]] = set()
    for i, row in enumerate(inp["quantities"]):
        path = ("input", "quantities", i)
        pair = (row["inventoryItemId"], row["locationId"])
        if pair in seen:
            errors.append(user_error("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", *path))
            continue
        seen.add(pair)
        level, err = _resolve(shop, row, path)
        if err is not None or level is None:
            errors.append(err)  # type: ignore[arg-type]
            continue
        quantity = row["quantity"]
        if quantity < 0:
            errors.append(user_error("INVALID_QUANTITY_NEGATIVE", *path, "quantity"))
            continue
        if quantity > SET_LIMIT:
            errors.append(user_error("INVALID_QUANTITY_TOO_HIGH", *path, "quantity"))
            continue
        if name in SET_NAMES:
            cas = _cas(row, level, name, version, path, ignore)
            if cas is not None:
                errors.append(cas)
                continue
            delta = quantity - level.get(name)
            if name == "on_hand" and level.get("available") + delta < -SET_LIMIT:
                errors.append(user_error("INVALID_QUANTITY_TOO_LOW", *path, "quantity"))
                continue
            planned.append((level, quantity - level.get(name)))
    if errors:
        return MutationOutcome(None, errors, [])
    changes: list[Change] = []
    for level, delta in planned:
        changes.extend(_apply(level, name, delta))
    return MutationOutcome(AdjustmentGroup(reason, uri, changes), [], [lv for lv, _ in planned])


def adjust_quantities(shop: Shop, inp: dict[str, Any], version: str) -> MutationOutcome:
    """``inventoryAdjustQuantities``: all-or-nothing deltas to one named state."""
    errors: list[UserError] = []
    name, reason = inp["name"], inp["reason"]
    if name not in ADJUST_NAMES:
        errors.append(user_error("INVALID_QUANTITY_NAME", "input", "name"))
    if reason not in REASONS:
        errors.append(user_error("INVALID_REASON", "input", "reason"))
    uri = inp.get("referenceDocumentUri")
    if uri is not None and not valid_reference(uri):
        errors.append(user_error("INVALID_REFERENCE_DOCUMENT", "input", "referenceDocumentUri"))
    ledgers = {c.get("ledgerDocumentUri") for c in inp["changes"]}
    if len(ledgers) > 1:
        errors.append(user_error("MAX_ONE_LEDGER_DOCUMENT", "input", "changes"))
    planned: list[tuple[Level, int, str | None]] = []
    for i, row in enumerate(inp["changes"]):
        path = ("input", "changes", i)
        level, err = _resolve(shop, row, path)
        if err is not None or level is None:
            errors.append(err)  # type: ignore[arg-type]
            continue
        ledger = row.get("ledgerDocumentUri")
        if name == "available" and ledger is not None:
            errors.append(user_error("INVALID_AVAILABLE_DOCUMENT", *path, "ledgerDocumentUri"))
            continue
        if name != "available" and ledger is None:
            errors.append(user_error("INVALID_QUANTITY_DOCUMENT", *path, "ledgerDocumentUri"))
            continue
        if ledger is not None and ledger.startswith("gid://shopify/"):
            errors.append(user_error("INTERNAL_LEDGER_DOCUMENT", *path, "ledgerDocumentUri"))
            continue
        if ledger is not None and not valid_reference(ledger):
            errors.append(user_error("INVALID_LEDGER_DOCUMENT", *path, "ledgerDocumentUri"))
            continue
        if name not in ADJUST_NAMES:
            continue
        cas = _cas(row, level, name, version, path, ignore_compare=True)
        if cas is not None:
            errors.append(cas)
            continue
        after = level.get(name) + row["delta"]
        if after > ADJUST_LIMIT:
            errors.append(UserError("INVALID_QUANTITY_TOO_HIGH", [*map(str, path), "delta"],
                                    "The quantity can't be higher than 2,000,000,000."))
            continue
        if after < -ADJUST_LIMIT:
            errors.append(UserError("INVALID_QUANTITY_TOO_LOW", [*map(str, path), "delta"],
                                    "The quantity can't be lower than -2,000,000,000."))
            continue
        planned.append((level, row["delta"], ledger))
    if errors:
        return MutationOutcome(None, errors, [])
    changes: list[Change] = []
    for level, delta, ledger in planned:
        changes.extend(_apply(level, name, delta, ledger))
    return MutationOutcome(AdjustmentGroup(reason, uri, changes), [], [lv for lv, _, _ in planned])
