"""A real Prometheus server scrapes the running services and the key series exist and move.

Worker (subprocess), sink, webhook intake and the Shopify simulator run together on the real
broker (as in tests/e2e/scenarios/test_retail_launch.py); Debian's ``prometheus`` scrapes them
every second. Through its HTTP API: every target is up, the key series exist, counters grow
between two queries while traffic flows, and no series carries a ``sku`` label. Prometheus loads
the project's alert rules (``for:`` compressed 60x: five minutes become five seconds), and on
this calm run no alert is pending or firing.

``prometheus`` comes from Debian's ``prometheus`` package (``make setup`` installs it). Without it
this test skips locally and fails in CI (CI=true), like the promtool tests.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pipeline.shopify_sim import SimConfig, run_simulator
from pipeline.sink.service import run_sink
from pipeline.webhooks.config import ShopWebhooks, WebhookSettings
from pipeline.webhooks.service import run_webhooks
from tests.support.kafka import producer
from tests.support.prometheus import Prometheus, eventually, prometheus_binary
from tests.support.sink import settings as sink_settings
from tests.support.sink import shop_configs
from tests.support.worker import WorkerProcess, free_port, publish_catalog

SHOP = "tally-prom.myshopify.com"
AT = "2026-03-10T06:00:00Z"
LATER = "2026-03-10T06:30:00Z"
STOCK = {"PROM-A": 50, "PROM-B": 40, "PROM-C": 30}  # at WH


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    return prometheus_binary()


def seed() -> dict:
    return {"shops": [{"domain": SHOP, "locations": ["WH"], "items": [
        {"sku": sku, "levels": {"WH": {"available": q}}} for sku, q in STOCK.items()]}]}


def ev(kind: str, txn: str, sku: str, quantity: int, **extra: Any) -> bytes:
    return json.dumps({"schema_version": "1", "type": kind, "source": kind.split(".")[0],
                       "transaction_id": txn, "line": 1, "occurred_at": extra.pop("at", LATER),
                       "sku": sku, "location": "WH", "quantity": quantity, **extra}).encode()


# (job, PromQL) whose value must exist; the counters among them must grow with traffic.
SERIES = {
    "events received": ('worker', 'sum(tally_events_received_total{job="worker"})'),
    "events applied": ('worker', 'sum(tally_events_applied_total{job="worker"})'),
    "pushes emitted": ('worker', 'sum(tally_pushes_emitted_total{job="worker"})'),
    "shopify calls": ('sink', 'sum(tally_shopify_calls_total{job="sink"})'),
    "webhooks received": ('webhooks', 'sum(tally_webhooks_received_total{job="webhooks"})'),
    "sim requests": ('simulator', 'sum(tally_shopify_sim_requests_total{job="simulator"})'),
    "sim orders": ('simulator', 'sum(tally_shopify_sim_orders_total{job="simulator"})'),
}
GAUGES = {
    "cost points available": 'tally_shopify_cost_points_available{job="sink"}',
    "end-to-end latency": 'sum(tally_end_to_end_latency_seconds_bucket{job="sink"})',
    "sim series": 'count({job="simulator", __name__=~"tally_shopify_sim_.+"})',
}


async def test_prometheus_scrapes_every_service(kafka_bootstrap: str, tmp_path: Path,
                                                prometheus_bin: str) -> None:
    async with run_simulator(SimConfig(seed=seed())) as sim:
        wh = sim.level("PROM-A", "WH").location.id
        locations = tmp_path / "locations.toml"
        locations.write_text(f"""
