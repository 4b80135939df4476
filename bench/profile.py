"""Profile the worker's hot path: ``py-spy record`` (raw collapsed stacks) over a throughput run.

Writes ``profile-worker.txt`` (collapsed stacks, for flamegraph tools / speedscope) and returns
the functions with the most samples, self and inclusive, restricted to the project's code and
the libraries it calls.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import log
from bench.throughput import encoded_events, run_ledger

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^)]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def summarize(raw: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's raw output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    def share(c: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": f, "share": n / total} for f, n in c.most_common(top)]
    return {"samples": total, "self": share(own), "inclusive": share(incl)}


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int) -> dict[str, Any]:
    skus = 2_000 if quick else 20_000
    n = 3_000 if quick else 30_000
    raw = workdir / "profile-worker.txt"
    workdir.mkdir(parents=True, exist_ok=True)
    res = run_ledger(bootstrap, workdir / "run", events=encoded_events(n, skus, seed=300),
                     skus=skus, profile_out=raw)
    res.pop("_topics")
    if not raw.exists():
        return {"error": "py-spy wrote no profile (ptrace not permitted?)", "run": res}
    summary = summarize(raw)
    log(f"profile: {summary['samples']} samples; top self: "
        + ", ".join(f"{r['function']} {r['share']:.0%}" for r in summary["self"][:5]))
    return {"events": n, "events_per_s_under_profiler": res["events_per_s"],
            "raw_profile": str(raw), **summary}
