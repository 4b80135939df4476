"""The worker's C-backed producer (agents/direct_producer.py) with a real librdkafka and no
broker at the address: a full queue is waited out, never dropped; records that cannot be
delivered make the next flush raise ``DeliveryFailed`` once and replace the producer; the hot
path returns one already-done awaitable."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import Producer

from agents.direct_producer import DONE, DeliveryFailed, DirectProducer

NOWHERE = "127.0.0.1:1"  # nothing listens: every delivery times out


def _producer(**extra: Any) -> DirectProducer:
    return DirectProducer(NOWHERE, client_id="test-direct", linger_ms=5, delivery_timeout_s=1,
                          factory=lambda config: Producer({**config, **extra}))


async def test_send_returns_the_shared_done_awaitable() -> None:
    direct = _producer()
    sent = direct.send("t", b"k", b"v")
    assert sent is DONE
    assert await sent is None
    assert await DONE is None  # awaitable again and again, never suspends


async def test_undelivered_records_fail_the_next_flush_once_and_the_producer_is_replaced(
) -> None:
    direct = _producer()
    first = direct.producer
    for i in range(3):
        await direct.send("t", f"k{i}".encode(), b"v")
    with pytest.raises(DeliveryFailed, match="3 records not delivered"):
        await direct.flush(10)
    assert direct.producer is not first and direct.rebuilds == 1
    assert await direct.flush(1) is True  # nothing sent since: nothing failed


async def test_a_full_queue_waits_for_room_and_drops_nothing() -> None:
    direct = _producer(**{"queue.buffering.max.messages": 2})
    assert direct.send("t", b"k0", b"v") is DONE
    assert direct.send("t", b"k1", b"v") is DONE
    waiting = direct.send("t", b"k2", b"v")  # queue full: waits until the first two fail
    assert waiting is not DONE
    await asyncio.wait_for(waiting, timeout=10)
    # Room came with the first failure's report; the second's may be served a moment later.
    for _ in range(100):
        if direct.failed == 2:
            break
        direct.producer.poll(0.05)
    assert direct.failed == 2
    with pytest.raises(DeliveryFailed):
        await direct.flush(10)  # the third record failed too, in the replaced producer
    assert direct.failed == 0


async def test_flush_says_false_when_records_are_still_queued_at_its_timeout() -> None:
    direct = DirectProducer(NOWHERE, client_id="test-direct", linger_ms=5,
                            delivery_timeout_s=30)
    await direct.send("t", b"k", b"v")
    assert await direct.flush(0.2) is False
    await direct.close(timeout_s=0.1)
