"""Chaos: the broker stopped and started under traffic, services as separate processes.

``tally webhooks`` and ``tally sink`` run as child processes against a broker of the test's own
(stopped with SIGTERM and started again on the same data) and a Shopify simulator. Shopify's part
is played by the test: order webhooks at 10 per second, each delivery retried every 0.5 s until
answered 200; ledger pushes for the simulator's levels keep coming on the push topic. The moments
(when the outage starts, how long it lasts) come from a seed printed in the output; replay with
``TALLY_CHAOS_SEED=<seed> make chaos``; ``TALLY_CHAOS_OUTAGE_S=60`` sets the outage's length.

Checked after the outage: no webhook lost (every accepted order is on the topic), readiness of both
services went 503 naming Kafka during the outage and 200 after, ``/healthz`` stayed 200, webhooks
accepted again and the sink pushing again within seconds of the broker's return, and Shopify holds
the last value of every key. A real Prometheus scrapes both services with the project's alert
rules (``for:`` compressed 60x): ``TallyNotReady`` fires for each service's ``kafka`` condition
during the outage and resolves after it. Printed: the seed, and the times from broker back to each
service ready, to the first webhook accepted and to the first push landed after the outage.
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

from pipeline.demo.services import Service, free_port
from pipeline.shopify_sim import SimConfig, run_simulator
from pipeline.topics import Topics
from tests.support.fixtures import SHOP, write_locations
from tests.support.kafka import consume_all, create_topics, unique
from tests.support.outage import OutageBroker, outage_broker  # noqa: F401 (fixture)
from tests.support.prometheus import Prometheus, eventually, prometheus_binary
from tests.support.sink import (
    level_ids,
    make_push,
    seed_acks,
    shop_configs,
    write_shops_file,
)
from tests.support.webhooks import Deliveries, Sampler, wait_status

SIM_SHOP = "chaos-shop.myshopify.com"
SKUS = [f"SKU-CHAOS-{i}" for i in range(20)]


def _after(since_start: float | None, start_to_back: float) -> float | None:
    return None if since_start is None else round(since_start - start_to_back, 2)


def _topics(bootstrap: str) -> Topics:
    topics = Topics.prefixed(unique("chaos"))
    create_topics(bootstrap, [topics.shopify_orders, topics.dead_letter, topics.catalog,
                              topics.shopify_levels, topics.shopify_push, topics.drift])
    create_topics(bootstrap, [topics.shopify_acks], config={"cleanup.policy": "compact"})
    return topics


async def test_broker_outage_with_services_as_processes(
        outage_broker: OutageBroker, tmp_path: Path) -> None:  # noqa: F811
    seed = int(os.environ.get("TALLY_CHAOS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    calm_s, outage_s = rng.uniform(2, 5), rng.uniform(14, 22)
    outage_s = float(os.environ.get("TALLY_CHAOS_OUTAGE_S") or outage_s)  # e.g. 60
    print(f"\nchaos seed {seed}: outage after {calm_s:.1f} s of traffic, for {outage_s:.1f} s "
          f"(replay: TALLY_CHAOS_SEED={seed} make chaos)")
    bootstrap = outage_broker.bootstrap
    topics = _topics(bootstrap)
    secret = "whsec-chaos-" + unique("s")
    hooks_port, sink_port = free_port(), free_port()
    (tmp_path / "webhooks.toml").write_text(
        f'[[shop]]\ndomain = "{SHOP}"\nsecret_env = "TALLY_CHAOS_SECRET"\n'
        f'online_branch = "WH-ONLINE"\n')
    base_env = {"TALLY_KAFKA_BOOTSTRAP": bootstrap, "KAFKA_BOOTSTRAP": bootstrap,
                "TALLY_LOCATIONS_FILE": str(write_locations(tmp_path)), **topics.env(),
                "TALLY_LOG_LEVEL": "INFO"}
    seed_cfg = {"shops": [{"domain": SIM_SHOP, "locations": ["Main"], "items": [
        {"sku": s, "levels": {"Main": {"available": 5}}} for s in SKUS]}]}
    async with run_simulator(SimConfig(seed=seed_cfg)) as sim:
        shops = shop_configs(sim, "TALLY_CHAOS_TOKEN")
        # Shopify and the ledger in sync at 5 before: every push is then a plain compare-and-set
        # (no 30 s hold of a raise), so the catch-up time measures the outage alone.
        seed_acks(bootstrap, topics.shopify_acks, [(level_ids(sim, sku), 5) for sku in SKUS])
        hooks = Service("webhooks", ["webhooks"], {
            **base_env, "TALLY_CHAOS_SECRET": secret,
            "TALLY_WEBHOOKS_FILE": str(tmp_path / "webhooks.toml"),
            "TALLY_WEBHOOKS_PORT": str(hooks_port),
            "TALLY_WEBHOOKS_PUBLISH_TIMEOUT_SECONDS": "2"}, tmp_path,
            ready_url=f"http://127.0.0.1:{hooks_port}/readyz")
        sink = Service("sink", ["sink", "--shops-file", str(write_shops_file(
            tmp_path / "shops.toml", shops)), "--group", unique("chaos-sink"),
            "--web-port", str(sink_port), "--window", "0.2"], {
            **base_env, **{s.token_env: os.environ[s.token_env] for s in shops
                           if s.token_env}}, tmp_path,
            ready_url=f"http://127.0.0.1:{sink_port}/readyz")
        prom = Prometheus(prometheus_binary(), tmp_path / "prom", {
            "webhooks": f"127.0.0.1:{hooks_port}", "sink": f"127.0.0.1:{sink_port}"},
            alert_time_scale=60)
        for service in (hooks, sink):
            service.start()
        try:
            for service in (hooks, sink):
                await asyncio.to_thread(service.wait_ready, 90)
            await _scenario(outage_broker, topics, sim, prom, hooks_port, sink_port, secret,
                            calm_s, outage_s, seed)
        finally:
            prom.stop()
            for service in (hooks, sink):
                service.stop()


def _kafka_not_ready(alerts: list[dict]) -> set[str]:
    """Services whose ``TallyNotReady`` alert for Kafka (or the producer) is firing."""
    return {a["labels"]["service"] for a in alerts
            if a["labels"]["alertname"] == "TallyNotReady" and a["state"] == "firing"
            and a["labels"]["condition"] in ("kafka", "producer")}


async def _scenario(broker: OutageBroker, topics: Topics, sim: object, prom: Prometheus,
                    hooks_port: int,
                    sink_port: int, secret: str, calm_s: float, outage_s: float,
                    seed: int) -> None:
    ids = {sku: level_ids(sim, sku) for sku in SKUS}  # type: ignore[arg-type]
    producer = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random",
                         "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": 300000, "reconnect.backoff.max.ms": 1000})
    latest: dict[str, int] = {}
    version = 0
    hooks_url, sink_url = f"http://127.0.0.1:{hooks_port}", f"http://127.0.0.1:{sink_port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=6)) as http:
        shopify = Deliveries(http, f"{hooks_url}/webhooks", secret, SHOP)
        hooks_probe, sink_probe = Sampler(http, hooks_url), Sampler(http, sink_url)
        await prom.wait_ready(http)
        stop = shopify.stop

        async def pushes() -> None:  # the ledger's side: a new value for a key every 0.1 s
            nonlocal version
            while not stop.is_set():
                version += 1
                sku = SKUS[version % len(SKUS)]
                latest[sku] = 100 + version
                push = make_push(ids[sku], sku, latest[sku], version)
                producer.produce(topics.shopify_push, key=push.key.encode(),
                                 value=push.to_json())
                producer.poll(0)
                await asyncio.sleep(0.1)

        tasks = [asyncio.create_task(c) for c in (
            shopify.run(), hooks_probe.run(stop), sink_probe.run(stop), pushes())]
        await asyncio.sleep(calm_s)

        async def calm() -> bool:  # the storm comes only after a calm: no alert from startup
            return await prom.alerts(http) == []

        await eventually(calm, 20, "no alert before the outage")
        down_at = time.monotonic()
        await asyncio.to_thread(broker.stop)
        stopped_at = time.monotonic()
        firing: set[str] = set()
        fired_after: float | None = None
        while time.monotonic() - stopped_at < outage_s:
            firing = _kafka_not_ready(await prom.alerts(http))
            if firing == {"webhooks", "sink"} and fired_after is None:
                fired_after = time.monotonic() - down_at
            await asyncio.sleep(0.5)
        start_at = time.monotonic()  # the broker may answer before start() notices
        back_at = await asyncio.to_thread(broker.start)
        await wait_status(http, f"{hooks_url}/readyz", 200, 60)
        await wait_status(http, f"{sink_url}/readyz", 200, 60)
        resolved_started = time.monotonic()
        while _kafka_not_ready(await prom.alerts(http)):
            assert time.monotonic() - resolved_started < 30, "TallyNotReady never resolved"
            await asyncio.sleep(0.5)
        alert_resolved_after = time.monotonic() - back_at
        await asyncio.sleep(max(0.0, 5 - (time.monotonic() - resolved_started)))
        stop.set()
        for t in tasks:
            await t
        await shopify.finish(60)
        assert await asyncio.to_thread(producer.flush, 60) == 0
        final = {sku: latest[sku] for sku in SKUS if sku in latest}
        landed_started = time.monotonic()
        while any(sim.level(s).get("available") != v for s, v in final.items()):  # type: ignore[attr-defined]
            assert time.monotonic() - landed_started < 60, "Shopify never caught up"
            await asyncio.sleep(0.2)
        caught_up = time.monotonic() - back_at

    # Times after the broker is back are measured from when start() saw it answer metadata
    # (polled every 0.3 s); a negative value means the service got there before that poll.
    first_accept = min((t for t in shopify.accepted.values() if t >= start_at), default=None)
    # Read to the end (not to a count: a publish that timed out at the broker's return may have
    # been written and then published again by Shopify's retry; the ledger's marks dedupe it).
    published = consume_all(broker.bootstrap, topics.shopify_orders, timeout=90, idle=5)
    orders = [json.loads(m.value())["transaction_id"] for m in published]
    lost = {f"order-{o}" for o in shopify.accepted} - set(orders)
    report = {
        "seed": seed, "outage_s": round(back_at - down_at, 1),
        "broker_stop_s": round(stopped_at - down_at, 1),
        "broker_start_to_answer_s": round(back_at - start_at, 1),
        "webhooks_sent": shopify.sent, "webhooks_accepted": len(shopify.accepted),
        "webhooks_lost": len(lost), "webhooks_published_twice": len(orders) - len(set(orders)),
        "deliveries_refused": shopify.refused,
        "webhooks_ready_after_s": _after(hooks_probe.first_ok_after("/readyz", start_at),
                                         back_at - start_at),
        "sink_ready_after_s": _after(sink_probe.first_ok_after("/readyz", start_at),
                                     back_at - start_at),
        "first_webhook_accepted_after_s": round(first_accept - back_at, 2)
        if first_accept else None,
        "shopify_caught_up_after_s": round(caught_up, 1),
        "alert_fired_after_stop_s": None if fired_after is None else round(fired_after, 1),
        "alert_resolved_after_back_s": round(alert_resolved_after, 1),
    }
    print("chaos result " + json.dumps(report))
    assert len(shopify.accepted) == shopify.sent and not lost
    assert shopify.refused > 0
    for name, probe in (("webhooks", hooks_probe), ("sink", sink_probe)):
        # Between 6 s after the broker stopped and the moment it was started again (it may
        # answer, and the services be ready, a little before start() has seen it answer).
        during = probe.between("/readyz", stopped_at + 6, start_at)
        assert during and all(s == 503 for s, _ in during), (
            name, [x for x in during if x[0] != 503][:3])
        assert all("kafka" in b.get("failing", {}) or "producer" in b.get("failing", {})
                   for _, b in during), (name, during[:3])
        assert {s for s, _ in probe.between("/healthz", down_at, start_at)} == {200}, name
        after = probe.first_ok_after("/readyz", start_at)
        assert after is not None and after - (back_at - start_at) < 15, (name, after)
    assert first_accept is not None and first_accept - back_at < 10
    assert fired_after is not None, "TallyNotReady (kafka) never fired for both services"
