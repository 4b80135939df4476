"""Small helpers for tests that talk to a real broker: unique topics, produce, consume."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.infra.kafka_write import new_producer


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 4,
                  config: dict[str, str] | None = None) -> None:
    names = list(names)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1, config=config or {})
         for n in names]
    )
    for f in futures.values():
        f.result(timeout=30)
    # Created means committed by the controller; the broker may serve the topic a moment later
    # (seconds on a loaded machine), and a client that asks before then is told it does not
    # exist. Return once every partition has a leader.
    wanted = set(names)
    deadline = time.monotonic() + 60
    while True:
        topics = admin.list_topics(timeout=10).topics
        if all(n in topics and topics[n].error is None and topics[n].partitions
               and all(p.leader >= 0 for p in topics[n].partitions.values())
               for n in wanted):
            return
        assert time.monotonic() < deadline, f"topics not served after 60 s: {sorted(wanted)}"
        time.sleep(0.2)


def topic_partitions(bootstrap: str, name: str) -> int:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(name, timeout=10)
    topic = md.topics.get(name)
    if topic is None or topic.error is not None:
        return 0
    return len(topic.partitions)


def producer(bootstrap: str) -> Producer:
    """A producer configured as Tally's own (the partition aiokafka/faust give a key)."""
    return new_producer(bootstrap)


def consume_all(bootstrap: str, topic: str, *, expect: int | None = None,
                timeout: float = 30.0, idle: float = 2.0) -> list:
    """Read a topic from the beginning until ``expect`` messages or ``idle`` s of silence."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": unique("reader"),
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if expect is None and out and time.monotonic() - last > idle:
                    break
                continue
            if msg.error():
                continue
            out.append(msg)
            last = time.monotonic()
            if expect is not None and len(out) >= expect:
                break
    finally:
        consumer.close()
    return out


def group_lag(bootstrap: str, group: str, topics: Iterable[str]) -> int:
    """Records in ``topics`` not yet committed by consumer ``group`` (unknown offsets count all)."""
    from confluent_kafka import TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        tps = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            tps += [TopicPartition(topic, p) for p in meta.partitions]
        lag = 0
        for tp in consumer.committed(tps, timeout=10):
            lo, hi = consumer.get_watermark_offsets(tp, timeout=10)
            lag += hi - (tp.offset if tp.offset >= 0 else lo)
        return lag
    finally:
        consumer.close()


def wait_caught_up(bootstrap: str, group: str, topics: Iterable[str], timeout: float,
                   alive: Callable[[], bool] = lambda: True) -> float:
    """Wait until ``group`` has committed everything in ``topics``; return the seconds taken."""
    started = time.monotonic()
    names = list(topics)
    while time.monotonic() - started < timeout:
        assert alive(), "the consumer process died"
        if group_lag(bootstrap, group, names) == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{group} still behind on {names} after {timeout:.0f}s")
