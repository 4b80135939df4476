"""Shops config: tokens referenced by env/file, never inline by default, never in repr."""

from __future__ import annotations

import pytest

from pipeline.shopify.shops import parse_shops
from pipeline.sink.records import parse_ack_record


def test_inline_token_refused_unless_allowed() -> None:
    row = {"domain": "a.myshopify.com", "admin_url": "https://a", "token": "shpat_secret"}
    with pytest.raises(ValueError, match="inline token refused"):
        parse_shops({"shop": [row]})
    shop = parse_shops({"allow_inline_token": True, "shop": [row]})[0]
    assert shop.token() == "shpat_secret"
    assert "shpat_secret" not in repr(shop)


def test_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLY_T", "shpat_env")
    row = {"domain": "a", "admin_url": "http://x/", "token_env": "TALLY_T"}
    shop = parse_shops({"shop": [row]})[0]
    assert shop.token() == "shpat_env"
    assert shop.graphql_url == "http://x/admin/api/2026-10/graphql.json"


def test_ack_record_without_cas_seeds_state() -> None:
    raw = (b'{"shop":"s","inventory_item_id":"i","location_id":"l","available":4,'
           b'"ledger_version":9,"acknowledged_at":1.0,"idempotency_key":"k"}')
    ack, state = parse_ack_record(raw)
    assert (ack.available, state.acked, state.acked_version) == (4, 4, 9)
