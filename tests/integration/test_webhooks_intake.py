"""``tally webhooks`` on a real broker: 401 publishes nothing, duplicates published once, 503
while Kafka is unreachable, 413 above the limit, every request answered at 200 requests/s.
(Latency at that rate is a benchmark: `bench/`, not a timed test.)"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp

from pipeline.shopify_sim.webhooks import sign
from pipeline.topics import Topics
from pipeline.webhooks.config import ShopWebhooks, WebhookSettings
from pipeline.webhooks.service import run_webhooks
from tests.support.fixtures import SHOP, write_locations
from tests.support.kafka import consume_all, create_topics, unique

SECRET = "whsec-test-" + unique("s")


def _order(oid: int) -> bytes:
    return json.dumps({"id": oid, "name": f"#{oid}", "created_at": "2026-03-10T10:00:00Z",
                       "gateway": "bogus", "line_items": [{"id": oid + 1, "sku": "SKU-HOOK",
                                                           "quantity": 1}]}).encode()


def _headers(body: bytes, event_id: str, secret: str = SECRET) -> dict[str, str]:
    return {"X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-Hmac-Sha256": sign(secret, body), "X-Shopify-Event-Id": event_id,
            "X-Shopify-Webhook-Id": unique("wh"), "X-Shopify-API-Version": "2026-10",
            "Content-Type": "application/json"}


def _settings(tmp_path: Path, bootstrap: str, topics: Topics, timeout: float = 3.0
              ) -> WebhookSettings:
    os.environ["TALLY_IT_WEBHOOK_SECRET"] = SECRET
    return WebhookSettings(
        shops=[ShopWebhooks(SHOP, "WH-ONLINE", secret_env="TALLY_IT_WEBHOOK_SECRET")],
        locations_file=write_locations(tmp_path), bootstrap=bootstrap, port=0, topics=topics,
        max_body_bytes=16 * 1024, publish_timeout_s=timeout)


async def test_intake_paths_and_sustained_load(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = Topics(shopify_orders=unique("hooks"))
    create_topics(kafka_bootstrap, [topics.shopify_orders])
    async with run_webhooks(_settings(tmp_path, kafka_bootstrap, topics)) as url, \
            aiohttp.ClientSession() as http:
        hook = f"{url}/webhooks"
        body = _order(1000)
        r = await http.post(hook, data=body, headers=_headers(body, "ev-bad", "wrong-secret"))
        assert r.status == 401
        for _ in range(3):  # Shopify's duplicate deliveries of one event
            r = await http.post(hook, data=body, headers=_headers(body, "ev-1"))
            assert r.status == 200
        assert (await r.json())["outcome"] == "duplicate"
        big = b"{" + b" " * 20_000 + b"}"
        assert (await http.post(hook, data=big, headers=_headers(big, "ev-big"))).status == 413
        bad = b"{not json"
        assert (await http.post(hook, data=bad, headers=_headers(bad, "ev-x"))).status == 400

        # 200 requests/s for 3 s: every one answered 200 and published once.
        async def one(i: int) -> None:
            b = _order(2000 + i * 10)
            async with http.post(hook, data=b, headers=_headers(b, f"ev-load-{i}")) as resp:
                assert resp.status == 200

        tasks = []
        start = time.perf_counter()
        for i in range(600):
            await asyncio.sleep(max(0.0, start + i / 200 - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)

    published = consume_all(kafka_bootstrap, topics.shopify_orders, expect=601, timeout=30)
    events = [json.loads(m.value()) for m in published]
    assert len(events) == 601  # one per accepted event: the bad signature and duplicates never
    assert sum(1 for e in events if e["transaction_id"] == "order-1000") == 1
    assert all(m.key().decode().startswith(f"{SHOP}|") for m in published)


async def test_kafka_unreachable_answers_503(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "127.0.0.1:1", Topics(shopify_orders="unreachable"), 1.0)
    async with run_webhooks(settings) as url, aiohttp.ClientSession() as http:
        body = _order(5000)
        r = await http.post(f"{url}/webhooks", data=body, headers=_headers(body, "ev-503"))
        assert r.status == 503
        # Not remembered as seen: Shopify's retry is published once Kafka is back.
        r = await http.post(f"{url}/webhooks", data=body, headers=_headers(body, "ev-503"))
        assert r.status == 503
