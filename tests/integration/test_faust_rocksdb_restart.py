"""faust + rocksdict on the real broker: a table survives a stop and restart, on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rocksdict import Options, Rdict

from tests.support.kafka import create_topics, producer, topic_partitions, unique

APP = Path(__file__).with_name("faust_counter_app.py")


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(APP), "worker", "--loglevel=warn"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


def _table_on_disk(datadir: Path) -> dict[str, int]:
    """Read every partition of the table straight from RocksDB."""
    values: dict[str, int] = {}
    for db_path in sorted(datadir.glob("v*/tables/counts-*.db")):
        db = Rdict(str(db_path), options=Options(raw_mode=True))
        try:
            for k, v in db.items():
                if k.startswith(b"__faust"):
                    continue
                values[json.loads(k)] = json.loads(v)
        finally:
            db.close()
    return values


def _produce(bootstrap: str, topic: str, rounds: int) -> None:
    p = producer(bootstrap)
    for _ in range(rounds):
        for i in range(20):
            p.produce(topic, key=f"SKU-COUNTED-{i:02d}".encode(), value=b"1")
    assert p.flush(30) == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def _run_until(env: dict[str, str], log: Path, expected: dict[str, int],
               produce: Callable[[], None]) -> None:
    proc = _start(env, log)
    try:
        produce()
        # RocksDB is inspected only after a clean stop; the changelog says when work is done.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"worker exited: {log.read_text()[-3000:]}"
            time.sleep(1.0)
            if _changelog_caught_up(env, expected):
                break
    finally:
        _stop(proc)


def _changelog_caught_up(env: dict[str, str], expected: dict[str, int]) -> bool:
    from tests.support.kafka import consume_all

    topic = f"{env['SMOKE_APP_ID']}-counts-changelog"
    latest: dict[str, int] = {}
    for msg in consume_all(env["SMOKE_BOOTSTRAP"], topic, timeout=5, idle=1):
        latest[json.loads(msg.key())] = json.loads(msg.value())
    return latest == expected


def test_rocksdb_table_survives_restart(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = unique("smoke-counts")
    app_id = unique("smoke-app")
    create_topics(kafka_bootstrap, [topic], partitions=4)
    datadir = tmp_path / "data"
    env = {
        **os.environ,
        "SMOKE_BOOTSTRAP": kafka_bootstrap, "SMOKE_TOPIC": topic, "SMOKE_APP_ID": app_id,
        "SMOKE_DATADIR": str(datadir),
    }
    log = tmp_path / "worker.log"

    first = {f"SKU-COUNTED-{i:02d}": 3 for i in range(20)}
    _run_until(env, log, first, lambda: _produce(kafka_bootstrap, topic, 3))
    assert _table_on_disk(datadir) == first, log.read_text()[-3000:]

    second = {f"SKU-COUNTED-{i:02d}": 5 for i in range(20)}
    _run_until(env, log, second, lambda: _produce(kafka_bootstrap, topic, 2))
    assert _table_on_disk(datadir) == second, log.read_text()[-3000:]
    assert topic_partitions(kafka_bootstrap, f"{app_id}-counts-changelog") == 4
