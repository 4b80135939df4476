"""Helpers for sink integration tests: topics, push records for simulator levels, shops files."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from pipeline.messages import ShopifyAck, ShopifyPush, push_key
from pipeline.shopify_sim import RunningSimulator
from pipeline.sink.compare_and_set import KeyState
from pipeline.sink.config import ShopConfig, SinkSettings
from pipeline.sink.records import ack_record
from pipeline.topics import Topics
from tests.support.kafka import consume_all, create_topics, unique


def sink_topics(bootstrap: str, scenario: str, partitions: int = 4) -> Topics:
    """Fresh push/acks/drift/dlq topics for one test (acks compacted, like production)."""
    t = Topics(shopify_push=unique(f"push-{scenario}"), shopify_acks=unique(f"acks-{scenario}"),
               drift=unique(f"drift-{scenario}"), dead_letter=unique(f"dlq-{scenario}"))
    create_topics(bootstrap, [t.shopify_push, t.drift, t.dead_letter], partitions)
    create_topics(bootstrap, [t.shopify_acks], partitions, {"cleanup.policy": "compact"})
    return t


def level_ids(sim: RunningSimulator, sku: str, location: str | None = None,
              shop: str | None = None) -> tuple[str, str, str]:
    """(shop domain, inventory item gid, location gid) of a simulator level."""
    lv = sim.level(sku, location, shop)
    return (sim.shop(shop).domain, f"gid://shopify/InventoryItem/{lv.item.id}",
            f"gid://shopify/Location/{lv.location.id}")


def make_push(ids: tuple[str, str, str], sku: str, available: int, version: int,
              oldest_event_at: float | None = None) -> ShopifyPush:
    shop, item, loc = ids
    now = time.time()
    return ShopifyPush(shop=shop, inventory_item_id=item, location_id=loc, sku=sku,
                       branch="test", available=available, ledger_version=version,
                       oldest_event_at=now if oldest_event_at is None else oldest_event_at,
                       emitted_at=now)


def produce_pushes(bootstrap: str, topic: str, pushes: Iterable[ShopifyPush]) -> int:
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                  "enable.idempotence": True, "linger.ms": 5})
    n = 0
    for push in pushes:
        while True:
            try:
                p.produce(topic, key=push.key.encode(), value=push.to_json())
                break
            except BufferError:
                p.poll(0.05)
        n += 1
    assert p.flush(30) == 0
    return n


def seed_acks(bootstrap: str, topic: str, rows: Iterable[tuple[tuple[str, str, str], int]]
              ) -> None:
    """Write acks as a previous run would have: Shopify holds ``available`` at ledger version 0."""
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for (shop, item, loc), available in rows:
        state = KeyState(acked=available, acked_version=0, target=available, target_version=0)
        ack = ShopifyAck(shop, item, loc, available, 0, time.time())
        key, value = push_key(shop, item, loc).encode(), ack_record(ack, state)
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:  # more rows than the queue holds (the 1M-line benchmark)
                p.poll(0.1)
    assert p.flush(60) == 0


def shop_configs(sim: RunningSimulator, env_prefix: str = "TALLY_TEST_TOKEN") -> list[ShopConfig]:
    """Shops of a simulator; tokens go to environment variables, as in production."""
    out = []
    for i, domain in enumerate(sim.shops):
        var = f"{env_prefix}_{i}"
        os.environ[var] = sim.access_token(domain)
        out.append(ShopConfig(domain=domain, admin_url=sim.shop_url(domain), token_env=var))
    return out


def write_shops_file(path: Path, shops: list[ShopConfig]) -> Path:
    lines = []
    for s in shops:
        lines += ["[[shop]]", f'domain = "{s.domain}"', f'admin_url = "{s.admin_url}"',
                  f'api_version = "{s.api_version}"', f'token_env = "{s.token_env}"', ""]
    path.write_text("\n".join(lines))
    return path


def settings(bootstrap: str, topics: Topics, shops: list[ShopConfig], **kw: Any
             ) -> SinkSettings:
    return SinkSettings(bootstrap=bootstrap, shops=shops, topics=topics,
                        group_id=unique("sink"), **kw)


async def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Poll ``cond`` until true; returns the seconds it took (AssertionError on timeout)."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


def read_json(bootstrap: str, topic: str, timeout: float = 10.0, idle: float = 1.5
              ) -> list[dict[str, Any]]:
    return [json.loads(msg.value()) for msg in
            consume_all(bootstrap, topic, timeout=timeout, idle=idle)]
