"""The worker under crashes and hostile input, on the real broker.

The expected ledger comes from replaying the same records through the pure core (the oracle):
after any number of kill -9s, every key must match it on every component and on its version
(a version off by one would mean a movement applied twice or lost).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from pipeline.ledger.catalog import Catalog, CatalogEntry
from pipeline.ledger.locations import load_locations
from pipeline.simulation.traffic import TrafficGenerator
from tests.support.fixtures import SHOP, write_locations
from tests.support.hostile import hostile_stream
from tests.support.kafka import producer, wait_caught_up
from tests.support.oracle import Oracle, diff
from tests.support.worker import (
    WorkerProcess,
    produce_events,
    publish_catalog,
    read_changelog,
    records,
)

BRANCHES = ["WH-ONLINE", "STORE-ONLINE", "STORE-RETAIL-ONLY"]
TPL = ["3PL-EU"]


def _wait_for_oracle(worker: WorkerProcess, oracle: Oracle, timeout: float) -> list:
    """Wait until the worker has consumed everything, then compare its changelog."""
    wait_caught_up(worker.bootstrap, worker.app_id,
                   [*worker.topics.sources().values(), worker.topics.movements],
                   timeout=timeout, alive=worker.alive)
    ledger = read_changelog(worker.bootstrap, worker.changelog_topic(), timeout=60)
    return diff(ledger, oracle.positions)


def test_ledger_equals_oracle_after_repeated_kill_9(kafka_bootstrap: str, tmp_path: Path) -> None:
    skus = [f"SKU-CRASH-{i:03d}" for i in range(400)]
    locations_file = write_locations(tmp_path)
    worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations_file)
    worker.create_topics()
    catalog_rows = [(SHOP, sku, f"gid://shopify/InventoryItem/{i}") for i, sku in
                    enumerate(skus, start=1)]
    publish_catalog(kafka_bootstrap, worker.topics.catalog, catalog_rows)
    stream = list(TrafficGenerator(skus=skus, branches=BRANCHES, tpl_branches=TPL, seed=5,
                                   duplicate_rate=0.03).encoded(50_000))
    oracle = Oracle(load_locations(locations_file),
                    Catalog().with_entries(CatalogEntry(*r) for r in catalog_rows))
    oracle.feed(stream)

    produce_events(producer(kafka_bootstrap), worker.topics, stream)
    rng = random.Random(1234)
    kills = 0
    worker.start()
    try:
        while kills < 5:
            worker.wait_ready()
            time.sleep(rng.uniform(0.5, 4.0))  # a random moment mid-stream
            worker.kill9()
            kills += 1
            worker.start()
        worker.wait_ready()
        assert _wait_for_oracle(worker, oracle, timeout=240) == []
        assert worker.starts == 6
    finally:
        worker.stop()
    pushes = records(kafka_bootstrap, worker.topics.shopify_push, timeout=60, idle=3)
    last = {}
    for p in pushes:  # per key, in partition order: the last push is the current ATS
        last[(p["sku"], p["branch"])] = p["available"]
    published = {k: p.last_published_ats for k, p in oracle.positions.items()
                 if p.last_published_ats is not None}
    assert {f"{sku}@{branch}": v for (sku, branch), v in last.items()} == published


def test_hostile_input_is_dead_lettered_and_valid_events_still_apply(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    skus = [f"SKU-FUZZ-{i:02d}" for i in range(30)]
    locations_file = write_locations(tmp_path)
    worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations_file)
    worker.create_topics()
    stream = list(hostile_stream(10_000, 2_000, skus=skus, branches=BRANCHES,
                                 tpl_branches=TPL))
    oracle = Oracle(load_locations(locations_file))
    oracle.feed(stream)
    expected_reasons = Counter(r.code for r in oracle.rejections)
    assert sum(expected_reasons.values()) >= 10_000 - 200  # a few mutants stay valid
    assert "internal_error" not in expected_reasons

    worker.start()
    try:
        worker.wait_ready()
        produce_events(producer(kafka_bootstrap), worker.topics, stream)
        dead = records(kafka_bootstrap, worker.topics.dead_letter,
                       expect=sum(expected_reasons.values()), timeout=180)
        assert Counter(d["reason"] for d in dead) == expected_reasons
        assert all(d["detail"] and d["original"] is not None for d in dead)
        assert _wait_for_oracle(worker, oracle, timeout=120) == []
        assert worker.alive()
    finally:
        worker.stop()