[[branch]]
id = "WH"
fulfills_online = true
[branch.shopify]
shop = "{SHOP}"
location_id = "gid://shopify/Location/{wh}"
""")
        worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations, partitions=2)
        worker.create_topics()
        t = worker.topics
        publish_catalog(kafka_bootstrap, t.catalog, [
            (SHOP, sku, f"gid://shopify/InventoryItem/{sim.level(sku).item.id}")
            for sku in STOCK])
        p = producer(kafka_bootstrap)
        for sku, q in STOCK.items():
            p.produce(t.erp, ev("erp.on_hand_snapshot", f"OPEN-{sku}", sku, q, as_of=AT, at=AT))
        assert p.flush(30) == 0
        worker.start()
        os.environ["TALLY_PROM_WEBHOOK_SECRET"] = sim.webhook_secret()
        hooks = WebhookSettings(
            shops=[ShopWebhooks(SHOP, "WH", secret_env="TALLY_PROM_WEBHOOK_SECRET")],
            locations_file=locations, bootstrap=kafka_bootstrap, port=free_port(), topics=t)
        sink_port = free_port()
        prom: Prometheus | None = None
        try:
            await asyncio.to_thread(worker.wait_ready)
            async with run_webhooks(hooks) as hooks_url, run_sink(sink_settings(
                    kafka_bootstrap, t, shop_configs(sim, "TALLY_PROM_TOKEN"), window_s=0.2,
                    hold_for_s=3.0, web_port=sink_port, web_host="127.0.0.1")), \
                    aiohttp.ClientSession() as http:
                sim.sim.config.webhook.url = f"{hooks_url}/webhooks"
                sim.sim.config.webhook.routing = True
                targets = {
                    "worker": f"127.0.0.1:{worker.web_port}",
                    "sink": f"127.0.0.1:{sink_port}",
                    "webhooks": hooks_url.removeprefix("http://"),
                    "simulator": sim.base_url.removeprefix("http://"),
                }
                prom = Prometheus(prometheus_bin, tmp_path / "prom", targets,
                                  alert_time_scale=60)
                await _checks(prom, http, sim, p, t, targets)
        finally:
            if prom is not None:
                prom.stop()
            worker.stop()


async def _traffic(http: aiohttp.ClientSession, sim: Any, p: Any, topics: Any, n: int) -> None:
    """POS sales on every SKU and one storefront order (a signed webhook to the intake)."""
    for sku in STOCK:
        p.produce(topics.pos, ev("pos.sale", f"TILL-{n}-{sku}", sku, 1))
    assert p.flush(10) == 0
    async with http.post(f"{sim.base_url}/_sim/orders",
                         json={"shop": SHOP, "sku": "PROM-A", "location": "WH",
                               "quantity": 1}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["accepted"] is True


async def _checks(prom: Prometheus, http: aiohttp.ClientSession, sim: Any, p: Any,
                  topics: Any, targets: dict[str, str]) -> None:
    async def all_up() -> bool:
        active = (await prom.api(http, "targets"))["activeTargets"]
        health = {tg["labels"]["job"]: (tg["health"], tg.get("lastError")) for tg in active}
        assert set(health) == set(targets), health
        assert all(h == "up" for h, _ in health.values()), health
        return True

    await eventually(all_up, 20, "every target up")
    up = await prom.query(http, "up")
    assert {r["metric"]["job"]: r["value"][1] for r in up} == {job: "1" for job in targets}

    await _traffic(http, sim, p, topics, 1)

    async def first() -> dict[str, float] | None:
        values = {name: await prom.value(http, q) for name, (_, q) in SERIES.items()}
        values.update({name: await prom.value(http, q) for name, q in GAUGES.items()})
        missing = [name for name, v in values.items() if not v]
        assert not missing, f"missing or zero: {missing} in {values}"
        return values  # type: ignore[return-value]

    before = await eventually(first, 25, "key series present")
    await _traffic(http, sim, p, topics, 2)

    async def moved() -> bool:
        after = {name: await prom.value(http, q) for name, (_, q) in SERIES.items()}
        still = [name for name, v in after.items() if not v or v <= before[name]]
        assert not still, f"not moving: {still} (before {before}, after {after})"
        return True

    await eventually(moved, 20, "counters move")

    with_sku = await prom.query(http, 'count by (__name__, job) ({sku=~".+"})')
    assert with_sku == [], f"series with a sku label: {with_sku}"
    assert await prom.query(http, 'count({__name__=~"tally_.+", job=~".+"})')

    # The calm run raises no alert: every rule loaded and evaluated, none pending or firing
    # (with ``for:`` compressed 60x, 20 s here is 20 minutes of a real deployment).
    assert await prom.rules_loaded(http) >= 10
    await asyncio.sleep(20)
    await _traffic(http, sim, p, topics, 3)
    # The sink and the intake run in this pytest process, whose metrics registry also holds
    # gauges left by earlier in-process tests (another shop's reconciliation ratio): only this
    # run's shop, or no shop, counts.
    alerts = [a for a in await prom.alerts(http) if a["labels"].get("shop", SHOP) == SHOP]
    assert alerts == []
