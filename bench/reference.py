"""Tally's worker beside reference loops, interleaved in one run on the same broker (issue 15).

Each repetition runs, in an order that rotates between repetitions (background load hits all
alike), on the same events:

* ``tally`` — ``tally worker`` (``bench.throughput.run_ledger``) on records keyed ``sku@location``
  as the contract recommends, so each movement is applied where it is read (one hop): dedupe,
  ledger, pushes and audit trail.
* ``tally_rekeyed`` — the same worker re-keying every movement through the movements topic
  (``TALLY_APPLY_IN_PLACE=false``): two hops, as before the one-hop path.
* ``tally_base`` — ``tally``, with the worker's code from another checkout
  (``TALLY_BENCH_BASE_TREE``, e.g. a ``git worktree`` of the commit before a change): before and
  after in one run. Run the bench from outside the checkout (the worker's working directory comes
  first on its import path).
* ``raw`` — confluent-kafka consume → rocksdict write batch → produce one record per event, in
  this process, no faust, no decoding: the floor of consume + store + produce.
* ``raw_core`` — the same loop calling Tally's pure core per record (``bench.core.Core``: decode
  with validation, re-key, ledger apply against the RocksDB state, push and audit encoding) and
  producing what the core emits (pushes, audit records).
* ``faust_1hop`` / ``faust_2hops`` — minimal faust agents (``bench.faust_min``): json, a RocksDB
  table get/set with its changelog, one output; 2 hops re-keys through a second topic first, as
  Tally does.

Per variant: events/s (first record consumed → last output), the worker's CPU-ms per event
(user + system of the worker process, or of this process for the in-process loops, librdkafka's
threads included) and Tally's ratio to it (``tally_cpu_ratio`` = Tally's CPU per event / the
variant's; ``tally_rate_ratio`` = the variant's events/s / Tally's).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException
from rocksdict import Options, Rdict, WriteBatch

from bench.common import (
    ROOT,
    Watermarks,
    cpu_seconds,
    log,
    median,
    produce,
    produce_sources,
    producer,
    stop_process,
    wait_for,
)
from bench.core import Core, scenario
from bench.throughput import encoded_events, run_ledger
from pipeline.topics import Topics
from tests.support.kafka import create_topics, unique
from tests.support.worker import free_port, unique_topics

VARIANTS = ("tally", "tally_rekeyed", "tally_base", "raw", "raw_core", "faust_1hop",
            "faust_2hops")
LABELS = {
    "tally": "Tally's worker",
    "tally_rekeyed": "Tally's worker re-keying every movement (TALLY_APPLY_IN_PLACE=false)",
    "tally_base": "Tally's worker, code of TALLY_BENCH_BASE_TREE",
    "raw": "raw confluent-kafka consume + rocksdict write batch + produce (no faust)",
    "raw_core": "the same loop calling Tally's pure core (decode, validate, apply, encode)",
    "faust_1hop": "minimal faust, 1 hop: json, RocksDB table get/set with changelog, 1 output",
    "faust_2hops": "minimal faust, 2 hops (re-key to a second topic, then the table)",
}
PARTITIONS = 8


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class BatchTable(MutableMapping[bytes, bytes]):
    """RocksDB as the core's table: reads see this batch's writes; ``flush`` writes the batch."""

    def __init__(self, db: Rdict) -> None:
        self.db = db
        self.pending: dict[bytes, bytes] = {}

    def __getitem__(self, key: bytes) -> bytes:
        if key in self.pending:
            return self.pending[key]
        value = self.db.get(key)
        if value is None:
            raise KeyError(key)
        return bytes(value)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.pending[key] = value

    def __delitem__(self, key: bytes) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[bytes]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def flush(self) -> None:
        if self.pending:
            batch = WriteBatch(raw_mode=True)
            for key, value in self.pending.items():
                batch.put(key, value)
            self.db.write(batch)
            self.pending.clear()


def raw_loop(bootstrap: str, sources: dict[str, str], n: int, workdir: Path,
             core: Core | None = None, timeout: float = 600.0) -> dict[str, Any]:
    """Consume ``n`` records of ``sources`` (topic → system); per ``consume`` batch: store,
    produce, commit."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = unique("ref-out")
    outs = {"push": unique("ref-push"), "history": unique("ref-history")}
    create_topics(bootstrap, [out, *outs.values()], PARTITIONS)
    db = Rdict(str(workdir / "db"), options=Options(raw_mode=True))
    table = BatchTable(db)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("ref"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.subscribe(list(sources))
    p = producer(bootstrap)
    count = produced = 0
    t0: float | None = None
    cpu0 = 0.0
    deadline = time.monotonic() + timeout
    try:
        while count < n and time.monotonic() < deadline:
            msgs = c.consume(1000, 0.5)
            if not msgs:
                continue
            if t0 is None:
                t0, cpu0 = time.monotonic(), _self_cpu()
            now = time.time()
            for msg in msgs:
                if msg.error():
                    continue
                value = msg.value()
                if core is None:
                    key = f"{msg.partition()}:{msg.offset()}".encode()
                    table[key] = value
                    produce(p, out, key, value)
                    produced += 1
                else:
                    for kind, okey, ovalue in core.sends(sources[msg.topic()], value, table,
                                                         now):
                        produce(p, outs[kind], okey, ovalue)
                        produced += 1
                count += 1
            table.flush()
            p.poll(0)
            c.commit(asynchronous=True)
        if p.flush(120):
            raise RuntimeError("reference loop: records not flushed")
        t1, cpu1 = time.monotonic(), _self_cpu()
    finally:
        c.close()
        db.close()
    if t0 is None or count < n:
        raise RuntimeError(f"reference loop consumed {count} of {n}")
    return {"events": count, "records_out": produced, "seconds": t1 - t0,
            "events_per_s": count / (t1 - t0), "worker_cpu_s": cpu1 - cpu0,
            "cpu_ms_per_event": (cpu1 - cpu0) / count * 1e3}


def _total(wm: Watermarks, topic: str) -> int:
    """A topic's record count; -1 while the broker does not serve it yet (just created)."""
    try:
        return wm.total(topic)
    except KafkaException:
        return -1


def faust_min(bootstrap: str, workdir: Path, *, hops: int, events: list[tuple[str, bytes]],
              warmup: tuple[str, bytes], timeout: float = 600.0) -> dict[str, Any]:
    """One run of ``bench.faust_min``: ready (a warm-up record's output seen), then ``events``
    produced as fast as possible; done when every event's output is on the output topic."""
    workdir.mkdir(parents=True, exist_ok=True)
    topics: Topics = unique_topics()
    app_id = unique(f"faust-min{hops}")
    mid, out = unique("ref-mid"), unique("ref-out")
    sources = list(topics.sources().values())
    create_topics(bootstrap, [*sources, mid, out, f"{app_id}-counts-changelog"], PARTITIONS)
    env = {**os.environ, "BENCH_FAUST_HOPS": str(hops), "BENCH_FAUST_APP": app_id,
           "BENCH_FAUST_BOOTSTRAP": bootstrap, "BENCH_FAUST_DATADIR": str(workdir / "data"),
           "BENCH_FAUST_PARTITIONS": str(PARTITIONS), "BENCH_FAUST_WEB_PORT": str(free_port()),
           "BENCH_FAUST_SOURCES": ",".join(sources), "BENCH_FAUST_MID": mid,
           "BENCH_FAUST_OUT": out,
           "TALLY_COMMIT_INTERVAL_SECONDS": "0.5"}  # what tests.support.worker gives Tally
    log_file = workdir / "faust.log"
    proc = subprocess.Popen([sys.executable, "-m", "bench.faust_min", "worker",
                             "--loglevel=info"], env=env, cwd=ROOT,
                            stdout=log_file.open("ab"), stderr=subprocess.STDOUT)
    wm = Watermarks(bootstrap)
    try:
        p = producer(bootstrap)
        produce(p, topics.sources()[warmup[0]], None, warmup[1])
        p.flush(30)
        if not wait_for(lambda: proc.poll() is None and _total(wm, out) >= 1, 240, 0.2):
            raise RuntimeError(f"minimal faust ({hops} hops) not ready; see {log_file}")
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        n = produce_sources(p, topics, events)
        done = wait_for(lambda: proc.poll() is not None or _total(wm, out) >= n + 1, timeout, 0.05)
        t1 = time.monotonic()
        if not done or proc.poll() is not None:
            raise RuntimeError(f"minimal faust ({hops} hops) did not finish; see {log_file}")
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        wm.close()
        stop_process(proc)
    return {"events": n, "seconds": t1 - t0, "events_per_s": n / (t1 - t0),
            "worker_cpu_s": cpu, "cpu_ms_per_event": cpu / n * 1e3}


def _tally(bootstrap: str, workdir: Path, events: list[tuple[str, bytes]],
           skus: int, *, in_place: bool = True,
           base: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    env = {"TALLY_APPLY_IN_PLACE": "true" if in_place else "false"}
    if base:
        tree = os.environ.get("TALLY_BENCH_BASE_TREE")
        if not tree:
            raise RuntimeError("tally_base needs TALLY_BENCH_BASE_TREE (a checkout to run)")
        env["PYTHONPATH"] = tree
    res = run_ledger(bootstrap, workdir, events=events, skus=skus, partitions=PARTITIONS,
                     extra_env=env)
    topics: Topics = res.pop("_topics")
    res["cpu_ms_per_event"] = res["worker_cpu_s"] / res["events"] * 1e3
    return res, {topic: system for system, topic in topics.sources().items()}


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int, only: list[str] | None = None,
        events_per_run: int | None = None) -> dict[str, Any]:
    skus = 2_000 if quick else 20_000  # x 5 branches = 10,000 / 100,000 SKU@locations
    n = events_per_run or (3_000 if quick else 40_000)
    names = [v for v in VARIANTS if v in only] if only else [
        v for v in VARIANTS if v != "tally_base" or os.environ.get("TALLY_BENCH_BASE_TREE")]
    locations, catalog = scenario(workdir, skus)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    for rep in range(reps):
        events = encoded_events(n, skus, seed=600 + rep)
        warmup = encoded_events(1, skus, seed=10_600 + rep)[0]
        order = names[rep % len(names):] + names[:rep % len(names)]
        sources: dict[str, str] | None = None
        log(f"reference rep {rep + 1}/{reps}: {n} events over {skus * 5} keys; "
            f"order {', '.join(order)}")
        for name in order:
            d = workdir / f"rep{rep}-{name}"
            if name in ("tally", "tally_rekeyed", "tally_base"):
                res, sources = _tally(bootstrap, d, events, skus,
                                      in_place=name != "tally_rekeyed",
                                      base=name == "tally_base")
            elif name in ("raw", "raw_core"):
                if sources is None:  # the loops read records already on the broker
                    topics = unique_topics()
                    sources = {t: s for s, t in topics.sources().items()}
                    create_topics(bootstrap, list(sources), PARTITIONS)
                    produce_sources(producer(bootstrap), topics, events)
                core = Core(locations, catalog) if name == "raw_core" else None
                res = raw_loop(bootstrap, sources, n, d, core=core)
            else:
                res = faust_min(bootstrap, d, hops=1 if name == "faust_1hop" else 2,
                                events=events, warmup=warmup)
            runs[name].append(res)
            log(f"  {name}: {res['events_per_s']:,.0f} events/s, "
                f"{res['cpu_ms_per_event']:.3f} CPU-ms/event")
    out: dict[str, Any] = {"keys": skus * 5, "events_per_run": n, "repetitions": reps,
                           "partitions": PARTITIONS, "variants": {}}
    tally = runs.get("tally")
    t_eps = median(r["events_per_s"] for r in tally) if tally else None
    t_cpu = median(r["cpu_ms_per_event"] for r in tally) if tally else None
    for name, rs in runs.items():
        eps = median(r["events_per_s"] for r in rs)
        cpu = median(r["cpu_ms_per_event"] for r in rs)
        out["variants"][name] = {
            "label": LABELS[name], "events_per_s": eps, "cpu_ms_per_event": cpu,
            "tally_rate_ratio": eps / t_eps if t_eps else None,
            "tally_cpu_ratio": t_cpu / cpu if t_cpu and cpu else None, "runs": rs}
    return out
