"""Where the tests get a real Kafka broker, in order: ``KAFKA_BOOTSTRAP``, Docker, local jars."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.infra.local_kafka import KafkaStartError, LocalKafka


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(
            ["docker", "info"], capture_output=True, timeout=10
        ).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def kafka_broker() -> Iterator[str]:
    """Yield a bootstrap address of a running broker; raise ``KafkaStartError`` if none."""
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    if docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:3.9.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    broker = LocalKafka(
        port=int(os.environ.get("TALLY_TEST_KAFKA_PORT", "19092")),
        controller_port=int(os.environ.get("TALLY_TEST_KAFKA_CONTROLLER_PORT", "19093")),
    )
    already_running = broker.pid() is not None
    if not already_running:
        # Test topics are throw-away: a broker that starts on the data of every earlier run
        # (thousands of partitions) took over 90 s to answer on a busy machine.
        broker.reset()
    try:
        yield broker.up()
    finally:
        if not already_running and os.environ.get("TALLY_TEST_KEEP_BROKER") != "1":
            broker.reset()


__all__ = ["KafkaStartError", "docker_answers", "kafka_broker"]
