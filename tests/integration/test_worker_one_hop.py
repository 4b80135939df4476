"""One hop where the key allows it, on a real broker: every source event is produced twice, keyed
``sku@location`` on murmur2's partition (the worker applies it where it reads it) and on
librdkafka's default CRC32 partition (the worker re-keys it through the movements topic), and
then the same stream again without a key. Each key is reached by both paths and both
partitioners; the ledger must still equal the oracle (each transaction applied once), both
routes must have been taken, every changelog write must be on its key's own
partition (one writer per key), and the last push of every key must be its published ATS."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

from tests.support.fixtures import write_locations
from tests.support.kafka import consume_all, producer
from tests.support.worker import (
    WorkerProcess,
    mapped_traffic,
    metric,
    records,
    wait_for_oracle,
)

CATCH_UP_LIMIT_S = 600  # bounds a hang, not speed


def test_both_paths_and_both_partitioners_on_the_same_keys_apply_each_event_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    skus = [f"SKU-BOTH-PATHS-{i:03d}" for i in range(150)]
    locations_file = write_locations(tmp_path)
    worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations_file)
    worker.create_topics()
    stream, oracle = mapped_traffic(worker, locations_file, skus, seed=77, events=4_000,
                                    duplicate_rate=0.02)

    worker.start()
    try:
        worker.wait_ready()
        p = producer(kafka_bootstrap)
        by_system = worker.topics.sources()

        for system, raw in stream:
            ev = json.loads(raw)
            key = f"{ev['sku']}@{ev['location']}".encode()
            topic = by_system[system]
            p.produce(topic, key=key, value=raw)  # murmur2: applied where read
            p.produce(topic, key=key, value=raw,  # CRC32: another partition, re-keyed
                      partition=zlib.crc32(key) % worker.partitions)
            p.poll(0)
        for system, raw in stream:
            p.produce(by_system[system], value=raw)
        assert p.flush(60) == 0

        assert wait_for_oracle(worker, oracle, timeout=CATCH_UP_LIMIT_S) == []
        # One writer per key: every write of a position is on its key's own partition (a write
        # elsewhere would still read back right today, and split the key at the next recovery).
        everything = list(range(worker.partitions))
        misplaced = {(m.key(), m.partition()) for m in consume_all(
            kafka_bootstrap, worker.changelog_topic(), timeout=60, idle=3)
            if m.partition() != DefaultPartitioner()(m.key(), everything, everything)}
        assert misplaced == set()
        in_place = metric(worker.url, 'tally_movements_routed_total{route="in_place"}')
        rekeyed = metric(worker.url, 'tally_movements_routed_total{route="rekeyed"}')
        # At least the murmur2-keyed copy of every event went in place; the CRC32 copy of most
        # went through the movements topic.
        assert in_place >= len(stream), (in_place, rekeyed)
        assert rekeyed >= len(stream) / 2, (in_place, rekeyed)
        assert worker.alive()
    finally:
        worker.stop()
    last = {}
    for push in records(kafka_bootstrap, worker.topics.shopify_push, timeout=60, idle=3):
        last[f"{push['sku']}@{push['branch']}"] = push["available"]
    assert last == {k: pos.last_published_ats for k, pos in oracle.positions.items()
                    if pos.last_published_ats is not None}
