"""The worker under hostile input, on the real broker.

The expected ledger comes from replaying the same records through the pure core (the oracle):
every key must match it on every component and on its version. (The kill -9 test is
test_worker_kill9.py.)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pipeline.ledger.locations import load_locations
from tests.support.fixtures import write_locations
from tests.support.hostile import hostile_stream
from tests.support.kafka import producer
from tests.support.oracle import Oracle
from tests.support.worker import (
    WorkerProcess,
    produce_events,
    records,
    wait_for_oracle,
)

BRANCHES = ["WH-ONLINE", "STORE-ONLINE", "STORE-RETAIL-ONLY"]
TPL = ["3PL-EU"]


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
        assert wait_for_oracle(worker, oracle, timeout=120) == []
        assert worker.alive()
    finally:
        worker.stop()
