"""A/B of worker settings that the profile points at, measured like the throughput benchmark.

Not part of the default run (``--only variants``). Variants change only the worker's environment
or command line, never its code:

* ``baseline`` — ``tally worker`` defaults (``--loglevel=info``, faust's producer linger 0).
* ``loglevel_warn`` — ``--loglevel=warn`` (what ``tests.support.worker`` uses): faust's terminal
  spinner then sets the root logger to DEBUG, so every aiokafka/faust ``log.debug`` builds a
  record.
* ``linger_0ms`` / ``linger_5ms`` — ``TALLY_PRODUCER_LINGER_MS`` (default 20): how long faust's
  producer waits to batch the worker's produces (movement, changelog, push, history) per
  partition.
* ``batch_64k`` — ``PRODUCER_MAX_BATCH_SIZE=65536`` (faust's default 16 KiB per partition batch).
* ``gzip`` — ``PRODUCER_COMPRESSION_TYPE=gzip`` (the one codec aiokafka has without extra
  packages): less for the broker to write, more for the worker to do.
* ``fetch_wait_1500ms`` — ``TALLY_FETCH_MAX_WAIT_MS=1500`` (faust's own; Tally's default 100):
  does the short fetch wait cost throughput?

``--variant NAME`` (repeatable) runs a subset; ``baseline`` always runs (the ratios' base).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import log, median
from bench.throughput import encoded_events, run_ledger

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "loglevel_warn": {"loglevel": "warn"},
    "linger_0ms": {"extra_env": {"TALLY_PRODUCER_LINGER_MS": "0"}},
    "linger_5ms": {"extra_env": {"TALLY_PRODUCER_LINGER_MS": "5"}},  # the default until 20
    "batch_64k": {"extra_env": {"PRODUCER_MAX_BATCH_SIZE": "65536"}},
    "gzip": {"extra_env": {"PRODUCER_COMPRESSION_TYPE": "gzip"}},
    "fetch_wait_1500ms": {"extra_env": {"TALLY_FETCH_MAX_WAIT_MS": "1500"}},
}


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int, only: list[str] | None = None,
        events_per_run: int | None = None) -> dict[str, Any]:
    skus = 2_000 if quick else 20_000
    n = events_per_run or (3_000 if quick else 30_000)
    names = [k for k in VARIANTS if k == "baseline" or not only or k in only]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    for rep in range(reps):
        events = encoded_events(n, skus, seed=400 + rep)
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:  # interleaved: background load hits all alike
            kw = VARIANTS[name]
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
