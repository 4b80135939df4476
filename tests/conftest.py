"""Shared fixtures. Tests that need Kafka fail (never skip) when CI=true and no broker starts."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.broker import KafkaStartError, kafka_broker


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Kafka broker (see tests/support/broker.py for the order)."""
    try:
        with kafka_broker() as bootstrap:
            yield bootstrap
    except KafkaStartError as exc:
        message = f"no Kafka broker could be started: {exc}"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message + " (outside CI this skips; in CI it fails)")
