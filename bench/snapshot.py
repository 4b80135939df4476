"""A full-count snapshot (the ERP's nightly file) applied and pushed: lines/s and the time until
Shopify shows every changed value.

Simulator (Standard plan) + worker + sink on fresh topics, acks pre-seeded with the simulator's
levels (``bench.latency.Pipeline``: a running system's steady state). The snapshot is one
``erp.on_hand_snapshot`` line per SKU at each of the four ERP branches (``lines`` = SKUs x 4; 1M in
the full run: 250,000 SKUs), one transaction, keyed ``sku@branch`` as the contract recommends,
quantities drawn from a fixed seed, produced as fast as the producer goes. Measured:

- ``lines_per_s``: lines / (first line produced → the worker's group committed every line);
- ``to_consistent_s``: first line produced → every Shopify level of an online branch equals
  what the snapshot makes it (count minus the branch's safety buffer, never below 0), read from the
  simulator (the sink has resolved every push by then);
- the pushes the ledger emitted (a line that leaves Shopify's value as it was pushes nothing), the
  Shopify calls, their cost points and THROTTLED answers.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    BRANCHES,
    ONLINE_BRANCHES,
    Watermarks,
    log,
    median,
    produce,
    producer,
    sku_name,
    wait_for,
)
from bench.latency import Pipeline

SAFETY_BUFFER = {"STORE-2": 1}  # bench.common.locations_toml
MAX_LINES = 100_000  # schemas/v1/envelope.schema.json: line <= 100000


def snapshot_lines(skus: int, seed: int, as_of: float) -> list[tuple[bytes, bytes, int]]:
    """(key, value, quantity) of every line of one snapshot: transactions of at most
    ``MAX_LINES`` lines (the contract's largest line number), as an ERP splits its file."""
    rng = random.Random(seed)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(as_of))
    out = []
    n = 0
    for i in range(1, skus + 1):
        sku = sku_name(i)
        for branch in BRANCHES:
            document, line = divmod(n, MAX_LINES)
            n += 1
            qty = rng.randint(0, 60)
            out.append((f"{sku}@{branch}".encode(), json.dumps({
                "schema_version": "1", "type": "erp.on_hand_snapshot", "source": "erp",
                "transaction_id": f"SNAP-{seed}-{int(as_of)}-{document}", "line": line + 1,
                "occurred_at": stamp, "sku": sku, "location": branch, "quantity": qty,
                "as_of": stamp}, separators=(",", ":")).encode(), qty))
    return out


def shopify_differences(pipe: Pipeline, expected: dict[tuple[str, str], int]) -> int:
    """Levels of online branches that differ from what the snapshot makes them."""
    name_of = {gid: branch for branch, gid in pipe.location_ids.items()}
    with urllib.request.urlopen(f"{pipe.sim.url}/_sim/levels", timeout=120) as r:
        rows = json.loads(r.read())["levels"]
    seen = 0
    different = 0
    for row in rows:
        branch = name_of.get(row["location_id"])
        if branch is None or (row["sku"], branch) not in expected:
            continue
        seen += 1
        different += row["quantities"]["available"] != expected[(row["sku"], branch)]
    return different + (len(expected) - seen)


def one_run(bootstrap: str, workdir: Path, *, skus: int, seed: int,
            timeout: float) -> dict[str, Any]:
    pipe = Pipeline(bootstrap, workdir, skus)
    try:
        pipe.start()  # inside: a start that fails half-way still stops what it started
        lines = snapshot_lines(skus, seed, as_of=time.time() - 60)
        expected = {(key.decode().split("@")[0], key.decode().split("@")[1]):
                    max(0, qty - SAFETY_BUFFER.get(key.decode().split("@")[1], 0))
                    for key, _, qty in lines if key.decode().split("@")[1] in ONLINE_BRANCHES}
        erp = pipe.topics.erp
        wm = Watermarks(bootstrap)
        sources = list(pipe.topics.sources().values())
        pushes_before = wm.total(pipe.topics.shopify_push)
        before = pipe.sim.stats()
        p = producer(bootstrap, **{"linger.ms": 20, "batch.size": 1_000_000})
        t0 = time.monotonic()
        for n, (key, value, _) in enumerate(lines, 1):
            produce(p, erp, key, value)
            if n % 5000 == 0:
                p.poll(0)
        if p.flush(300):
            raise RuntimeError("snapshot not flushed")
        t_produced = time.monotonic() - t0
        log(f"snapshot: {len(lines):,} lines produced in {t_produced:.1f} s")
        applied = wait_for(lambda: wm.committed(pipe.worker.app_id, sources) >= len(lines),
                           timeout, 1.0)
        t_applied = time.monotonic() - t0
        log(f"snapshot: applied {applied} after {t_applied:.1f} s")
        dead = wm.total(pipe.topics.dead_letter)
        if dead:  # committed is not applied: a refused line would only be waited for forever
            raise RuntimeError(f"snapshot: {dead} lines dead-lettered")
        different = len(expected)

        def consistent() -> bool:
            nonlocal different
            different = shopify_differences(pipe, expected)
            return different == 0

        ok = applied and wait_for(consistent, timeout - t_applied, 2.0)
        t_consistent = time.monotonic() - t0
        stats = pipe.sim.stats()
        res = {
            "lines": len(lines), "produce_s": t_produced,
            "applied_s": t_applied if applied else None,
            "lines_per_s": len(lines) / t_applied if applied else None,
            "to_consistent_s": t_consistent if ok else None, "levels_checked": len(expected),
            "levels_different_at_end": different,
            "pushes": wm.total(pipe.topics.shopify_push) - pushes_before,
            "shopify_calls": stats["requests"] - before["requests"],
            "shopify_cost_points": stats["cost_spent"] - before["cost_spent"],
            "shopify_throttled": stats["throttled"] - before["throttled"],
        }
        wm.close()
        return res
    finally:
        pipe.stop()


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int,
        lines: int | None = None) -> dict[str, Any]:
    lines = lines or (8_000 if quick else 1_000_000)
    skus = max(1, lines // len(BRANCHES))
    timeout = 600.0 if quick else 4 * 3600.0
    runs = []
    for rep in range(reps):
        res = one_run(bootstrap, workdir / f"rep{rep}", skus=skus, seed=900 + rep,
                      timeout=timeout)
        runs.append(res)
        log(f"snapshot rep {rep + 1}: {res['lines']:,} lines at {res['lines_per_s']} lines/s, "
            f"Shopify consistent after {res['to_consistent_s']} s")
    keys = ("lines_per_s", "applied_s", "to_consistent_s", "pushes", "shopify_calls",
            "shopify_cost_points", "shopify_throttled")
    return {"lines": skus * len(BRANCHES), "repetitions": reps,
            **{k: median(r[k] for r in runs if r[k] is not None) for k in keys}, "runs": runs}
