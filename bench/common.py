"""Shared pieces of the benchmarks: broker, scenario (branches, catalog, traffic), Kafka reads,
subprocesses (worker, sink, simulator) and statistics."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.infra.kafka_write import new_producer
from pipeline.infra.local_kafka import LocalKafka
from pipeline.simulation.traffic import TrafficGenerator
from pipeline.topics import Topics
from tests.support.kafka import unique
from tests.support.worker import WorkerProcess, free_port, topics_env, unique_topics

BENCH_PORT = int(os.environ.get("TALLY_BENCH_KAFKA_PORT", "39092"))
BENCH_CONTROLLER_PORT = int(os.environ.get("TALLY_BENCH_KAFKA_CONTROLLER_PORT", "39093"))
SHOP = "tally-sim-1.myshopify.com"
ROOT = Path(__file__).resolve().parent.parent

# The realistic scenario: 4 store/warehouse branches + 1 3PL, every SKU at every branch.
# Four branches publish to Shopify (four simulator locations), one store is retail-only.
ONLINE_BRANCHES = ("WH-1", "STORE-1", "STORE-2")
RETAIL_BRANCH = "STORE-RETAIL"
TPL_BRANCH = "3PL-1"
BRANCHES = (*ONLINE_BRANCHES, RETAIL_BRANCH)
SHOPIFY_BRANCHES = (*ONLINE_BRANCHES, TPL_BRANCH)  # → simulator "Warehouse 1..4"


def log(msg: str) -> None:
    """Progress line on stderr (results go to files)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- broker ------------------------------------------------------------------------------------


def bench_broker() -> LocalKafka:
    """The benchmarks' own broker (dedicated ports, never the test or dev broker)."""
    return LocalKafka(port=BENCH_PORT, controller_port=BENCH_CONTROLLER_PORT)


@contextmanager
def broker() -> Iterator[str]:
    """Yield the bench broker's bootstrap; ``TALLY_BENCH_BOOTSTRAP`` uses an existing one."""
    if existing := os.environ.get("TALLY_BENCH_BOOTSTRAP"):
        yield existing
        return
    kafka = bench_broker()
    was_running = kafka.pid() is not None
    if not was_running:
        # Fresh data: every run creates new topics, and a broker that has to load thousands of
        # old partitions at start takes longer than its start deadline on a busy machine.
        kafka.reset()
    bootstrap = kafka.up()
    try:
        yield bootstrap
    finally:
        if not was_running and os.environ.get("TALLY_BENCH_KEEP_BROKER") != "1":
            kafka.down()


# -- statistics --------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else float("nan")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list; inf entries allowed."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def summarize(runs: list[dict[str, Any]], keys: Iterable[str]) -> dict[str, Any]:
    """Median of each key over runs, plus the raw runs."""
    return {**{k: median(r[k] for r in runs if k in r) for k in keys}, "runs": runs}


# -- scenario ----------------------------------------------------------------------------------


def sku_name(i: int) -> str:
    """Same names as the simulator's generated SKUs."""
    return f"SKU-{i:05d}"


def locations_toml(location_ids: dict[str, str]) -> str:
    """Branches file; ``location_ids`` maps a Shopify-published branch to its location GID."""
    out = []
    for branch in (*BRANCHES, TPL_BRANCH):
        online = branch in location_ids
        out += [f'[[branch]]\nid = "{branch}"\nname = "{branch}"',
                f"fulfills_online = {'true' if online else 'false'}",
                f"safety_buffer = {1 if branch == 'STORE-2' else 0}"]
        if branch == TPL_BRANCH:
            out.append('on_hand_source = "3pl"')
        if online:
            out.append(f'[branch.shopify]\nshop = "{SHOP}"\nlocation_id = "{location_ids[branch]}"')
        out.append("")
    return "\n".join(out)


def fake_location_ids() -> dict[str, str]:
    return {b: f"gid://shopify/Location/{900 + i}" for i, b in enumerate(SHOPIFY_BRANCHES)}


