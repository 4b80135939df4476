"""The webhook producer is disposable: a failed publish marks it dirty, the next use after the
backoff replaces it, and readiness names the cause meanwhile (no broker needed: port 1)."""

from __future__ import annotations

import time

import pytest

from pipeline.observability.health import Readiness
from pipeline.webhooks.publisher import KafkaPublisher, PublishFailed


async def test_failed_publish_rebuilds_the_producer_after_a_backoff() -> None:
    readiness = Readiness("publisher-test")
    pub = KafkaPublisher("127.0.0.1:1", timeout_s=1.0, readiness=readiness,
                         probe_topic="t", backoff_s=0.5, backoff_cap_s=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(PublishFailed):
            await pub.publish([("t", "k", b"v")])
        assert time.monotonic() - started < 2.5  # librdkafka gives up at the deadline
        assert pub.dirty is not None and pub.rebuilds == 0
        status, body = readiness.report()
        assert status == 503 and body["failing"]["producer"]["detail"].startswith(
            "cannot publish:")
        with pytest.raises(PublishFailed, match="producer rebuild in"):
            await pub.publish([("t", "k", b"v")])  # within the backoff: refused at once
        time.sleep(0.6)
        with pytest.raises(PublishFailed):
            await pub.publish([("t", "k", b"v")])  # a new producer, failing again
        assert pub.rebuilds == 1
        assert await pub.check() is False
    finally:
        await pub.close()
