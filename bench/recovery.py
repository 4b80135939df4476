"""Recovery after ``kill -9`` with 1M keys in the ledger, and worker RSS at 1M keys.

The 1M positions are written straight to the table's changelog topic (the exact records the
worker itself writes: ``LedgerPosition.to_json()`` keyed ``sku@branch``, murmur2-partitioned like
faust), which is what a worker that had processed them would leave behind; pushing 1M events
through the worker first would take longer than the whole benchmark budget. Then:

1. **cold restore**: a worker with an empty data dir starts and restores the table from the
   changelog (a new host / lost disk); time to ``/readyz`` and RSS once ready.
2. **kill -9** (each repetition): SIGKILL, restart on the same data dir, and at the restart produce
   a probe event; *processing again* = restart → the probe's push is on the push topic; also
   restart → ``/readyz``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BRANCHES,
    TPL_BRANCH,
    Watermarks,
    fake_catalog,
    log,
    median,
    new_worker,
    produce,
    producer,
    publish_catalog,
    rss_bytes,
    sku_name,
    wait_for,
    write_locations,
)
from pipeline.ledger.position import LedgerPosition
from tests.support.kafka import create_topics


def write_positions(bootstrap: str, topic: str, skus: int) -> int:
    """``skus`` x 5 branches positions, each with a dedupe mark, to the changelog topic."""
    p = producer(bootstrap, **{"linger.ms": 20, "batch.size": 1_000_000})
    now = time.time()
    n = 0
    for i in range(1, skus + 1):
        sku = sku_name(i)
        for branch in (*BRANCHES, TPL_BRANCH):
            pos = LedgerPosition(sku=sku, branch=branch, on_hand=20 + i % 50,
                                 pending_sales=i % 3, allocated=i % 2, version=3,
                                 marks={f"erp:ERP-{i}:1": int(now)},
                                 on_hand_as_of=now - 60, snapshot_as_of={"erp": now - 60},
                                 last_applied={"erp": now}, last_published_ats=20 + i % 50)
            produce(p, topic, pos.key.encode(), pos.to_json())
            n += 1
            if n % 5000 == 0:
                p.poll(0)
    if p.flush(300):
        raise RuntimeError("positions not flushed")
    return n


def probe_event(i: int) -> bytes:
    return json.dumps({
        "schema_version": "1", "type": "erp.goods_receipt", "source": "erp",
        "transaction_id": f"ERP-PROBE-{i}-{time.time_ns()}", "line": 1,
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sku": sku_name(1),
        "location": "WH-1", "quantity": 1}).encode()


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int) -> dict[str, Any]:
    skus = 4_000 if quick else 200_000  # x 5 branches = 20,000 / 1,000,000 keys
    locations = write_locations(workdir / "locations.toml")
    worker = new_worker(bootstrap, workdir / "worker", locations)
    worker.create_topics()
    changelog = worker.changelog_topic()
    create_topics(bootstrap, [changelog], worker.partitions, {"cleanup.policy": "compact"})
    publish_catalog(bootstrap, worker.topics.catalog, fake_catalog(10))
    t = time.monotonic()
    keys = write_positions(bootstrap, changelog, skus)
    log(f"recovery: {keys} positions written in {time.monotonic() - t:.1f} s")
    wm = Watermarks(bootstrap)
    result: dict[str, Any] = {"keys": keys}
    try:
        t0 = time.monotonic()
        worker.start()
        worker.wait_ready(timeout=1800)
        result["cold_restore_s"] = time.monotonic() - t0
        result["rss_mib_at_keys_after_restore"] = rss_bytes(worker.worker_pid()) / 2**20
        # Touch the store: a probe makes the worker read/write positions as in service.
        p = producer(bootstrap)
        pushes = wm.total(worker.topics.shopify_push)
        produce(p, worker.topics.erp, None, probe_event(0))
        p.flush(10)
        wait_for(lambda: wm.total(worker.topics.shopify_push) > pushes, 120, 0.05)
        result["rss_mib_at_keys"] = rss_bytes(worker.worker_pid()) / 2**20
        log(f"recovery: cold restore {result['cold_restore_s']:.1f} s, "
            f"RSS {result['rss_mib_at_keys']:.0f} MiB")
        time.sleep(2.0)  # let the worker commit
        runs = []
        for rep in range(reps):
            worker.kill9()
            pushes = wm.total(worker.topics.shopify_push)
            t0 = time.monotonic()
            worker.start()
            produce(p, worker.topics.erp, None, probe_event(rep + 1))
            p.flush(10)
            before = pushes
            processed = wait_for(
                lambda before=before: wm.total(worker.topics.shopify_push) > before, 600, 0.05)
            t_proc = time.monotonic() - t0
            worker.wait_ready(timeout=600)
            t_ready = time.monotonic() - t0
            runs.append({"processing_again_s": t_proc if processed else None,
                         "ready_s": t_ready, "rss_mib": rss_bytes(worker.worker_pid()) / 2**20})
            log(f"recovery kill -9 rep {rep + 1}: processing again after {t_proc:.1f} s")
            time.sleep(2.0)
        result.update({
            "kill9_processing_again_s": median(r["processing_again_s"] for r in runs),
            "kill9_ready_s": median(r["ready_s"] for r in runs),
            "repetitions": reps, "runs": runs,
        })
        return result
    finally:
        wm.close()
        worker.stop()
