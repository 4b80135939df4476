"""Scenario fixtures shared by integration and e2e tests: branches, catalog, events."""

from __future__ import annotations

import json
from pathlib import Path

SHOP = "tally-test.myshopify.com"

LOCATIONS_TOML = f"""
[[branch]]
id = "WH-ONLINE"
name = "Warehouse that ships online orders"
fulfills_online = true
safety_buffer = 0
[branch.shopify]
shop = "{SHOP}"
location_id = "gid://shopify/Location/1"

[[branch]]
id = "STORE-ONLINE"
name = "Store that ships from store, one unit held back"
fulfills_online = true
safety_buffer = 1
[branch.shopify]
shop = "{SHOP}"
location_id = "gid://shopify/Location/2"

[[branch]]
id = "STORE-RETAIL-ONLY"
name = "Store whose stock is never sold online"
fulfills_online = false

[[branch]]
id = "3PL-EU"
name = "European 3PL"
fulfills_online = true
on_hand_source = "3pl"
[branch.shopify]
shop = "{SHOP}"
location_id = "gid://shopify/Location/3"
"""


def write_locations(directory: Path) -> Path:
    path = directory / "locations.toml"
    path.write_text(LOCATIONS_TOML)
    return path


def event(kind: str, txn: str, sku: str, location: str, quantity: int, at: str,
          **extra: object) -> dict:
    source = kind.split(".")[0]
    return {"schema_version": "1", "type": kind, "source": source, "transaction_id": txn,
            "line": 1, "occurred_at": at, "sku": sku, "location": location,
            "quantity": quantity, **extra}


def encode(ev: dict) -> tuple[str, bytes]:
    return ev["source"], json.dumps(ev).encode()
