"""A/B of worker settings that the profile points at, measured like the throughput benchmark.

Not part of the default run (``--only variants``). Variants change only the worker's environment
or command line, never its code:

* ``baseline`` — ``tally worker`` defaults (``--loglevel=info``, faust's producer linger 0).
* ``loglevel_warn`` — ``--loglevel=warn`` (what ``tests.support.worker`` uses): faust's terminal
  spinner then sets the root logger to DEBUG, so every aiokafka/faust ``log.debug`` builds a
  record.
* ``linger_5ms`` — ``PRODUCER_LINGER=0.005`` (faust's env name for ``producer_linger``): the
  worker's four produces per event are batched per partition instead of one request each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import log, median
from bench.throughput import encoded_events, run_ledger

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "loglevel_warn": {"loglevel": "warn"},
    "linger_5ms": {"extra_env": {"PRODUCER_LINGER": "0.005"}},
}


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int) -> dict[str, Any]:
    skus = 2_000 if quick else 20_000
    n = 3_000 if quick else 30_000
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in VARIANTS}
    for rep in range(reps):
        events = encoded_events(n, skus, seed=400 + rep)
        for name, kw in VARIANTS.items():  # interleaved: background load hits all alike
            res = run_ledger(bootstrap, workdir / f"rep{rep}-{name}", events=events, skus=skus,
                             **kw)
            res.pop("_topics")
            runs[name].append(res)
            log(f"variant {name} rep {rep + 1}: {res['events_per_s']:.0f}/s, "
                f"{res['events_per_worker_cpu_s']:.0f} per CPU-s")
    out: dict[str, Any] = {"events_per_run": n, "repetitions": reps, "variants": {}}
    base = median(r["events_per_s"] for r in runs["baseline"])
    base_cpu = median(r["events_per_worker_cpu_s"] for r in runs["baseline"])
    for name, rs in runs.items():
        eps = median(r["events_per_s"] for r in rs)
        cpu = median(r["events_per_worker_cpu_s"] for r in rs)
        out["variants"][name] = {"events_per_s": eps, "events_per_worker_cpu_s": cpu,
                                 "vs_baseline": eps / base, "cpu_vs_baseline": cpu / base_cpu,
                                 "runs": rs}
    return out
