"""Branches from a TOML file (see ``deploy/config/locations.example.toml``).

Each ``[[branch]]`` has ``id``, ``name``, ``fulfills_online``, ``safety_buffer``,
``min_publish_threshold``, ``low_stock_threshold``, ``on_hand_source``, ``receipt_source`` and an
optional ``[branch.shopify]`` table with ``shop`` and ``location_id``. One branch per Shopify
location and one Shopify location per branch; violations fail the load naming the entries.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.ledger.rules import ON_HAND_SOURCES, RECEIPT_SOURCES, LocationRules

_BRANCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # same as the schema's `location`
_LOCATION_GID = re.compile(r"gid://shopify/Location/[0-9]+")
_SHOP = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
_KEYS = {
    "id", "name", "fulfills_online", "safety_buffer", "min_publish_threshold",
    "low_stock_threshold", "on_hand_source", "receipt_source", "shopify",
}  # fmt: skip


class LocationsError(ValueError):
    """The locations file is invalid; the message lists every problem found."""


@dataclass(frozen=True, slots=True)
class Branch:
    id: str
    name: str
    rules: LocationRules


@dataclass(frozen=True)
class Locations(Mapping[str, Branch]):
    """Branch id → Branch, plus the reverse Shopify (shop, location GID) → branch id index."""

    branches: Mapping[str, Branch]
    by_shopify_location: Mapping[tuple[str, str], str]

    def __getitem__(self, branch_id: str) -> Branch:
        return self.branches[branch_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.branches)

    def __len__(self) -> int:
        return len(self.branches)

    def rules(self, branch_id: str) -> LocationRules:
        return self.branches[branch_id].rules

    def branch_for_shopify_location(self, shop: str, location_id: str) -> str | None:
        return self.by_shopify_location.get((shop, location_id))


def load_locations(path: str | Path) -> Locations:
    """Read and validate a locations TOML file. Raises LocationsError."""
    with open(path, "rb") as fh:
        try:
            data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise LocationsError(f"{path}: {exc}") from exc
    return parse_locations(data, origin=str(path))


def parse_locations(data: Mapping[str, Any], *, origin: str = "<locations>") -> Locations:
    """Validate already-parsed TOML data (``{"branch": [ {...}, ... ]}``)."""
    entries = data.get("branch")
    if not isinstance(entries, list) or not entries:
        raise LocationsError(f"{origin}: expected one or more [[branch]] tables")
    errors: list[str] = []
    branches: dict[str, Branch] = {}
    by_location: dict[tuple[str, str], str] = {}
    for index, entry in enumerate(entries, start=1):
        where = f"branch #{index}"
        if not isinstance(entry, dict):
            errors.append(f"{where}: not a table")
            continue
        branch_id = entry.get("id")
        if isinstance(branch_id, str):
            where = f"branch #{index} ({branch_id!r})"
        problems, branch = _parse_branch(entry)
        errors.extend(f"{where}: {p}" for p in problems)
        if branch is None:
            continue
        if branch.id in branches:
            errors.append(f"{where}: duplicate branch id {branch.id!r}")
            continue
        branches[branch.id] = branch
        r = branch.rules
        if r.shop is not None and r.shopify_location_id is not None:
            loc = (r.shop, r.shopify_location_id)
            if loc in by_location:
                errors.append(
                    f"{where}: Shopify location {r.shopify_location_id} of {r.shop} is already "
                    f"mapped to branch {by_location[loc]!r} (one branch per Shopify location)"
                )
                continue
            by_location[loc] = branch.id
    if errors:
        raise LocationsError(f"{origin}: " + "; ".join(errors))
    return Locations(branches, by_location)


def _int(entry: Mapping[str, Any], name: str, problems: list[str]) -> int:
    value = entry.get(name, 0)
    if type(value) is not int or value < 0:
        problems.append(f"{name} must be a non-negative integer")
        return 0
    return value


def _parse_branch(entry: Mapping[str, Any]) -> tuple[list[str], Branch | None]:
    problems = [f"unknown key {k!r}" for k in entry if k not in _KEYS]
    branch_id = entry.get("id")
    if not isinstance(branch_id, str) or not _BRANCH_ID.fullmatch(branch_id):
        problems.append("id must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    name = entry.get("name", branch_id)
    fulfills_online = entry.get("fulfills_online", False)
    if not isinstance(fulfills_online, bool):
        problems.append("fulfills_online must be true or false")
    on_hand_source = entry.get("on_hand_source", "erp")
    if on_hand_source not in ON_HAND_SOURCES:
        problems.append(f"on_hand_source must be one of {ON_HAND_SOURCES}")
    receipt_source = entry.get("receipt_source", "erp")
    if receipt_source not in RECEIPT_SOURCES:
        problems.append(f"receipt_source must be one of {RECEIPT_SOURCES}")
    shop = location_id = None
    shopify = entry.get("shopify")
    if shopify is not None:
        if not isinstance(shopify, dict):
            problems.append("shopify must be a table")
        else:
            shop, location_id = shopify.get("shop"), shopify.get("location_id")
            if not isinstance(shop, str) or not _SHOP.fullmatch(shop):
                problems.append("shopify.shop must be a *.myshopify.com domain")
            if not isinstance(location_id, str) or not _LOCATION_GID.fullmatch(location_id):
                problems.append("shopify.location_id must be gid://shopify/Location/<id>")
    rules = LocationRules(
        branch=str(branch_id),
        fulfills_online=bool(fulfills_online),
        safety_buffer=_int(entry, "safety_buffer", problems),
        min_publish_threshold=_int(entry, "min_publish_threshold", problems),
        low_stock_threshold=_int(entry, "low_stock_threshold", problems),
        shop=shop,
        shopify_location_id=location_id,
        on_hand_source=str(on_hand_source),
        receipt_source=str(receipt_source),
    )
    if problems:
        return problems, None
    return problems, Branch(str(branch_id), str(name), rules)
