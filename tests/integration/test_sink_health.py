"""The sink under a hostile Shopify and a broker outage (real broker, Shopify simulators):

- a shop whose Shopify hangs never delays another shop, and each hung call is cut at the
  documented deadline (``http_timeout_s``); the hung shop's value lands once Shopify answers;
- a halted shop: ``/readyz`` 503 naming it, and the partitions feeding it are paused once they
  hold ``max_held_records`` unfinished records, so memory stops growing with records;
(The sink through a broker outage, as a process: tests/chaos/test_broker_outage.py.)
"""

from __future__ import annotations

import asyncio
import os

import aiohttp

from pipeline.demo.services import free_port
from pipeline.shopify_sim import SimConfig, run_simulator
from pipeline.sink.config import ShopConfig
from pipeline.sink.service import run_sink
from tests.support.kafka import unique
from tests.support.sink import (
    level_ids,
    make_push,
    produce_pushes,
    seed_acks,
    settings,
    shop_configs,
    sink_topics,
    wait_until,
)


def seed(domain: str, *items: tuple[str, int]) -> dict:
    return {"shops": [{"domain": domain, "locations": ["Main"], "items": [
        {"sku": sku, "levels": {"Main": {"available": qty}}} for sku, qty in items]}]}


async def _get(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, await r.json()


async def test_hung_shop_never_delays_another(kafka_bootstrap: str) -> None:
    topics = sink_topics(kafka_bootstrap, "hung")
    hung_cfg = SimConfig(seed=seed("hung-shop.myshopify.com", ("SKU-HUNG", 5)))
    hung_cfg.faults.timeout_rate = 1.0  # every call hangs 30 s
    async with run_simulator(hung_cfg) as hung, run_simulator(
            SimConfig(seed=seed("calm-shop.myshopify.com", ("SKU-CALM", 5)))) as calm:
        hung_ids, calm_ids = level_ids(hung, "SKU-HUNG"), level_ids(calm, "SKU-CALM")
        seed_acks(kafka_bootstrap, topics.shopify_acks, [(hung_ids, 5), (calm_ids, 5)])
        shops = shop_configs(hung, "TALLY_IT_HUNG") + shop_configs(calm, "TALLY_IT_CALM")
        async with run_sink(settings(kafka_bootstrap, topics, shops, window_s=0.2,
                                     http_timeout_s=1.5)) as sink:
            produce_pushes(kafka_bootstrap, topics.shopify_push,
                           [make_push(hung_ids, "SKU-HUNG", 7, 1)])
            await wait_until(lambda: sink.stats.calls >= 1, 20)  # the hung shop is calling
            produce_pushes(kafka_bootstrap, topics.shopify_push,
                           [make_push(calm_ids, "SKU-CALM", 9, 1)])
            took = await wait_until(lambda: calm.level("SKU-CALM").get("available") == 9, 10)
            await asyncio.sleep(4)  # a few more hung calls
            hung_client = sink.workers["hung-shop.myshopify.com"].client
            longest = hung_client.longest_s
            timeouts = sink.stats.outcomes.get("transient", 0)
            assert sink.readiness.report()[0] == 200  # retrying is not "not ready"
            hung.sim.config.faults.timeout_rate = 0.0  # Shopify answers again
            recovered = await wait_until(
                lambda: hung.level("SKU-HUNG").get("available") == 7, 10)
    print(f"\ncalm shop pushed {took:.2f} s after its record while the other shop hung; "
          f"longest hung call {longest:.2f} s (deadline 1.5 s); {timeouts} timeouts; hung shop "
          f"landed {recovered:.2f} s after Shopify answered again")
    assert took < 5
    assert 1.4 <= longest < 2.5  # cut at the deadline, not Shopify's 30 s
    assert timeouts >= 2


async def test_halted_shop_not_ready_and_partitions_paused(kafka_bootstrap: str) -> None:
    topics = sink_topics(kafka_bootstrap, "halted", partitions=2)
    domain = "halted-shop.myshopify.com"
    async with run_simulator(SimConfig(seed=seed(domain, ("SKU-H", 5)))) as sim:
        os.environ["TALLY_IT_HALTED_TOKEN"] = "shpat_wrong_" + unique("t")  # 401: halt
        shops = [ShopConfig(domain=domain, admin_url=sim.shop_url(domain),
                            token_env="TALLY_IT_HALTED_TOKEN")]
        port = free_port()
        limit = 300
        produce_pushes(kafka_bootstrap, topics.shopify_push, [
            make_push((domain, f"gid://shopify/InventoryItem/{900000 + i}",
                       "gid://shopify/Location/1"), f"SKU-{i}", i, 1) for i in range(3000)])
        async with run_sink(settings(kafka_bootstrap, topics, shops, window_s=0.1,
                                     web_port=port, web_host="127.0.0.1",
                                     max_held_records=limit)) as sink:
            url = f"http://127.0.0.1:{port}"
            await wait_until(lambda: sink.workers[domain].halted is not None, 20)
            await wait_until(lambda: len(sink.paused) == 2, 20)
            await asyncio.sleep(3)  # paused: nothing more is read
            held = {tp: p.in_progress for tp, p in sink.offsets.partitions.items()}
            status, body = await _get(f"{url}/readyz")
            health_status, _ = await _get(f"{url}/healthz")
            async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
                metrics = await r.text()
    print(f"\nhalted shop: records held per partition {sorted(held.values())} (limit {limit}, "
          f"3000 produced)")
    assert status == 503 and body["failing"][f"shop:{domain}"]["detail"] == "halted: auth"
    assert health_status == 200  # a restart would not fix a token
    assert sum(held.values()) < 3000 and all(n <= 2 * limit for n in held.values())
    assert "tally_sink_paused_partitions 2.0" in metrics
    assert f'tally_readiness_condition_ok{{condition="shop:{domain}",service="sink"}} 0.0' \
        in metrics