def write_locations(path: Path, location_ids: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(locations_toml(location_ids or fake_location_ids()))
    return path


def traffic(skus: int, seed: int = 7, start: float | None = None, step: float = 0.001
            ) -> TrafficGenerator:
    """The realistic mix over ``skus`` x 5 branches (4 + one 3PL)."""
    return TrafficGenerator(skus=[sku_name(i) for i in range(1, skus + 1)], branches=BRANCHES,
                            tpl_branches=(TPL_BRANCH,), seed=seed,
                            start=time.time() if start is None else start, step=step)


def producer(bootstrap: str, **extra: Any) -> Producer:
    return new_producer(bootstrap, extra={"queue.buffering.max.messages": 1_000_000, **extra})


def produce(p: Producer, topic: str, key: bytes | None, value: bytes) -> None:
    for _ in range(10_000):
        try:
            p.produce(topic, key=key, value=value)
            return
        except BufferError:
            p.poll(0.01)
    raise RuntimeError("producer queue stayed full")


def publish_catalog(bootstrap: str, topic: str, items: dict[str, str]) -> None:
    """Catalog records: sku → inventory item GID in ``SHOP``."""
    p = producer(bootstrap)
    for sku, item in items.items():
        produce(p, topic, f"{SHOP}|{sku}".encode(),
                json.dumps({"shop": SHOP, "sku": sku, "inventory_item_id": item}).encode())
    if p.flush(60):
        raise RuntimeError("catalog not flushed")


def fake_catalog(skus: int) -> dict[str, str]:
    return {sku_name(i): f"gid://shopify/InventoryItem/{100000 + i}" for i in range(1, skus + 1)}


def source_key(event: dict[str, Any]) -> bytes:
    """The record key the contract recommends (schemas/README.md): ``sku@location``, on
    murmur2's partition (``producer``), so the worker applies it where it reads it."""
    return f"{event['sku']}@{event['location']}".encode()


def produce_sources(p: Producer, topics: Topics, events: Iterable[tuple[str, bytes]]) -> int:
    """Produce (system, raw event) pairs keyed as the contract recommends; returns how many."""
    by_system = topics.sources()
    n = 0
    for system, raw in events:
        produce(p, by_system[system], source_key(json.loads(raw)), raw)
        n += 1
        if n % 2000 == 0:
            p.poll(0)
    if p.flush(120):
        raise RuntimeError("source events not flushed")
    return n


# -- Kafka reads -------------------------------------------------------------------------------


class Watermarks:
    """Cheap high-watermark sums of topics (one metadata consumer, reused)."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("wm"),
                                  "enable.auto.commit": False})
        self._parts: dict[str, list[int]] = {}

    def partitions(self, topic: str) -> list[int]:
        if not self._parts.get(topic):
            md = self.consumer.list_topics(topic, timeout=10)
            meta = md.topics.get(topic)
            self._parts[topic] = sorted(meta.partitions) if meta and not meta.error else []
        return self._parts[topic]

    def total(self, topic: str) -> int:
        total = 0
        for p in self.partitions(topic):
            _, hi = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi
        return total

    def committed(self, group: str, topics: Iterable[str]) -> int:
        """Sum of a group's committed offsets over the topics."""
        tps = [TopicPartition(t, p) for t in topics for p in self.partitions(t)]
        admin_consumer = Consumer({"bootstrap.servers": self.consumer_bootstrap,
                                   "group.id": group, "enable.auto.commit": False})
        try:
            return sum(max(0, tp.offset) for tp in admin_consumer.committed(tps, timeout=10))
        finally:
            admin_consumer.close()

    @property
    def consumer_bootstrap(self) -> str:
        return self._bootstrap

    def close(self) -> None:
        self.consumer.close()


def read_topic(bootstrap: str, topic: str, timeout: float = 120.0) -> list[Any]:
    """Every record of a topic up to its current high watermarks (confluent Message objects)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("read"),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error:
            return []
        ends = {}
        for p in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                ends[p] = hi
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in c.consume(5000, 0.5):
                if msg.error():
                    continue
                out.append(msg)
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
        return out
    finally:
        c.close()


def wait_for(cond: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


# -- subprocesses ------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class BenchWorker(WorkerProcess):
    """A ``tally worker`` subprocess; optionally under ``py-spy record`` for profiling."""

    profile_out: Path | None = None
    profile_rate: int = 100
    loglevel: str | None = None

    def start(self) -> None:
        """Start ``tally worker`` at its production default ``--loglevel=info``.

        (``--loglevel=warn``, which the test helper uses, makes faust's terminal spinner set the
        root logger to DEBUG: every aiokafka/faust debug call then builds a LogRecord.
        ``TALLY_BENCH_WORKER_LOGLEVEL`` picks another level to measure that.)"""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        level = self.loglevel or os.environ.get("TALLY_BENCH_WORKER_LOGLEVEL", "info")
        cmd = [sys.executable, "-m", "pipeline.cli", "worker", f"--loglevel={level}"]
        if self.profile_out is not None:
            spy = Path(sys.executable).parent / "py-spy"
            cmd = [str(spy), "record", "--format", "raw", "-r", str(self.profile_rate), "-o",
                   str(self.profile_out), "--", *cmd]
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=self.log_file.open("ab"),
                                     stderr=subprocess.STDOUT)

    def worker_pid(self) -> int:
        """The Python worker's pid (the child of py-spy when profiling)."""
        assert self.proc is not None
        if self.profile_out is None:
            return self.proc.pid
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        for _ in range(100):
            pids = children.read_text().split() if children.exists() else []
            if pids:
                return int(pids[0])
            time.sleep(0.1)
        raise RuntimeError("py-spy child not found")

    def stop_profiled(self) -> None:
        """Stop the worker so py-spy writes its profile: TERM to the worker, then wait."""
        if self.proc is None:
            return
        if self.profile_out is not None and self.alive():
            os.kill(self.worker_pid(), signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.stop()


def new_worker(bootstrap: str, workdir: Path, locations_file: Path, partitions: int = 8,
               topics: Topics | None = None, app_id: str | None = None,
               **kw: Any) -> BenchWorker:
    return BenchWorker(bootstrap, workdir, locations_file, partitions=partitions,
                       topics=topics or unique_topics(), app_id=app_id or unique("tally-bench"),
                       web_port=free_port(), **kw)


@dataclass
class SimProcess:
    """The Shopify simulator in its own process (``bench.simproc``), so it has its own GIL."""

    skus: int
    workdir: Path
    locations: int = 4
    plan: str = "standard"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> dict[str, Any]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        info_file = self.workdir / "sim-info.json"
        info_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.simproc", "--port", str(self.port), "--skus",
             str(self.skus), "--locations", str(self.locations), "--plan", self.plan,
             "--info", str(info_file)],
            stdout=(self.workdir / "sim.log").open("ab"), stderr=subprocess.STDOUT, cwd=ROOT)
        if not wait_for(info_file.exists, timeout, 0.2):
            raise RuntimeError("simulator did not start")
        time.sleep(0.2)
        self.info = json.loads(info_file.read_text())
        return self.info

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_sim/stats", timeout=10) as r:
            return dict(json.loads(r.read()))

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class SinkProcess:
    """``python -m pipeline.sink.service`` against the simulator, on bench topics."""

    bootstrap: str
    workdir: Path
    topics: Topics
    shop_url: str
    token: str
    window_s: float | None = None
    quick_window_s: float | None = None  # None: the sink's default; 0: off
    web_port: int = field(default_factory=free_port)
    group: str = field(default_factory=lambda: unique("bench-sink"))
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        shops = self.workdir / "shops.toml"
        shops.write_text(f'[[shop]]\ndomain = "{SHOP}"\nadmin_url = "{self.shop_url}"\n'
                         f'api_version = "2026-10"\ntoken_env = "TALLY_BENCH_SHOP_TOKEN"\n')
        env = {**os.environ, **topics_env(self.topics), "TALLY_BENCH_SHOP_TOKEN": self.token,
               "TALLY_SHOPS_FILE": str(shops), "TALLY_KAFKA_BOOTSTRAP": self.bootstrap,
               "TALLY_SINK_GROUP": self.group, "TALLY_SINK_WEB_PORT": str(self.web_port)}
        if self.window_s is not None:
            env["TALLY_SINK_WINDOW_S"] = str(self.window_s)
        if self.quick_window_s is not None:
            env["TALLY_SINK_QUICK_WINDOW_S"] = str(self.quick_window_s)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.sink.service"], env=env, cwd=ROOT,
            stdout=(self.workdir / "sink.log").open("ab"), stderr=subprocess.STDOUT)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/stats", timeout=5) as r:
            return dict(json.loads(r.read()))

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ok() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"sink exited; see {self.workdir / 'sink.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/readyz",
                                            timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        if not wait_for(ok, timeout, 0.3):
            raise RuntimeError("sink not ready")

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM this process (by its pid), SIGKILL after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def describe_machine() -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg_1m_at_start": round(load1, 2),
            "loadavg_5m_at_start": round(load5, 2), "python": sys.version.split()[0],
            "mem_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                   / 2**30, 1)}
