"""The sink under load on a low plan (pacing) and under 30 % injected faults (retries)."""

from __future__ import annotations

import asyncio
import threading
import time

from pipeline.shopify_sim import FaultConfig, SimConfig, run_simulator
from pipeline.sink.service import run_sink
from tests.support.sink import (
    level_ids,
    make_push,
    produce_pushes,
    read_json,
    seed_acks,
    settings,
    shop_configs,
    sink_topics,
    wait_until,
)


def keys_of(sim, skus: int, locations: int) -> list[tuple[str, tuple[str, str, str]]]:
    return [(f"SKU-{k:05d}", level_ids(sim, f"SKU-{k:05d}", f"Warehouse {n}"))
            for k in range(1, skus + 1) for n in range(1, locations + 1)]


class Traffic(threading.Thread):
    """Rounds of new ledger values for every key, produced off the event loop."""

    def __init__(self, bootstrap: str, topic: str, keys: list, rounds: int, pause: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.keys = bootstrap, topic, keys
        self.rounds, self.pause = rounds, pause
        self.latest: dict[tuple[str, str, str], int] = {}
        self.produced = 0
        self.stop = threading.Event()

    def value(self, i: int, r: int) -> int:
        return 20 + (i * 7 + r * 3) % 50

    def run(self) -> None:
        for r in range(1, self.rounds + 1):
            if self.stop.is_set():
                return
            batch = [make_push(ids, sku, self.value(i, r), r)
                     for i, (sku, ids) in enumerate(self.keys)]
            self.produced += produce_pushes(self.bootstrap, self.topic, batch)
            for i, (_, ids) in enumerate(self.keys):
                self.latest[ids] = self.value(i, r)
            time.sleep(self.pause)


async def test_throttling_low_plan_paces_without_throttled_at_budget_rate(
        kafka_bootstrap: str) -> None:
    topics = sink_topics(kafka_bootstrap, "throttle")
    restore, bucket = 20.0, 100.0  # a tiny plan: 20 points/s
    config = SimConfig(skus=400, locations=2, bucket_size=bucket, restore_rate=restore)
    async with run_simulator(config) as sim:
        keys = keys_of(sim, 400, 2)
        seed_acks(kafka_bootstrap, topics.shopify_acks, [(ids, 10) for _, ids in keys])
        traffic = Traffic(kafka_bootstrap, topics.shopify_push, keys, rounds=40, pause=0.2)
        traffic.start()  # 800 keys, each changing ~4 times a second: far more than the budget
        async with run_sink(settings(kafka_bootstrap, topics, shop_configs(sim))) as sink:
            await wait_until(lambda: sink.stats.items_acked > 0, 20)  # joined the group
            await asyncio.sleep(2.0)  # warm-up: the initial full bucket is spent
            bucket_state = next(iter(sim.sim.buckets.values()))
            t0, items0, calls0 = time.monotonic(), sink.stats.items_acked, sink.stats.calls
            level0 = bucket_state.status(sim.sim.now())["currentlyAvailable"]
            throttled0, cost0 = sim.stats["throttled"], sim.stats["cost_spent"]
            await asyncio.sleep(6.0)
            elapsed = time.monotonic() - t0
            level1 = bucket_state.status(sim.sim.now())["currentlyAvailable"]
            items = sink.stats.items_acked - items0
            calls = sink.stats.calls - calls0
            throttled = sim.stats["throttled"] - throttled0
            cost = sim.stats["cost_spent"] - cost0
            traffic.stop.set()
        traffic.join(timeout=30)
    items_per_s = items / elapsed
    cost_per_call = cost / calls
    # What the bucket allowed in the window: refill plus what it held beyond its end level,
    # spent in full 250-item calls.
    allowed_points = restore * elapsed + max(0.0, level0 - level1)
    allowed_items_per_s = allowed_points / cost_per_call * 250 / elapsed
    print(f"\nthrottle: {items_per_s:.0f} items/s of {allowed_items_per_s:.0f} allowed; "
          f"{items / calls:.0f} items/call; {cost / items:.3f} points/item; "
          f"throttled at steady state: {throttled}")
    assert throttled == 0
    assert items_per_s >= 0.8 * allowed_items_per_s, (items_per_s, allowed_items_per_s)


async def test_faults_30_percent_errors_and_timeouts_converge(kafka_bootstrap: str) -> None:
    topics = sink_topics(kafka_bootstrap, "faults")
    faults = FaultConfig(error_5xx_rate=0.12, throttle_429_rate=0.05, retry_after_s=0.2,
                         timeout_rate=0.08, timeout_s=2.0, reset_rate=0.05)
    async with run_simulator(SimConfig(skus=60, locations=2, faults=faults,
                                       random_seed=7)) as sim:
        keys = keys_of(sim, 60, 2)
        seed_acks(kafka_bootstrap, topics.shopify_acks, [(ids, 10) for _, ids in keys])
        traffic = Traffic(kafka_bootstrap, topics.shopify_push, keys, rounds=8, pause=0.4)
        traffic.start()
        async with run_sink(settings(kafka_bootstrap, topics, shop_configs(sim), window_s=0.3,
                                     http_timeout_s=0.5, backoff_base_s=0.05,
                                     backoff_cap_s=1.0)) as sink:
            await asyncio.to_thread(traffic.join, 30)

            def converged() -> bool:
                return all(_available(sim, ids) == traffic.latest[ids] for _, ids in keys)

            await wait_until(converged, 60)
            retries, dead = sink.stats.retries, sink.stats.dead_letters
        stats = sim.stats
    print(f"\nfaults: {stats['faults']}, sink retries {retries}")
    injected = sum(stats["faults"].values())
    assert injected >= 5  # faults really happened
    assert retries >= injected  # every injected fault was retried (same key), none dead-lettered
    assert dead == 0
    assert read_json(kafka_bootstrap, topics.dead_letter, timeout=3, idle=1) == []


def _available(sim, ids: tuple[str, str, str]) -> int:
    shop, item, loc = ids
    s = sim.shop(shop)
    return s.levels[(int(item.rsplit("/", 1)[1]), int(loc.rsplit("/", 1)[1]))].get("available")
