"""``tally webhooks`` heals itself and tells the truth, on real brokers:

- racing deliveries of one ``X-Shopify-Event-Id`` publish once;
- lines without a SKU are placed through the catalog topic or dead-lettered, line by line;
- a broker stopped and started with webhooks arriving: ``/readyz`` says 503 naming Kafka during
  the outage and 200 after, ``/healthz`` stays 200 (a restart would not help), the intake accepts
  webhooks again by itself within seconds of the broker's return, and no webhook is lost
  (every delivery is retried until answered 200, as Shopify does).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path

import aiohttp
from confluent_kafka import Producer

from pipeline.topics import Topics
from pipeline.webhooks.config import ShopWebhooks, WebhookSettings
from pipeline.webhooks.service import run_webhooks
from tests.support.fixtures import SHOP, write_locations
from tests.support.kafka import consume_all, create_topics, unique
from tests.support.outage import OutageBroker, outage_broker  # noqa: F401 (fixture)
from tests.support.webhooks import (
    Deliveries,
    Sampler,
    order_body,
    wait_status,
    webhook_headers,
)

SECRET = "whsec-recovery-" + unique("s")


def _topics() -> Topics:
    return Topics(shopify_orders=unique("hooks"), dead_letter=unique("dlq"),
                  catalog=unique("catalog"), shopify_levels=unique("levels"))


def _settings(tmp_path: Path, bootstrap: str, topics: Topics) -> WebhookSettings:
    os.environ["TALLY_IT_RECOVERY_SECRET"] = SECRET
    return WebhookSettings(
        shops=[ShopWebhooks(SHOP, "WH-ONLINE", secret_env="TALLY_IT_RECOVERY_SECRET")],
        locations_file=write_locations(tmp_path), bootstrap=bootstrap, port=0, topics=topics,
        publish_timeout_s=2.0)


def _order(oid: int, lines: list[dict] | None = None) -> bytes:
    return order_body(oid, lines)


def _headers(body: bytes, event_id: str) -> dict[str, str]:
    return webhook_headers(SECRET, SHOP, body, event_id)


async def test_racing_duplicates_and_sku_less_lines(kafka_bootstrap: str, tmp_path: Path
                                                    ) -> None:
    topics = _topics()
    create_topics(kafka_bootstrap, [topics.shopify_orders, topics.dead_letter,
                                    topics.shopify_levels])
    create_topics(kafka_bootstrap, [topics.catalog], partitions=2,
                  config={"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    p.produce(topics.catalog, key=f"{SHOP}|MUG".encode(), value=json.dumps({
        "shop": SHOP, "sku": "MUG", "inventory_item_id": "gid://shopify/InventoryItem/700",
        "variant_id": 900}).encode())
    p.produce(topics.catalog, key=f"{SHOP}|CAP".encode(), value=json.dumps({
        "shop": SHOP, "sku": "CAP", "inventory_item_id": "gid://shopify/InventoryItem/701"}
    ).encode())
    assert p.flush(10) == 0
    async with run_webhooks(_settings(tmp_path, kafka_bootstrap, topics)) as url, \
            aiohttp.ClientSession() as http:
        await wait_status(http, f"{url}/readyz", 200, 30)  # catalog read, Kafka answered

        # Four simultaneous deliveries of one event: one publishes, three are duplicates.
        body = _order(3000)
        answers = await asyncio.gather(*[
            http.post(f"{url}/webhooks", data=body, headers=_headers(body, "ev-race"))
            for _ in range(4)])
        assert [r.status for r in answers] == [200] * 4
        outcomes = sorted([(await r.json())["outcome"] for r in answers])
        assert outcomes == ["duplicate", "duplicate", "duplicate", "published"]

        # Lines with a null or empty SKU: placed by variant / inventory item, else dead-lettered.
        body = _order(4000, [
            {"id": 4001, "sku": None, "variant_id": 900, "quantity": 2},
            {"id": 4002, "sku": "", "variant_id": 55, "inventory_item_id": 701, "quantity": 1},
            {"id": 4003, "sku": None, "variant_id": 12345, "quantity": 1},
            {"id": 4004, "sku": None, "quantity": 1, "title": "Tip"}])
        r = await http.post(f"{url}/webhooks", data=body, headers=_headers(body, "ev-lines"))
        assert r.status == 200
        answer = await r.json()
        assert answer["outcome"] == "published" and answer["dead_lettered"] == 1
        assert [(line["line_item_id"], line["outcome"]) for line in answer["lines"]] == [
            (4001, "resolved_by_variant"), (4002, "resolved_by_inventory_item"),
            (4003, "dead_lettered"), (4004, "skipped")]

        # A schema violation names the field and what it held.
        bad = json.dumps({"id": 5000, "line_items": [{"id": "x1", "sku": "A", "quantity": 1}]}
                         ).encode()
        r = await http.post(f"{url}/webhooks", data=bad, headers=_headers(bad, "ev-bad"))
        assert r.status == 422
        assert (await r.json())["detail"].startswith('line_items[0].id is str "x1"')

    events = [json.loads(m.value()) for m in
              consume_all(kafka_bootstrap, topics.shopify_orders, expect=3, timeout=20)]
    assert sorted((e["transaction_id"], e["line"], e["sku"]) for e in events) == [
        ("order-3000", 1, "SKU-HOOK"), ("order-4000", 1, "MUG"), ("order-4000", 2, "CAP")]
    dead = [json.loads(m.value()) for m in
            consume_all(kafka_bootstrap, topics.dead_letter, expect=1, timeout=20)]
    assert len(dead) == 1 and dead[0]["reason"] == "sku_unresolved"
    assert dead[0]["service"] == "webhooks" and json.loads(dead[0]["original"])["id"] == 4003
    assert "variant 12345 not in the catalog" in dead[0]["detail"]


async def test_broker_outage_heals_without_hands(outage_broker: OutageBroker,  # noqa: F811
                                                 tmp_path: Path) -> None:
    seed = int(os.environ.get("TALLY_CHAOS_SEED") or random.randrange(1 << 30))
    outage_s = random.Random(seed).uniform(12, 20)
    print(f"\nwebhooks outage test: seed {seed}, outage {outage_s:.1f} s")
    bootstrap = outage_broker.bootstrap
    topics = _topics()
    create_topics(bootstrap, [topics.shopify_orders, topics.dead_letter, topics.catalog,
                              topics.shopify_levels])
    async with run_webhooks(_settings(tmp_path, bootstrap, topics)) as url, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=6)) as http:
        await wait_status(http, f"{url}/readyz", 200, 30)
        shopify = Deliveries(http, f"{url}/webhooks", SECRET, SHOP)
        sampler = Sampler(http, url)
        sender = asyncio.create_task(shopify.run())
        prober = asyncio.create_task(sampler.run(shopify.stop))
        await asyncio.sleep(2)
        down_at = await asyncio.to_thread(outage_broker.stop)
        await asyncio.sleep(outage_s)
        start_at = time.monotonic()
        back_at = await asyncio.to_thread(outage_broker.start)
        ready_after = await wait_status(http, f"{url}/readyz", 200, 30)
        await asyncio.sleep(3)
        shopify.stop.set()
        await sender
        await prober
        await shopify.finish(60)

    accepted = shopify.accepted
    first_accept = min((t for t in accepted.values() if t >= back_at), default=None)
    during = sampler.between("/readyz", down_at + 6, start_at)  # it may answer before start()
    health_during = {s for s, _ in sampler.between("/healthz", down_at, start_at)}
    # Read to the end, not to a count (a timed-out publish may have been written, then retried).
    published = consume_all(bootstrap, topics.shopify_orders, timeout=90, idle=5)
    orders = [json.loads(m.value())["transaction_id"] for m in published]
    lost = {f"order-{o}" for o in accepted} - set(orders)
    print(f"broker stopped {back_at - down_at:.1f} s (stop and start included); "
          f"webhooks: {len(accepted)} accepted of {shopify.sent}, {shopify.refused} deliveries "
          f"refused (503) and retried, {len(lost)} lost, {len(orders) - len(set(orders))} "
          f"published twice; broker back -> /readyz 200 in {ready_after:.2f} s, first webhook "
          f"accepted {(first_accept - back_at) if first_accept else float('nan'):.2f} s after")
    assert len(accepted) == shopify.sent and not lost
    assert shopify.refused > 0  # the outage really refused deliveries
    assert during and all(s == 503 for s, _ in during), during[:3]
    assert all({"kafka", "producer"} & set(b.get("failing", {})) for _, b in during)
    assert health_during == {200}
    assert ready_after < 10
    assert first_accept is not None and first_accept - back_at < 10
