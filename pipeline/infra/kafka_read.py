"""Read a topic from its beginning up to its current end: for operator tools and reports."""

from __future__ import annotations

import time
import uuid
from typing import NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition


class Record(NamedTuple):
    """One record as an operator tool needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"tally-read-{uuid.uuid4()}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})


def _record(msg: Message) -> Record:
    return Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                  msg.timestamp()[1], tuple(msg.headers() or ()))


def read_to_end(bootstrap: str, topic: str, *, timeout: float = 120.0,
                partitions: set[int] | None = None) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of ``topic`` (or of ``partitions``) up to the end it has now."""
    return [(r.key, r.value) for r in read_records(bootstrap, topic, timeout=timeout,
                                                   partitions=partitions)]


def fetch_record(bootstrap: str, topic: str, partition: int, offset: int, *,
                 timeout: float = 30.0) -> Record | None:
    """The record at ``offset`` of ``topic``/``partition``, or None when it is gone."""
    consumer = _consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            return _record(msg) if msg.offset() == offset else None
        return None
    finally:
        consumer.close()


def read_records(bootstrap: str, topic: str, *, timeout: float = 120.0,
                 partitions: set[int] | None = None) -> list[Record]:
    """Every record of ``topic`` (or of ``partitions``) up to the end it has now."""
    consumer = _consumer(bootstrap)
    out: list[Record] = []
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
                out.append(_record(msg))
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
    finally:
        consumer.close()
    return out
