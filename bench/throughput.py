"""Ledger throughput (one worker) beside a plain consume → produce passthrough ceiling.

Each repetition: fresh topics and app; the worker(s) start and are ready; the realistic mix
(``pipeline.simulation.traffic``) over ``skus`` x 5 branches is produced as fast as possible; the
clock stops when every source record and every re-keyed movement is committed by the worker's
group (committed only once what they produced, changelog writes included, is in Kafka). Then,
on the same broker and the same source records, the passthroughs (aiokafka, confluent-kafka) copy
every record to a fresh topic in this process.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer

from bench.common import (
    BenchWorker,
    Watermarks,
    cpu_seconds,
    fake_catalog,
    log,
    median,
    new_worker,
    produce_sources,
    producer,
    publish_catalog,
    rss_bytes,
    traffic,
    write_locations,
)
from pipeline.topics import Topics, changelog_topic
from tests.support.kafka import create_topics, unique
from tests.support.worker import unique_topics


def encoded_events(n: int, skus: int, seed: int) -> list[tuple[str, bytes]]:
    return list(traffic(skus, seed=seed).encoded(n))


def run_ledger(bootstrap: str, workdir: Path, *, events: list[tuple[str, bytes]], skus: int,
               workers: int = 1, partitions: int = 8, timeout: float = 600.0,
               profile_out: Path | None = None, extra_env: dict[str, str] | None = None,
               loglevel: str | None = None) -> dict[str, Any]:
    """One repetition: ``workers`` workers on fresh topics; returns rate, CPU and RSS.
    ``extra_env``/``loglevel`` configure the worker processes (for A/B variants)."""
    topics = unique_topics()
    app_id = unique("tally-bench")
    locations = write_locations(workdir / "locations.toml")
    procs: list[BenchWorker] = [
        new_worker(bootstrap, workdir / f"w{i}", locations, partitions=partitions, topics=topics,
                   app_id=app_id, profile_out=profile_out if i == 0 else None,
                   extra_env=dict(extra_env or {}), loglevel=loglevel)
        for i in range(workers)]
    procs[0].create_topics()
    publish_catalog(bootstrap, topics.catalog, fake_catalog(skus))
    wm = Watermarks(bootstrap)
    try:
        for w in procs:
            w.start()
        for w in procs:
            w.wait_ready(timeout=180)
        if workers > 1:
            time.sleep(5.0)  # let the group settle on its final assignment
            for w in procs:
                w.wait_ready(timeout=120)
        pids = [w.worker_pid() for w in procs]
        cpu0 = sum(cpu_seconds(p) for p in pids)
        t0 = time.monotonic()
        n = produce_sources(producer(bootstrap), topics, events)
        produced_s = time.monotonic() - t0
        sources = list(topics.sources().values())
        changelog = changelog_topic(app_id)
        done_at = None
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if all(not w.alive() for w in procs):
                raise RuntimeError(f"workers died:\n{procs[0].tail()}")
            # Every source record committed: what they produced is in Kafka (the reader flushes
            # before it commits), the changelog writes of movements applied where read included.
            # Then every re-keyed movement committed by the ledger agent, likewise.
            if (wm.committed(app_id, sources) >= n and wm.total(changelog) > 0
                    and wm.committed(app_id, [topics.movements]) >= wm.total(topics.movements)):
                done_at = time.monotonic()
                break
            time.sleep(0.1)
        if done_at is None:
            raise RuntimeError(f"ledger did not finish {n} events in {timeout}s")
        elapsed = done_at - t0
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        rss = max(rss_bytes(p) for p in pids)
        result = {
            "events": n, "movements": wm.total(topics.movements), "seconds": elapsed,
            "events_per_s": n / elapsed, "worker_cpu_s": cpu,
            "events_per_worker_cpu_s": n / cpu if cpu > 0 else None,
            "produce_s": produced_s, "pushes": wm.total(topics.shopify_push),
            "rss_mib": rss / 2**20, "workers": workers,
        }
        result["_topics"] = topics
        return result
    finally:
        wm.close()
        for w in procs:
            w.stop_profiled()


async def passthrough_aiokafka(bootstrap: str, sources: list[str], n: int,
                               timeout: float = 300.0) -> dict[str, Any]:
    """Consume ``n`` records with aiokafka and produce each to a fresh topic."""
    out = unique("pass-aio")
    create_topics(bootstrap, [out], 8)
    consumer = AIOKafkaConsumer(*sources, bootstrap_servers=bootstrap, group_id=unique("pass"),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await prod.start()
    count = 0
    t0: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while count < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                if t0 is None and records:
                    t0 = time.monotonic()
                for r in records:
                    await prod.send(out, key=r.key, value=r.value)
                    count += 1
        await prod.flush()
        t1 = time.monotonic()
    finally:
        await prod.stop()
        await consumer.stop()
    assert t0 is not None
    return {"events": count, "seconds": t1 - t0, "events_per_s": count / (t1 - t0)}


def passthrough_confluent(bootstrap: str, sources: list[str], n: int,
                          timeout: float = 300.0) -> dict[str, Any]:
    """Consume ``n`` records with confluent-kafka and produce each to a fresh topic."""
    out = unique("pass-ck")
    create_topics(bootstrap, [out], 8)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("pass"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(sources)
    p = producer(bootstrap)
    count = 0
    t0: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while count < n and time.monotonic() < deadline:
            msgs = c.consume(5000, 0.5)
            if msgs and t0 is None:
                t0 = time.monotonic()
            for m in msgs:
                if m.error():
                    continue
                while True:
                    try:
                        p.produce(out, key=m.key(), value=m.value())
                        break
                    except BufferError:
                        p.poll(0.01)
                count += 1
            p.poll(0)
        p.flush(60)
        t1 = time.monotonic()
    finally:
        c.close()
    assert t0 is not None
    return {"events": count, "seconds": t1 - t0, "events_per_s": count / (t1 - t0)}


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int) -> dict[str, Any]:
    skus = 2_000 if quick else 20_000  # x 5 branches = 10,000 / 100,000 SKU@locations
    n = 3_000 if quick else 40_000
    ledger_runs, aio_runs, ck_runs = [], [], []
    for rep in range(reps):
        events = encoded_events(n, skus, seed=100 + rep)
        log(f"throughput rep {rep + 1}/{reps}: {n} events over {skus * 5} keys")
        res = run_ledger(bootstrap, workdir / f"rep{rep}", events=events, skus=skus)
        topics: Topics = res.pop("_topics")
        sources = list(topics.sources().values())
        ledger_runs.append(res)
        aio_runs.append(asyncio.run(passthrough_aiokafka(bootstrap, sources, n)))
        ck_runs.append(passthrough_confluent(bootstrap, sources, n))
        log(f"  ledger {res['events_per_s']:.0f}/s, aiokafka {aio_runs[-1]['events_per_s']:.0f}"
            f"/s, confluent {ck_runs[-1]['events_per_s']:.0f}/s")
    ledger = median(r["events_per_s"] for r in ledger_runs)
    aio = median(r["events_per_s"] for r in aio_runs)
    ck = median(r["events_per_s"] for r in ck_runs)
    return {
        "keys": skus * 5, "events_per_run": n, "repetitions": reps,
        "ledger_events_per_s": ledger,
        "ledger_events_per_worker_cpu_s": median(r["events_per_worker_cpu_s"]
                                                 for r in ledger_runs),
        "passthrough_aiokafka_events_per_s": aio,
        "passthrough_confluent_events_per_s": ck,
        "ratio_ledger_to_aiokafka": ledger / aio,
        "ratio_ledger_to_confluent": ledger / ck,
        "runs": {"ledger": ledger_runs, "aiokafka": aio_runs, "confluent": ck_runs},
    }
