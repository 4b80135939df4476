"""kill -9 the sink subprocess repeatedly during a run: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from pipeline.shopify_sim import SimConfig, run_simulator
from tests.support.kafka import consume_all, unique
from tests.support.sink import (
    level_ids,
    make_push,
    produce_pushes,
    seed_acks,
    shop_configs,
    sink_topics,
    wait_until,
    write_shops_file,
)

ROOT = Path(__file__).resolve().parents[2]


def start_sink(bootstrap: str, shops_file: Path, topics, group: str, log: Path
               ) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "pipeline.sink.service", "--shops-file", str(shops_file),
           "--bootstrap", bootstrap, "--group", group, "--window", "0.3",
           "--topic-push", topics.shopify_push, "--topic-acks", topics.shopify_acks,
           "--topic-drift", topics.drift, "--topic-dlq", topics.dead_letter]
    with log.open("ab") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), stdout=fh, stderr=fh)


async def test_kill_9_repeatedly_nothing_lost_nothing_doubled(kafka_bootstrap: str,
                                                               tmp_path: Path) -> None:
    topics = sink_topics(kafka_bootstrap, "crash")
    group = unique("sink-crash")
    # Calls take 50 ms, so kills often land while Shopify is applying a batch.
    async with run_simulator(SimConfig(skus=50, locations=2, mutation_latency_s=0.05)) as sim:
        keys = [(f"SKU-{k:05d}", level_ids(sim, f"SKU-{k:05d}", f"Warehouse {n}"))
                for k in range(1, 51) for n in (1, 2)]
        seed_acks(kafka_bootstrap, topics.shopify_acks, [(ids, 10) for _, ids in keys])
        shops_file = write_shops_file(tmp_path / "shops.toml", shop_configs(sim, "CRASH_TOKEN"))
        latest: dict[tuple[str, str, str], int] = {}

        def traffic() -> None:
            for r in range(1, 31):
                batch = [make_push(ids, sku, (i * 5 + r) % 40, r)
                         for i, (sku, ids) in enumerate(keys)]
                produce_pushes(kafka_bootstrap, topics.shopify_push, batch)
                latest.update({p_ids: (i * 5 + r) % 40 for i, (_, p_ids) in enumerate(keys)})
                time.sleep(0.25)

        producer = threading.Thread(target=traffic, daemon=True)
        log = tmp_path / "sink.log"
        proc = start_sink(kafka_bootstrap, shops_file, topics, group, log)
        producer.start()
        kills = 0
        try:
            for _ in range(4):
                await asyncio.sleep(2.0)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
                proc = start_sink(kafka_bootstrap, shops_file, topics, group, log)
            await asyncio.to_thread(producer.join, 60)

            def converged() -> bool:
                return all(sim.level(sku, f"Warehouse {1 + (i % 2)}").get("available")
                           == latest[ids] for i, (sku, ids) in enumerate(keys))

            await wait_until(converged, 60)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        token = sim.access_token()
        assert token not in log.read_text()  # secrets never logged

    assert kills == 4
    assert proc.returncode == 0
    acks = [json.loads(m.value()) for m in
            consume_all(kafka_bootstrap, topics.shopify_acks, timeout=20, idle=2)]
    # Nothing doubled: each (key, ledger version) was written to Shopify by one call only, even
    # if a restarted sink re-sent it (same idempotency key, replayed by Shopify).
    writers: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    runs_per_key: dict[str, set[str]] = defaultdict(set)
    for a in acks:
        if a["idempotency_key"]:
            writers[(a["inventory_item_id"], a["location_id"], a["ledger_version"])].add(
                a["idempotency_key"])
            runs_per_key[a["idempotency_key"]].add(a["run"])
    assert writers and all(len(k) == 1 for k in writers.values())
    reused = sum(1 for runs in runs_per_key.values() if len(runs) > 1)
    print(f"\ncrash: {kills} kills, {len(runs_per_key)} idempotency keys, "
          f"{reused} re-sent by a restarted sink")
    # Nothing lost: Shopify equals the newest pushed value for every key (checked above), and
    # the last ack of every key says so.
    last: dict[tuple[str, str], int] = {}
    for a in acks:
        last[(a["inventory_item_id"], a["location_id"])] = a["available"]
    assert all(last[(ids[1], ids[2])] == latest[ids] for _, ids in keys)
