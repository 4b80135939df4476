"""Run Tally's benchmarks: ``python -m bench.run [--quick] [--only NAME ...] [--out DIR]``.

Starts (or reuses) a dedicated local broker on 127.0.0.1:39092, runs each benchmark, and writes
``results.json`` + ``results.md`` (+ PNG plots when matplotlib is installed) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    api_efficiency,
    catchup,
    core,
    latency,
    profile,
    recovery,
    reference,
    report,
    scaleout,
    snapshot,
    throughput,
    variants,
)
from bench.common import broker, describe_machine, log

BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "core": core.run,
    "reference": reference.run,
    "profile": profile.run,
    "throughput": throughput.run,
    "api_efficiency": api_efficiency.run,
    "latency": latency.run,
    "recovery": recovery.run,
    "catchup": catchup.run,
    "snapshot": snapshot.run,
    "scaleout": scaleout.run,
    "variants": variants.run,  # not in the default run: --only variants
}
DEFAULT = ["core", "reference", "profile", "throughput", "api_efficiency", "latency", "recovery",
           "catchup", "snapshot", "scaleout"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="seconds-long smoke version of each")
    p.add_argument("--only", action="append", choices=sorted(BENCHMARKS),
                   help="run only this benchmark (repeatable)")
    p.add_argument("--out", default="bench/results", help="results directory")
    p.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    p.add_argument("--report-only", action="store_true",
                   help="re-render results.md and plots from --out/results.json")
    p.add_argument("--variant", action="append",
                   choices=sorted({*reference.VARIANTS, *variants.VARIANTS}),
                   help="reference / variants: run only this variant (repeatable)")
    p.add_argument("--events", type=int, help="reference / variants: events per run")
    p.add_argument("--capacity", type=float,
                   help="latency: one worker's capacity in events/s for the half-capacity run "
                        "(default: this run's throughput figure, else measured)")
    p.add_argument("--snapshot-lines", type=int,
                   help="snapshot: lines of the full count (default 1,000,000; 8,000 with --quick)")
    p.add_argument("--latency-seconds", type=float,
                   help="seconds per latency run (default 20; the issue's 60 s: 60)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.report_only:
        report.write(json.loads((out / "results.json").read_text()), out)
        return 0
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    reps = args.reps or (1 if args.quick else 3)
    names = args.only or DEFAULT
    results: dict[str, Any] = {
        "meta": {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "mode": "quick" if args.quick
                 else "full", "repetitions": reps, "machine": describe_machine(),
                 "command": " ".join(["python -m bench.run", *(argv or sys.argv[1:])]),
                 "worker_loglevel": os.environ.get("TALLY_BENCH_WORKER_LOGLEVEL", "info")},
        "benchmarks": {}, "errors": {},
    }
    failed = False
    with broker() as bootstrap:
        for name in names:
            log(f"== {name} ==")
            t0 = time.monotonic()
            kw: dict[str, Any] = {"quick": args.quick, "reps": reps}
            if name == "latency" and args.latency_seconds:
                kw["seconds"] = args.latency_seconds
            if name == "snapshot" and args.snapshot_lines:
                kw["lines"] = args.snapshot_lines
            if name == "latency":  # half capacity: this run's throughput figure, if measured
                kw["capacity"] = args.capacity or results["benchmarks"].get(
                    "throughput", {}).get("ledger_events_per_s")
            if name in ("reference", "variants"):
                kw["only"] = args.variant
                kw["events_per_run"] = args.events
            try:
                res = BENCHMARKS[name](bootstrap, work / name, **kw)
                res["wall_s"] = time.monotonic() - t0
                results["benchmarks"][name] = res
            except Exception as exc:
                failed = True
                results["errors"][name] = "".join(traceback.format_exception(exc))[-4000:]
                log(f"{name} failed: {exc}")
            report.write(results, out)  # after each benchmark: partial results survive
    log(f"results in {out / 'results.json'} and {out / 'results.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
