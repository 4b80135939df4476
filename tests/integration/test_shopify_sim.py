"""The Shopify simulator over real HTTP on 127.0.0.1 (port 0)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pipeline.infra.shopify_schema import fetch
from pipeline.shopify_sim import RunningSimulator, SimConfig, WebhookConfig, run_simulator

SHOP = "tally-test.myshopify.com"
SEED = {"shops": [{
    "domain": SHOP,
    "locations": ["Main", "Overflow"],
    "items": [
        {"sku": "SKU-LAST-UNIT", "levels": {"Main": {"available": 1}}},
        {"sku": "SKU-SOLD-OUT", "levels": {"Main": {"available": 0}}},
        {"sku": "SKU-PLENTY", "levels": {"Main": {"available": 50, "committed": 2,
                                                   "reserved": 1}, "Overflow": {"available": 7}}},
        {"sku": "SKU-STALE-CAS", "levels": {"Main": {"available": 5}}},
        {"sku": "SKU-IDEMPOTENT", "levels": {"Main": {"available": 10}}},
    ],
}]}

SET = """mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}"""
ADJUST = """mutation Adj($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}"""


@pytest.fixture(scope="session")
def shopify_schema() -> Path:
    return fetch()


@pytest.fixture
async def sim(shopify_schema: Path) -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimConfig(seed=SEED, random_seed=1)) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def gql(http: aiohttp.ClientSession, sim: RunningSimulator, query: str,
              variables: dict[str, Any] | None = None, version: str = "2026-10"
              ) -> dict[str, Any]:
    async with http.post(sim.graphql_url(version), json={"query": query, "variables": variables},
                         headers={"X-Shopify-Access-Token": sim.access_token()}) as resp:
        assert resp.status == 200
        return await resp.json()  # type: ignore[no-any-return]


def ids(sim: RunningSimulator, sku: str, location: str = "Main") -> dict[str, str]:
    lv = sim.level(sku, location)
    return {"inventoryItemId": f"gid://shopify/InventoryItem/{lv.item.id}",
            "locationId": f"gid://shopify/Location/{lv.location.id}"}


def set_input(*rows: dict[str, Any], name: str = "available") -> dict[str, Any]:
    return {"name": name, "reason": "correction",
            "referenceDocumentUri": "gid://tally/SyncJob/test-1", "quantities": list(rows)}


async def test_missing_token_is_401(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    async with http.post(sim.graphql_url(), json={"query": "{ shop { id } }"}) as resp:
        assert resp.status == 401
        assert "Invalid API key or access token" in (await resp.json())["errors"]


async def test_shop_addressed_by_header_on_shared_path(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    headers = {"X-Shopify-Access-Token": sim.access_token(), "X-Shopify-Shop-Domain": SHOP}
    async with http.post(f"{sim.base_url}/admin/api/2026-10/graphql.json",
                         json={"query": "{ shop { myshopifyDomain } }"}, headers=headers) as r:
        assert (await r.json())["data"]["shop"]["myshopifyDomain"] == SHOP


async def test_unknown_field_is_a_validation_error_in_shopify_shape(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    body = await gql(http, sim, "{ shop { id warehouseCount } }")
    assert "data" not in body
    err = body["errors"][0]
    assert err["message"] == "Field 'warehouseCount' doesn't exist on type 'Shop'"
    assert err["extensions"] == {"code": "undefinedField", "typeName": "Shop",
                                 "fieldName": "warehouseCount"}
    assert err["locations"] == [{"line": 1, "column": 13}]
    assert body["extensions"]["cost"]["requestedQueryCost"] == 0


async def test_bad_argument_type_is_a_validation_error(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    body = await gql(http, sim, '{ locations(first: "ten") { nodes { id } } }')
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "argumentLiteralsIncompatible"
    assert "ten" in body["errors"][0]["message"]


async def test_field_valid_in_schema_but_not_simulated_is_a_clear_error(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    body = await gql(http, sim, "{ shop { id currencyCode } }")
    assert "data" not in body
    err = body["errors"][0]
    assert err["extensions"]["code"] == "NOT_IMPLEMENTED_IN_SIMULATOR"
    assert "currencyCode" in err["message"] and "not implemented" in err["message"]


async def test_read_levels_by_sku_with_all_states(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    query = """query($q: String!) { productVariants(first: 1, query: $q) { nodes { sku
      inventoryItem { inventoryLevels(first: 1) { pageInfo { hasNextPage endCursor }
        nodes { location { name } quantities(names: ["available", "committed", "reserved",
          "on_hand"]) { name quantity } } } } } } }"""
    body = await gql(http, sim, query, {"q": "sku:SKU-PLENTY"})
    variant = body["data"]["productVariants"]["nodes"][0]
    levels = variant["inventoryItem"]["inventoryLevels"]
    assert levels["pageInfo"]["hasNextPage"] is True  # two locations, first: 1
    q = {x["name"]: x["quantity"] for x in levels["nodes"][0]["quantities"]}
    assert q == {"available": 50, "committed": 2, "reserved": 1, "on_hand": 53}
    # Second page through the cursor.
    query2 = query.replace("inventoryLevels(first: 1)", "inventoryLevels(first: 1, after: $a)")
    query2 = query2.replace("query($q: String!)", "query($q: String!, $a: String)")
    body2 = await gql(http, sim, query2, {"q": "sku:SKU-PLENTY",
                                          "a": levels["pageInfo"]["endCursor"]})
    page2 = body2["data"]["productVariants"]["nodes"][0]["inventoryItem"]["inventoryLevels"]
    assert page2["nodes"][0]["location"]["name"] == "Overflow"
    assert page2["pageInfo"]["hasNextPage"] is False


async def test_stale_change_from_quantity_applies_nothing(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    good = {**ids(sim, "SKU-PLENTY"), "quantity": 40, "changeFromQuantity": 50}
    stale = {**ids(sim, "SKU-STALE-CAS"), "quantity": 3, "changeFromQuantity": 4}  # really 5
    body = await gql(http, sim, SET, {"input": set_input(good, stale), "key": "stale-1"})
    payload = body["data"]["inventorySetQuantities"]
    assert payload["inventoryAdjustmentGroup"] is None
    assert payload["userErrors"] == [{
        "code": "CHANGE_FROM_QUANTITY_STALE",
        "field": ["input", "quantities", "1", "changeFromQuantity"],
        "message": "The changeFromQuantity value does not match persisted value."}]
    assert sim.level("SKU-PLENTY", "Main").get("available") == 50  # atomic: first row untouched
    assert sim.level("SKU-STALE-CAS").get("available") == 5


async def test_change_from_quantity_is_required_on_2026_10_but_null_opts_out(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    omitted = {**ids(sim, "SKU-STALE-CAS"), "quantity": 3}
    body = await gql(http, sim, SET, {"input": set_input(omitted), "key": "omit-1"})
    payload = body["data"]["inventorySetQuantities"]
    assert payload["inventoryAdjustmentGroup"] is None
    assert payload["userErrors"][0]["field"] == ["input", "quantities", "0", "changeFromQuantity"]
    assert sim.level("SKU-STALE-CAS").get("available") == 5

    explicit_null = {**omitted, "changeFromQuantity": None}
    body = await gql(http, sim, SET, {"input": set_input(explicit_null), "key": "null-1"})
    payload = body["data"]["inventorySetQuantities"]
    assert payload["userErrors"] == []
    assert {"name": "available", "delta": -2, "quantityAfterChange": 3} in \
        payload["inventoryAdjustmentGroup"]["changes"]
    assert sim.level("SKU-STALE-CAS").get("available") == 3


async def test_compare_quantity_is_unknown_input_from_2026_04(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    row = {**ids(sim, "SKU-STALE-CAS"), "quantity": 3, "compareQuantity": 5}
    body = await gql(http, sim, SET, {"input": set_input(row), "key": "old-1"}, "2026-04")
    assert body["errors"][0]["extensions"]["code"] == "INVALID_VARIABLE"
    assert "compareQuantity" in body["errors"][0]["message"]
    # ...but 2026-01 still honours it.
    body = await gql(http, sim, SET, {"input": set_input(row), "key": "old-2"}, "2026-01")
    assert body["data"]["inventorySetQuantities"]["userErrors"] == []
    assert sim.level("SKU-STALE-CAS").get("available") == 3


async def test_idempotent_replay_returns_original_result_and_applies_once(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    variables = {"input": {"name": "available", "reason": "received", "changes": [
        {**ids(sim, "SKU-IDEMPOTENT"), "delta": 5, "changeFromQuantity": None}]},
        "key": "0b6c3f6e-replay"}
    first = await gql(http, sim, ADJUST, variables)
    second = await gql(http, sim, ADJUST, variables)
    assert first["data"] == second["data"]
    assert first["data"]["inventoryAdjustQuantities"]["userErrors"] == []
    assert sim.level("SKU-IDEMPOTENT").get("available") == 15  # applied once, not twice

    other = {**variables, "input": {**variables["input"], "reason": "correction"}}
    mismatch = await gql(http, sim, ADJUST, other)
    payload = mismatch["data"]["inventoryAdjustQuantities"]
    assert payload["inventoryAdjustmentGroup"] is None
    assert payload["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    assert sim.level("SKU-IDEMPOTENT").get("available") == 15


async def test_idempotency_directive_required_from_2026_04(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    query = SET.replace(" @idempotent(key: $key)", "").replace(", $key: String!", "")
    row = {**ids(sim, "SKU-IDEMPOTENT"), "quantity": 1, "changeFromQuantity": None}
    body = await gql(http, sim, query, {"input": set_input(row)})
    assert body["data"]["inventorySetQuantities"] is None
    assert "@idempotent" in body["errors"][0]["message"]
    assert sim.level("SKU-IDEMPOTENT").get("available") == 10


async def test_idempotent_request_in_flight_is_refused(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    sim.sim.config.mutation_latency_s = 0.3
    row = {**ids(sim, "SKU-IDEMPOTENT"), "quantity": 4, "changeFromQuantity": 10}
    variables = {"input": set_input(row), "key": "in-flight-1"}
    first = asyncio.create_task(gql(http, sim, SET, variables))
    await asyncio.sleep(0.1)
    second = await gql(http, sim, SET, variables)
    assert second["data"]["inventorySetQuantities"]["userErrors"][0]["code"] == \
        "IDEMPOTENCY_CONCURRENT_REQUEST"
    assert (await first)["data"]["inventorySetQuantities"]["userErrors"] == []
    assert sim.level("SKU-IDEMPOTENT").get("available") == 4


async def test_251_quantities_are_rejected(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    row = {**ids(sim, "SKU-PLENTY"), "quantity": 1, "changeFromQuantity": None}
    body = await gql(http, sim, SET, {"input": set_input(*[row] * 251), "key": "too-many"})
    assert body["data"]["inventorySetQuantities"] is None
    err = body["errors"][0]
    assert err["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert "251" in err["message"] and "250" in err["message"]
    assert sim.level("SKU-PLENTY", "Main").get("available") == 50


async def test_query_over_1000_points_is_refused(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    body = await gql(http, sim, "{ inventoryItems(first: 250) { nodes { id "
                                "inventoryLevels(first: 5) { nodes { id } } } } }")
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert body["extensions"]["cost"]["requestedQueryCost"] == 2 + 250 * (1 + 2 + 5)


async def test_throttling_follows_the_bucket_arithmetic(
        shopify_schema: Path, http: aiohttp.ClientSession) -> None:
    # A slow refill (5 points/s): the 4th call is throttled unless the first three took 2 s.
    config = SimConfig(seed=SEED, bucket_size=30, restore_rate=5)
    async with run_simulator(config) as sim:
        query = SET.replace("inventoryAdjustmentGroup { id changes "
                            "{ name delta quantityAfterChange } }\n", "")
        row = {**ids(sim, "SKU-PLENTY"), "quantity": 1, "changeFromQuantity": None}
        statuses = []
        for n in range(4):
            body = await gql(http, sim, query, {"input": set_input(row), "key": f"t{n}"})
            statuses.append(body)
        costs = [b["extensions"]["cost"] for b in statuses]
        assert [c["requestedQueryCost"] for c in costs] == [10, 10, 10, 10]
        assert costs[0]["throttleStatus"] == {"maximumAvailable": 30.0,
                                              "currentlyAvailable": 20, "restoreRate": 5.0}
        # Three mutations of 10 drain 30 points (plus a little refill); the 4th is throttled
        # unless 10 points came back meanwhile, which takes 2 s at 5/s.
        throttled = statuses[3]
        assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert "data" not in throttled
        assert throttled["extensions"]["cost"]["actualQueryCost"] is None
        left = throttled["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
        assert left < 10
        await asyncio.sleep((10 - left) / 5 + 0.1)  # the arithmetic: refill at 5 points/s
        body = await gql(http, sim, query, {"input": set_input(row), "key": "t-after"})
        assert body["data"]["inventorySetQuantities"]["userErrors"] == []
        assert sim.stats["throttled"] == 1

        # Lowered at run time: the bucket is clipped to the new size.
        async with http.post(f"{sim.base_url}/_sim/config",
                             json={"bucket_size": 5, "restore_rate": 1}) as resp:
            assert resp.status == 200
        body = await gql(http, sim, query, {"input": set_input(row), "key": "t-small"})
        assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert body["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] == 5.0


async def test_actual_cost_is_refunded_for_short_connections(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    body = await gql(http, sim, "{ locations(first: 10) { nodes { id } } }")
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 12
    assert cost["actualQueryCost"] == 4  # two locations exist
    assert cost["throttleStatus"]["currentlyAvailable"] == 2000 - 4


class Receiver:
    """A webhook endpoint that records raw bodies and headers."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, str]]] = []
        self.fail_first = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((await request.read(), dict(request.headers)))
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500)
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield rec, f"http://127.0.0.1:{port}/hooks"
    await runner.cleanup()


