"""Tally's producer configuration (confluent-kafka, ``pipeline.infra.kafka_write``) and aiokafka
put every key on the same partition."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from tests.support.kafka import create_topics, producer, unique


async def test_confluent_producer_and_aiokafka_agree_on_partitions(kafka_bootstrap: str) -> None:
    topic = unique("smoke-partitioner")
    create_topics(kafka_bootstrap, [topic], partitions=4)
    keys = [f"SKU-{i:04d}@BRANCH-{i % 7}".encode() for i in range(400)]
    p = producer(kafka_bootstrap)
    for key in keys:
        p.produce(topic, key=key, value=b"{}")
    assert p.flush(30) == 0

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=unique("smoke"),
    )
    await consumer.start()
    seen: dict[bytes, int] = {}
    try:
        while len(seen) < len(keys):
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    seen[record.key] = record.partition
    finally:
        await consumer.stop()

    partitions = [0, 1, 2, 3]
    partitioner = DefaultPartitioner()
    expected = {key: partitioner(key, partitions, partitions) for key in keys}
    assert seen == expected
    assert len(set(seen.values())) == 4  # the keys really spread over every partition
