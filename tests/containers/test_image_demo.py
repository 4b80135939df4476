"""The image runs the system: worker, sink, webhook intake and simulator as containers from the
Tally image (host network, the test's broker), demo traffic through them, then Shopify (the
simulator) must equal the ledger on every key. On the way: every container's healthcheck passes,
each runs as uid 10001, SIGTERM stops each cleanly within its grace period, and the worker's
RocksDB on its volume survives a restart (offsets up to the changelog's end, ledger unchanged)."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from rocksdict import AccessType, Options, Rdict

from pipeline.demo import runner
from pipeline.demo.runner import Demo, DemoOptions, format_summary
from pipeline.topics import changelog_topic
from tests.containers.podman import (
    REPO,
    ContainerService,
    note,
    podman,
    process_uid,
    wait_healthy,
)

OFFSET_KEY = b"__faust\x00offset__"


def stored_offsets(data_dir: Path) -> dict[int, int]:
    """The changelog offset each RocksDB partition of the positions table has applied."""
    offsets: dict[int, int] = {}
    dbs = sorted(p for p in data_dir.rglob("*.db") if "positions" in p.name)
    assert dbs, f"no positions table in {data_dir}: {sorted(data_dir.rglob('*'))[:20]}"
    for path in dbs:
        db = Rdict(str(path), options=Options(raw_mode=True),
                   access_type=AccessType.read_only())
        try:
            raw = db.get(OFFSET_KEY)
        finally:
            db.close()
        if raw is not None:
            offsets[int(path.stem.rsplit("-", 1)[1])] = int(raw)
    return offsets


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tally-ct-watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        consumer.close()


def ledger_lookup(worker_url: str, key: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{worker_url}/ledger/{key}/", timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.kafka
def test_services_run_from_the_image(engine: None, kafka_bootstrap: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Logs (one per container) stay in .tally/containers/, past pytest's temporary folders.
    workdir = REPO / ".tally" / "containers" / "image-demo"
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setattr(runner, "Service", ContainerService)
    opts = DemoOptions(duration=20, rate=150, skus=400, workdir=workdir, quiet=True)
    demo = Demo(opts, say=print)
    try:
        demo.start()
        services: dict[str, ContainerService] = {s.name: s for s in demo.services}  # type: ignore[misc]
        assert set(services) == {"shopify-sim", "worker", "sink", "webhooks"}
        for service in services.values():
            took = wait_healthy(service.container())
            uid = process_uid(service.container())
            note(f"{service.name}: ready {service.ready_in_s:.1f}s after `podman run`, "
                  f"healthy {took:.1f}s later, uid {uid}")
            assert uid == 10001

        demo.opening_load()
        started, since = time.monotonic(), time.time()
        sent = demo.traffic()
        demo.quiesce(timeout=opts.hold_s + 60)
        seconds = time.monotonic() - started
        summary = demo.summary(sent, seconds, since)
        # A push held by the sink (hold_s) may outlast the quiet spell quiesce() waits for on a
        # loaded machine: Shopify must come to equal the ledger within 60 s more.
        deadline = time.monotonic() + 60
        while not summary["shopify_equals_ledger"] and time.monotonic() < deadline:
            note(f"not equal yet after quiesce: {summary['first_differences']}")
            time.sleep(5)
            summary = demo.summary(sent, seconds, since)
        note(format_summary(summary))
        assert summary["events"]["applied"] > 0 and summary["pushes"]["items_acknowledged"] > 0
        assert summary["webhooks"]["received"] > 0, summary["webhooks"]
        assert summary["shopify_equals_ledger"], summary["first_differences"]
        assert summary["keys_compared"] == opts.shops * opts.skus * opts.locations

        # The worker's RocksDB survives a restart on its volume.
        worker = services["worker"]
        ledger = demo.ledger_ats()
        keys = random.Random(7).sample(sorted(ledger), 25)
        before = {k: ledger_lookup(demo.worker_url, k) for k in keys}
        worker.stop()
        note(f"worker stopped in {worker.stopped_in_s:.1f}s, exit code {worker.exit_code}")
        assert worker.exit_code == 0 and worker.stopped_in_s < worker.grace_s
        volume = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}",
                             worker.volume).stdout.strip())
        offsets = stored_offsets(volume)
        changelog = changelog_topic(demo.app_id)
        highs = high_watermarks(demo.bootstrap, changelog, opts.partitions)
        # Everything the changelog holds is already in RocksDB: a restart replays nothing.
        assert offsets == {p: h - 1 for p, h in highs.items() if h > 0}, (offsets, highs)

        worker.generation = 1
        restarted_at = time.monotonic()
        worker.start()
        worker.wait_ready(timeout=120)
        note(f"worker ready again {time.monotonic() - restarted_at:.1f}s after `podman run`")
        wait_healthy(worker.container(1))
        after = {k: ledger_lookup(demo.worker_url, k) for k in keys}
        for k in keys:
            assert after[k]["available_to_sell"] == ledger[k]
            assert after[k]["version"] == before[k]["version"]

        for service in reversed(demo.services):
            service.stop()
            assert isinstance(service, ContainerService)
            note(f"{service.name} stopped in {service.stopped_in_s:.1f}s, "
                  f"exit code {service.exit_code}")
            assert service.exit_code == 0, f"{service.name}: see {service.log_file}"
            assert service.stopped_in_s is not None and service.stopped_in_s < service.grace_s
    finally:
        demo.close()
        for service in demo.services:
            assert isinstance(service, ContainerService)
            service.remove()