async def test_webhooks_are_signed_and_retried(
        shopify_schema: Path, http: aiohttp.ClientSession,
        receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.fail_first = 2  # the first two attempts fail: delivery must be retried
    config = SimConfig(seed=SEED, webhook=WebhookConfig(url=url, retry_base_s=0.01))
    async with run_simulator(config) as sim:
        async with http.post(f"{sim.base_url}/_sim/orders",
                             json={"shop": SHOP, "sku": "SKU-LAST-UNIT", "location": "Main"}) as r:
            assert r.status == 200
        await sim.sim.webhooks.drain()
        secret = sim.webhook_secret()
    by_topic: dict[str, list[tuple[bytes, dict[str, str]]]] = {}
    for body, headers in rec.calls:
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
        assert hmac.compare_digest(expected.decode(), headers["X-Shopify-Hmac-Sha256"])
        assert headers["X-Shopify-Shop-Domain"] == SHOP
        assert headers["X-Shopify-API-Version"] == "2026-10"
        for name in ("X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Triggered-At"):
            assert headers[name]
        by_topic.setdefault(headers["X-Shopify-Topic"], []).append((body, headers))
    assert len(rec.calls) == 4  # 2 failed + orders/create + inventory_levels/update
    order = json.loads(by_topic["orders/create"][-1][0])
    assert order["line_items"][0]["sku"] == "SKU-LAST-UNIT"
    assert order["admin_graphql_api_id"] == f"gid://shopify/Order/{order['id']}"
    assert order["financial_status"] == "paid"
    level = json.loads(by_topic["inventory_levels/update"][-1][0])
    assert level["available"] == 0
    # Retries of one event keep the same Event-Id.
    event_ids = {h["X-Shopify-Event-Id"] for _, h in rec.calls}
    assert len(event_ids) == 2


async def test_storefront_refuses_sold_out_and_counts_oversells(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    order = {"shop": SHOP, "sku": "SKU-SOLD-OUT", "location": "Main"}
    async with http.post(f"{sim.base_url}/_sim/orders", json=order) as resp:
        assert resp.status == 409
    # Shopify still shows 1 unit, but the real shelf is empty: the sale is an oversell.
    async with http.post(f"{sim.base_url}/_sim/true-stock",
                         json={**order, "sku": "SKU-LAST-UNIT", "available": 0}) as resp:
        assert resp.status == 200
    async with http.post(f"{sim.base_url}/_sim/orders",
                         json={**order, "sku": "SKU-LAST-UNIT"}) as resp:
        accepted = await resp.json()
        assert accepted["accepted"] and accepted["oversold"]
    lv = sim.level("SKU-LAST-UNIT")
    assert (lv.get("available"), lv.get("committed"), lv.get("on_hand")) == (0, 1, 1)
    async with http.get(f"{sim.base_url}/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["orders"] | {} == {"accepted": 1, "refused": 1, "oversold": 1,
                                    "cancelled": 0, "refunded": 0}
    async with http.post(f"{sim.base_url}/_sim/orders/{accepted['order_id']}/cancel") as resp:
        assert (await resp.json())["status"] == "cancelled"
    assert sim.level("SKU-LAST-UNIT").get("available") == 1


async def test_admin_edit_levels_and_metrics(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.base_url}/_sim/admin-edit",
                         json={"shop": SHOP, "sku": "SKU-PLENTY", "location": "Overflow",
                               "available": 3}) as resp:
        assert (await resp.json())["quantities"]["available"] == 3
    async with http.get(f"{sim.base_url}/_sim/levels",
                        params={"sku": "SKU-PLENTY", "location": "Overflow"}) as resp:
        rows = (await resp.json())["levels"]
    assert [r["quantities"]["available"] for r in rows] == [3]
    await gql(http, sim, "{ shop { id } }")
    async with http.get(f"{sim.base_url}/metrics") as resp:
        text = await resp.text()
    assert "tally_shopify_sim_requests_total" in text
    assert sim.access_token() not in text
    async with http.get(f"{sim.base_url}/healthz") as resp:
        assert resp.status == 200


async def test_injected_429_carries_retry_after(
        sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.base_url}/_sim/config",
                         json={"faults": {"throttle_429_rate": 1.0, "retry_after_s": 2}}):
        pass
    async with http.post(sim.graphql_url(), json={"query": "{ shop { id } }"},
                         headers={"X-Shopify-Access-Token": sim.access_token()}) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "2"
