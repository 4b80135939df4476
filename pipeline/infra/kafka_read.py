"""Read a topic from its beginning up to its current end: every record, or the latest value per
key of a compacted topic. The one way Tally's services and tools read a topic to its end (topic
creation: ``pipeline.infra.kafka_topics``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
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
    headers: tuple[tuple[str, str | bytes | None], ...] = ()


def _consumer(bootstrap: str, group_prefix: str = "tally-read") -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap,
                     "group.id": f"{group_prefix}-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})


def _record(msg: Message) -> Record:
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None  # a read record
    headers = msg.headers() or ()
    return Record(topic, partition, offset, msg.key(), msg.value(), msg.timestamp()[1],
                  tuple(headers.items() if isinstance(headers, dict) else headers))


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
    """Every record of ``topic`` (or of ``partitions``) up to the end it has now (what was read
    when ``timeout`` runs out)."""
    return list(iter_records(bootstrap, topic, timeout=timeout, partitions=partitions))


def latest_by_key(bootstrap: str, topic: str, *, timeout: float = 30.0,
                  group_prefix: str = "tally-read") -> dict[str, bytes]:
    """The latest value per key of a compacted topic, read to the end it has now (a tombstone
    removes its key). Raises ``RuntimeError`` when the end is not reached within ``timeout``."""
    latest: dict[str, bytes] = {}
    for r in iter_records(bootstrap, topic, timeout=timeout, group_prefix=group_prefix,
                          complete=True):
        key = (r.key or b"").decode()
        if r.value is None:
            latest.pop(key, None)
        else:
            latest[key] = r.value
    return latest


def iter_records(bootstrap: str, topic: str, *, timeout: float = 120.0,
                 partitions: set[int] | None = None, group_prefix: str = "tally-read",
                 complete: bool = False) -> Iterator[Record]:
    """The records of ``topic`` (or of ``partitions``) up to the end it has now; with
    ``complete``, ``RuntimeError`` if that end is not reached within ``timeout``."""
    consumer = _consumer(bootstrap, group_prefix)
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return
        ends: dict[int, int] = {}
        for p in meta.partitions:
            if partitions is not None and p not in partitions:
                continue
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                ends[p] = hi
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                if msg.error():
                    continue
                record = _record(msg)
                yield record
                if record.offset + 1 >= ends.get(record.partition, 0):
                    ends.pop(record.partition, None)
        if ends and complete:
            raise RuntimeError(f"topic {topic} not read to its end within {timeout}s")
    finally:
        consumer.close()
