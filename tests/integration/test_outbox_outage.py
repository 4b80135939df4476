"""The sink's outbox on a real broker that goes away for longer than librdkafka's delivery
timeout: the records librdkafka gives up on are sent again when the broker is back, and ``flush``
says False until they are in the topic. Before the outbox, ``flush`` returned 0 for a timed-out
record and the sink committed past an ack or a dead letter that never arrived."""

from __future__ import annotations

import time

from pipeline.infra.outbox import Outbox
from tests.support.kafka import consume_all, create_topics, unique
from tests.support.outage import OutageBroker, outage_broker  # noqa: F401 (fixture)


def test_records_given_up_during_an_outage_arrive_after_it(
        outage_broker: OutageBroker) -> None:  # noqa: F811
    bootstrap = outage_broker.bootstrap
    topic = unique("outbox-dlq")
    create_topics(bootstrap, [topic], partitions=2)
    box = Outbox({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 2000,
                  "reconnect.backoff.max.ms": 500}, service="test")
    box.send(topic, b"SKU-BEFORE-THE-OUTAGE", b"letter-0")
    assert box.flush(10)

    outage_broker.stop()
    letters = [f"letter-{i}".encode() for i in range(1, 21)]
    for i, letter in enumerate(letters):
        box.send(topic, f"SKU-DURING-THE-OUTAGE-{i % 5}".encode(), letter)
    # Longer than the delivery timeout: librdkafka gives every record up at least once.
    gave_up_by = time.monotonic() + 6
    while time.monotonic() < gave_up_by:
        assert not box.flush(1)
    assert box.resent >= len(letters)
    assert box.unconfirmed == len(letters)

    outage_broker.start()
    back = time.monotonic()
    while not box.flush(2):
        assert time.monotonic() - back < 60, f"{box.unconfirmed} records never arrived"
    assert box.unconfirmed == 0
    box.close(5)

    values = [m.value() for m in consume_all(bootstrap, topic, timeout=30, idle=3)]
    assert set(values) == {b"letter-0", *letters}  # nothing lost (a re-sent copy may repeat)
