"""Run a real ``tally worker`` as a subprocess on unique topics, and read its results back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from pipeline.demo.services import free_port, wait_until_ready
from pipeline.infra.kafka_topics import ensure_topics
from pipeline.ledger.catalog import Catalog, CatalogEntry
from pipeline.ledger.locations import load_locations
from pipeline.ledger.position import LedgerPosition
from pipeline.simulation.traffic import TrafficGenerator
from pipeline.topics import Topics, changelog_topic
from tests.support.fixtures import SHOP
from tests.support.kafka import consume_all, producer, unique
from tests.support.oracle import Oracle


def unique_topics() -> Topics:
    return Topics.prefixed(unique("t"))


def topics_env(topics: Topics) -> dict[str, str]:
    return topics.env()


@dataclass
class WorkerProcess:
    """One ledger worker subprocess with its own app id, data dir, topics and web port."""

    bootstrap: str
    workdir: Path
    locations_file: Path
    partitions: int = 4
    topics: Topics = field(default_factory=unique_topics)
    app_id: str = field(default_factory=lambda: unique("tally-test"))
    web_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_file(self) -> Path:
        return self.workdir / "worker.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ, **topics_env(self.topics),
            "TALLY_KAFKA_BOOTSTRAP": self.bootstrap, "TALLY_APP_ID": self.app_id,
            "TALLY_PARTITIONS": str(self.partitions),
            "TALLY_DATA_DIR": str(self.workdir / "data"),
            "TALLY_LOCATIONS_FILE": str(self.locations_file),
            "TALLY_WEB_PORT": str(self.web_port), "TALLY_COMMIT_INTERVAL_SECONDS": "0.5",
            **self.extra_env,
        }

    def create_topics(self) -> None:
        ensure_topics(self.bootstrap, self.topics, self.partitions)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.log_file.open("ab") as log:
            log.write(f"\n==== start {self.starts} ====\n".encode())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker", "--loglevel=warn"],
            env=self.env(), stdout=self.log_file.open("ab"), stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 90.0) -> None:
        problem = wait_until_ready(f"{self.url}/readyz", self.alive, timeout)
        if problem is not None:
            raise AssertionError(f"worker {problem}:\n{self.tail()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()

    def tail(self, chars: int = 4000) -> str:
        return self.log_file.read_text(errors="replace")[-chars:] if self.log_file.exists() else ""

    def lookup(self, sku: str, branch: str) -> dict:
        from pipeline.operations.ledger import fetch_position

        return fetch_position(self.url, sku, branch)

    def changelog_topic(self) -> str:
        return changelog_topic(self.app_id)


def publish_catalog(bootstrap: str, topic: str, rows: Iterable[tuple[str, str, str]]) -> None:
    p = producer(bootstrap)
    for shop, sku, item in rows:
        p.produce(topic, key=f"{shop}|{sku}".encode(),
                  value=json.dumps({"shop": shop, "sku": sku, "inventory_item_id": item}).encode())
    assert p.flush(30) == 0


def mapped_traffic(worker: WorkerProcess, locations_file: Path, skus: list[str], *, seed: int,
                   events: int, duplicate_rate: float) -> tuple[list[tuple[str, bytes]], Oracle]:
    """Publish a catalog mapping every SKU in ``worker``'s shop, and generate the realistic mix
    over ``skus`` at three branches and the 3PL; returns (the stream, an oracle fed with it)."""
    rows = [(SHOP, sku, f"gid://shopify/InventoryItem/{i}") for i, sku in enumerate(skus, 1)]
    publish_catalog(worker.bootstrap, worker.topics.catalog, rows)
    stream = list(TrafficGenerator(
        skus=skus, branches=["WH-ONLINE", "STORE-ONLINE", "STORE-RETAIL-ONLY"],
        tpl_branches=["3PL-EU"], seed=seed, duplicate_rate=duplicate_rate).encoded(events))
    oracle = Oracle(load_locations(locations_file),
                    Catalog().with_entries(CatalogEntry(*r) for r in rows))
    oracle.feed(stream)
    return stream, oracle


def produce_events(p: Producer, topics: Topics, events: Iterable[tuple[str, bytes]], *,
                   keying: str = "none", partitions: int = 4) -> int:
    """Produce (source system, raw bytes) pairs; return how many. ``keying="mixed"`` rotates
    over what producers do: keyed ``sku@location`` on murmur2's partition (as the contract
    recommends: the worker applies such records where it reads them), the same key on
    librdkafka's default CRC32 partition (``partitions`` of the source topic: re-keyed), and no
    key (re-keyed, unless it lands on its key's partition by chance)."""
    by_system = topics.sources()
    n = 0
    for system, raw in events:
        key = _sku_at_location(raw) if keying == "mixed" and n % 3 < 2 else None
        if key is not None and n % 3 == 1:
            p.produce(by_system[system], key=key, value=raw,
                      partition=zlib.crc32(key) % partitions)
        else:
            p.produce(by_system[system], key=key, value=raw)
        n += 1
        if n % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    return n


def _sku_at_location(raw: bytes) -> bytes | None:
    try:
        ev = json.loads(raw)
        return f"{ev['sku']}@{ev['location']}".encode()
    except (ValueError, KeyError, TypeError):  # hostile bytes: no key
        return None


def read_changelog(
    bootstrap: str, topic: str, *, timeout: float = 60.0
) -> dict[str, LedgerPosition]:
    """The latest position per key, as the changelog holds it (what recovery would restore)."""
    latest: dict[str, LedgerPosition] = {}
    for msg in consume_all(bootstrap, topic, timeout=timeout, idle=3.0):
        if msg.value() is not None:
            latest[msg.key().decode()] = LedgerPosition.from_json(msg.value())
    return latest


def records(bootstrap: str, topic: str, **kw: float) -> list[dict]:
    return [json.loads(m.value()) for m in consume_all(bootstrap, topic, **kw)]


def metric(url: str, sample: str) -> float:
    """One sample of a service's ``/metrics`` (name with labels, as exposed), 0 if absent."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
    return 0.0


def wait_for_oracle(worker: WorkerProcess, oracle: Any, timeout: float) -> list:
    """Wait until the worker has consumed everything, then diff its changelog with the oracle."""
    from tests.support.kafka import wait_caught_up
    from tests.support.oracle import diff

    wait_caught_up(worker.bootstrap, worker.app_id,
                   [*worker.topics.sources().values(), worker.topics.movements],
                   timeout=timeout, alive=worker.alive)
    ledger = read_changelog(worker.bootstrap, worker.changelog_topic(), timeout=60)
    return diff(ledger, oracle.positions)
