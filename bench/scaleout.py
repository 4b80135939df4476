"""Scale-out: two workers against one on the same topics (8 partitions split between them).

Same method as the throughput benchmark (``bench.throughput.run_ledger``); one- and two-worker
repetitions alternate so background load hits both alike. On a 2-core machine that also runs
the broker, two workers compete for the same cores: read the ratio with that in mind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import log, median
from bench.throughput import encoded_events, run_ledger


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int) -> dict[str, Any]:
    skus = 2_000 if quick else 20_000
    n = 3_000 if quick else 40_000
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for rep in range(reps):
        events = encoded_events(n, skus, seed=200 + rep)
        for workers in (1, 2):
            res = run_ledger(bootstrap, workdir / f"rep{rep}-w{workers}", events=events,
                             skus=skus, workers=workers)
            res.pop("_topics")
            runs[workers].append(res)
            log(f"scale-out rep {rep + 1}, {workers} worker(s): {res['events_per_s']:.0f}/s")
    one = median(r["events_per_s"] for r in runs[1])
    two = median(r["events_per_s"] for r in runs[2])
    return {"keys": skus * 5, "events_per_run": n, "repetitions": reps, "partitions": 8,
            "one_worker_events_per_s": one, "two_workers_events_per_s": two,
            "speedup": two / one, "runs": {"one": runs[1], "two": runs[2]}}
