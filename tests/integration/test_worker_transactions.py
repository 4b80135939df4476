"""Upstream producers that write with Kafka transactions (Kafka Connect exactly-once sources,
Debezium): the worker reads committed records only. A real transactional producer commits and
aborts transactions interleaved with a plain producer on the same topics: committed records are
applied exactly once, aborted ones never, and the commit markers are passed by a probe on the
first jump, not by seeking back."""

from __future__ import annotations

import json
import random
from pathlib import Path

from confluent_kafka import Producer

from pipeline.ledger.locations import load_locations
from pipeline.simulation.traffic import TrafficGenerator
from tests.support.fixtures import write_locations
from tests.support.kafka import producer, unique
from tests.support.oracle import Oracle
from tests.support.worker import WorkerProcess, metric, wait_for_oracle

BRANCHES = ["WH-ONLINE", "STORE-ONLINE", "STORE-RETAIL-ONLY"]


def test_committed_applied_once_aborted_never(kafka_bootstrap: str, tmp_path: Path) -> None:
    locations_file = write_locations(tmp_path)
    worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations_file)
    worker.create_topics()
    sources = worker.topics.sources()
    traffic = TrafficGenerator(skus=[f"SKU-TXN-{i:02d}" for i in range(30)], branches=BRANCHES,
                               tpl_branches=["3PL-EU"], seed=21, duplicate_rate=0.0)
    rng = random.Random(21)
    transactional = Producer({"bootstrap.servers": kafka_bootstrap,
                              "transactional.id": unique("connect-source"),
                              "partitioner": "murmur2_random", "linger.ms": 2})
    plain = producer(kafka_bootstrap)
    applied: list[tuple[str, bytes]] = []
    aborted = committed_transactions = 0

    worker.start()
    try:
        worker.wait_ready()
        transactional.init_transactions(30)
        for _ in range(60):
            batch = [traffic.event() for _ in range(rng.randint(1, 12))]
            transactional.begin_transaction()
            for system, ev in batch:
                raw = json.dumps(ev).encode()
                transactional.produce(sources[system], key=f"{ev['sku']}@{ev['location']}"
                                      .encode(), value=raw)
                if rng.random() < 0.3:  # a plain producer writes between the transaction's
                    system2, ev2 = traffic.event()
                    raw2 = json.dumps(ev2).encode()
                    plain.produce(sources[system2], value=raw2)
                    applied.append((system2, raw2))
            if rng.random() < 0.35:
                # Written first, then aborted: the aborted records are in the log for the worker
                # to skip. (Aborting records still queued in the client can fail with
                # INVALID_TXN_STATE: librdkafka issue 4849, seen once in CI.)
                assert transactional.flush(30) == 0
                transactional.abort_transaction(30)
                aborted += len(batch)
            else:
                transactional.commit_transaction(30)
                committed_transactions += 1
                applied += [(system, json.dumps(ev).encode()) for system, ev in batch]
        assert plain.flush(30) == 0
        assert aborted > 0 and committed_transactions > 10

        oracle = Oracle(load_locations(locations_file))
        oracle.feed(applied)
        assert wait_for_oracle(worker, oracle, timeout=180) == []
        # Every transaction left a marker (aborted ones their records too): passed as holes.
        assert metric(worker.url, "tally_input_offset_gaps_total") >= committed_transactions
        assert worker.alive()
    finally:
        worker.stop()
