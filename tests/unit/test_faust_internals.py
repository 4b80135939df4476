"""``agents/faust_internals.py`` is checked against the faust-streaming and aiokafka versions that
pyproject.toml pins, and refuses others."""

from __future__ import annotations

import tomllib
from pathlib import Path

import faust
import pytest

from agents import faust_internals

ROOT = Path(__file__).resolve().parents[2]


def test_checked_versions_are_the_pinned_ones() -> None:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"faust-streaming=={faust_internals.FAUST_VERSION}" in pins
    assert f"aiokafka=={faust_internals.AIOKAFKA_VERSION}" in pins


def test_other_versions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_internals, "version",
                        lambda name: "0.16.0" if name == "faust-streaming" else "0.14.0")
    with pytest.raises(RuntimeError, match="review every use"):
        faust_internals.check_versions()


def test_no_other_worker_module_reaches_into_faust_or_aiokafka() -> None:
    """The private attributes used here appear nowhere else in ``agents/``."""
    private = ("._read_offset", "._thread", "._create_worker_consumer", "._isolation_level",
               "._fetch_max_wait_ms",
               "._commit(", "._client", ".send_soon(", ".suspend_flow", ".recovery.", "._producer")
    for path in (ROOT / "agents").glob("*.py"):
        if path.name == "faust_internals.py":
            continue
        text = path.read_text()
        assert not [p for p in private if p in text], path.name


async def test_the_worker_consumer_reads_committed_with_a_short_fetch_wait() -> None:
    """faust builds its consumer with ``fetch_max_wait_ms=1500`` and reads uncommitted records;
    the consumer it builds after ``configure_fetch`` has the given wait and reads committed.
    (Nothing connects: the consumer is only built.)"""
    app = faust.App("tally-test-fetch", broker="kafka://127.0.0.1:1")
    thread = app.consumer._thread  # type: ignore[attr-defined]
    plain = thread._create_worker_consumer(app.transport)
    assert (plain._fetch_max_wait_ms, plain._isolation_level) == (1500, "read_uncommitted")
    faust_internals.configure_fetch(app.consumer, fetch_max_wait_ms=100)
    configured = thread._create_worker_consumer(app.transport)
    assert (configured._fetch_max_wait_ms, configured._isolation_level) == (100, "read_committed")
    for consumer in (plain, configured):
        await consumer.stop()
