"""Checkpoint order of the worker's C-backed producer (agents/direct_producer.py), on a real
broker: a movement's offset is committed only once the records it produced through that producer
are in Kafka. The push topic is made to refuse every record (``max.message.bytes`` below any
batch): the worker keeps applying (its history records arrive) but commits no movement offset
and reads its input again; once the topic takes records again it heals by itself, and the last
push of every key is the value the ledger says it published. Pushes land on the partition
aiokafka/faust give their key."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from tests.support.fixtures import SHOP, encode, event, write_locations
from tests.support.kafka import consume_all, producer, wait_caught_up
from tests.support.worker import (
    WorkerProcess,
    produce_events,
    publish_catalog,
    read_changelog,
    records,
)

SKUS = [f"SKU-CKPT-{i:02d}" for i in range(12)]
BRANCH = "WH-ONLINE"  # ships online, no safety buffer: ATS = on hand


def _set_max_message_bytes(bootstrap: str, topic: str, value: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource("topic", topic, incremental_configs=[ConfigEntry(
        "max.message.bytes", value, incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def _receipts(tag: str, quantity: int) -> list[tuple[str, bytes]]:
    return [encode(event("erp.goods_receipt", f"ERP-{tag}-{i}", sku, BRANCH, quantity,
                         "2026-03-10T06:00:00Z")) for i, sku in enumerate(SKUS)]


def test_movement_offsets_are_committed_only_after_their_pushes_are_in_kafka(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap
    worker = WorkerProcess(bootstrap, tmp_path / "w", write_locations(tmp_path),
                           extra_env={"TALLY_PRODUCER_DELIVERY_TIMEOUT_SECONDS": "3"})
    worker.create_topics()
    topics = worker.topics
    publish_catalog(bootstrap, topics.catalog, [
        (SHOP, sku, f"gid://shopify/InventoryItem/{i}") for i, sku in enumerate(SKUS, 1)])
    worker.start()
    try:
        worker.wait_ready()
        produce_events(producer(bootstrap), topics, _receipts("A", 5))
        wait_caught_up(bootstrap, worker.app_id, [*topics.sources().values(), topics.movements],
                       timeout=60, alive=worker.alive)
        assert len(records(bootstrap, topics.shopify_push, expect=len(SKUS), timeout=30)) == \
            len(SKUS)
        before = _committed(bootstrap, worker.app_id, topics.movements, worker.partitions)

        # The push topic refuses every record: pushes fail, history records go on arriving.
        _set_max_message_bytes(bootstrap, topics.shopify_push, "64")
        produce_events(producer(bootstrap), topics, _receipts("B", 3))
        history = records(bootstrap, topics.history, expect=2 * len(SKUS), timeout=60)
        assert len(history) >= 2 * len(SKUS)  # batch B was applied
        deadline = time.monotonic() + 8  # many commit intervals (0.5 s) and rewinds
        while time.monotonic() < deadline:
            assert _committed(bootstrap, worker.app_id, topics.movements,
                              worker.partitions) == before
            time.sleep(0.5)
        assert _metric(worker.url, "tally_worker_delivery_failures_total") > 0
        assert _metric(worker.url, "tally_worker_rewinds_total") > 0
        assert len(consume_all(bootstrap, topics.shopify_push, timeout=10, idle=2)) == len(SKUS)

        # The topic takes records again: the worker heals by itself.
        _set_max_message_bytes(bootstrap, topics.shopify_push, "1048588")
        wait_caught_up(bootstrap, worker.app_id, [*topics.sources().values(), topics.movements],
                       timeout=120, alive=worker.alive)
        ledger = read_changelog(bootstrap, worker.changelog_topic())
        pushes = consume_all(bootstrap, topics.shopify_push, timeout=30, idle=3)
        partitioner, partitions = DefaultPartitioner(), list(range(worker.partitions))
        last: dict[str, dict] = {}
        for msg in pushes:
            assert msg.partition() == partitioner(msg.key(), partitions, partitions)
            push = json.loads(msg.value())
            key = f"{push['sku']}@{push['branch']}"
            if key not in last or push["ledger_version"] >= last[key]["ledger_version"]:
                last[key] = push
        assert sorted(last) == sorted(f"{sku}@{BRANCH}" for sku in SKUS)
        for key, push in last.items():
            assert push["available"] == 8 == ledger[key].last_published_ats, (key, push)
        assert worker.alive() and worker.starts == 1
    finally:
        worker.stop()

