"""A broker of the test's own that it may stop and start: outage and recovery tests.

Always a local broker from the cached Maven jars (whatever ``KAFKA_BOOTSTRAP`` says: an outage
test must own its broker), on ``TALLY_TEST_OUTAGE_KAFKA_PORT`` / ``..._CONTROLLER_PORT`` or two
free ports; its data directory is deleted afterwards. With ``CI=true`` a broker that cannot start
fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pipeline.demo.services import free_port
from pipeline.infra.local_kafka import KafkaStartError, LocalKafka


@dataclass
class OutageBroker:
    broker: LocalKafka

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def stop(self, grace_s: float = 5.0) -> float:
        """Stop the broker as an orchestrator would (SIGTERM, SIGKILL after ``grace_s``);
        returns when it is gone."""
        self.broker.down(timeout=grace_s)
        return time.monotonic()

    def start(self) -> float:
        """Start it again on the same ports and data; returns when it answers metadata."""
        self.broker.up()
        return time.monotonic()


@pytest.fixture
def outage_broker() -> Iterator[OutageBroker]:
    port = int(os.environ.get("TALLY_TEST_OUTAGE_KAFKA_PORT") or free_port())
    controller = int(os.environ.get("TALLY_TEST_OUTAGE_KAFKA_CONTROLLER_PORT") or free_port())
    broker = LocalKafka(port=port, controller_port=controller)
    try:
        broker.up()
    except KafkaStartError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"outage broker did not start: {exc}")
        pytest.skip(f"outage broker did not start: {exc} (outside CI this skips)")
    try:
        yield OutageBroker(broker)
    finally:
        broker.reset()
