"""Read a topic from its beginning up to its current end: for operator tools and reports."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


def read_to_end(bootstrap: str, topic: str, *, timeout: float = 120.0,
                partitions: set[int] | None = None) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of ``topic`` (or of ``partitions``) up to the end it has now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"tally-read-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    out: list[tuple[bytes | None, bytes | None]] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        ends: dict[int, int] = {}
        for p in meta.partitions:
            if partitions is not None and p not in partitions:
                continue
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                ends[p] = hi
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                if msg.error():
                    continue
                out.append((msg.key(), msg.value()))
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
    finally:
        consumer.close()
    return out
