"""End-to-end latency: source event → Shopify (simulator) acknowledgment, at paced rates.

Pipeline: bench producer → source topics → ``tally worker`` → push topic → ``tally sink`` →
simulator (own process, Standard plan). Acks are pre-seeded so every key's Shopify level is known
(the steady state of a running system; no first-push level reads).

Per event: its ledger history record gives the key, the version it produced, whether it changed
what Shopify should show (``PublishAvailable``) and ``observed_at`` (the source record's Kafka
timestamp, set when the bench produced it). Its latency is the sink's ``acknowledged_at`` of the
first ack of that key with ``ledger_version`` >= that version, minus ``observed_at``. Events that
change nothing on Shopify are excluded; events not acknowledged before the drain deadline count
as infinitely late (so an unsustained rate shows p99 = inf, never a flattering number). The
worker's share (``worker_p50_s``/``worker_p99_s``: the history record's ``applied_at`` minus
``observed_at``) says which side a tail comes from.
"""

from __future__ import annotations

import bisect
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import (
    SHOP,
    SHOPIFY_BRANCHES,
    SimProcess,
    SinkProcess,
    Watermarks,
    log,
    median,
    new_worker,
    percentile,
    produce,
    producer,
    publish_catalog,
    read_topic,
    source_key,
    traffic,
    write_locations,
)
from pipeline.messages import push_key
from pipeline.sink.config import SinkSettings
from tests.support.sink import seed_acks

P99_TARGET_S = 2.0
DEFAULT_WINDOW_S = SinkSettings().window_s
HALF_P99_TARGET_S = 1.0  # at half of one worker's capacity (issue #15)


class Pipeline:
    """Simulator + worker + sink on fresh topics, acks seeded with the simulator's levels."""

    def __init__(self, bootstrap: str, workdir: Path, skus: int,
                 window_s: float | None = None, quick_window_s: float | None = None) -> None:
        self.bootstrap, self.workdir, self.skus = bootstrap, workdir, skus
        self.window_s, self.quick_window_s = window_s, quick_window_s
        self.sim = SimProcess(skus, workdir / "sim", locations=len(SHOPIFY_BRANCHES))
        self.worker: Any = None
        self.sink: SinkProcess | None = None

    def start(self) -> None:
        info = self.sim.start()
        self.items: dict[str, str] = info["items"]
        self.location_ids = {b: info["locations"][f"Warehouse {i + 1}"]
                             for i, b in enumerate(SHOPIFY_BRANCHES)}
        locations = write_locations(self.workdir / "locations.toml", self.location_ids)
        self.worker = new_worker(self.bootstrap, self.workdir / "worker", locations)
        self.topics = self.worker.topics
        self.worker.create_topics()
        publish_catalog(self.bootstrap, self.topics.catalog, self.items)
        seed_acks(self.bootstrap, self.topics.shopify_acks,
                  [((SHOP, item, loc), info["available"]) for item in self.items.values()
                   for loc in self.location_ids.values()])
        self.worker.start()
        self.sink = SinkProcess(self.bootstrap, self.workdir / "sink", self.topics,
                                info["shop_url"], info["token"], window_s=self.window_s,
                                quick_window_s=self.quick_window_s)
        self.sink.start()
        self.worker.wait_ready(timeout=180)
        self.sink.wait_ready()
        self.wm = Watermarks(self.bootstrap)

    def stop(self) -> None:
        for stop in (self.sink.stop if self.sink else None,
                     self.worker.stop if self.worker else None, self.sim.stop):
            if stop is not None:
                stop()

    def caught_up(self, produced_total: int) -> bool:
        """Every source record consumed, every movement applied, every push resolved by the
        sink (its committed offsets reach the push topic's end)."""
        assert self.sink is not None
        sources = list(self.topics.sources().values())
        if self.wm.committed(self.worker.app_id, sources) < produced_total:
            return False
        movements = self.topics.movements
        if self.wm.committed(self.worker.app_id, [movements]) < self.wm.total(movements):
            return False
        push = self.topics.shopify_push
        return self.wm.committed(self.sink.group, [push]) >= self.wm.total(push)


def warm(p: Any, topics: list[str]) -> None:
    """Connect the bench's producer before the clock starts: its first records would otherwise
    wait for metadata and a producer id (~0.3-0.5 s), a cost of the bench's client, not Tally."""
    for topic in topics:
        p.list_topics(topic, timeout=10)
    p.flush(1)  # an idempotent producer gets its producer id right after it is built


def paced_produce(p: Any, topics: Any, gen: Any, rate: float, seconds: float) -> int:
    """Produce ``rate`` events/s for ``seconds`` in 10 ms ticks; returns the count."""
    by_system = topics.sources()
    t0 = time.monotonic()
    n = 0
    while True:
        now = time.monotonic() - t0
        if now >= seconds:
            break
        due = int(min(now, seconds) * rate) + 1
        while n < due:
            system, ev = gen.event()
            produce(p, by_system[system], source_key(ev),
                    json.dumps(ev, separators=(",", ":")).encode())
            n += 1
        p.poll(0)
        time.sleep(0.005)
    p.flush(30)
    return n


def measure_window(pipe: Pipeline, t_start: float, t_end: float, produced: int,
                   cutoff: float, drained: bool) -> dict[str, Any]:
    """Latencies of the events observed in [t_start, t_end], acks up to wall time ``cutoff``.

    ``drained``: the sink resolved every push. An event with no ack at or after its version then
    needed no write (Shopify already held the value: the sink's ``UpToDate``), so it is counted
    in ``no_write_needed`` instead of as a latency; without a drain it counts as infinite."""
    acks: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for msg in read_topic(pipe.bootstrap, pipe.topics.shopify_acks):
        a = json.loads(msg.value())
        if a["acknowledged_at"] <= cutoff:
            acks[msg.key().decode()].append((a["ledger_version"], a["acknowledged_at"]))
    for v in acks.values():
        v.sort()
    lat: list[float] = []
    in_worker: list[float] = []  # source event → applied (its share of the latency)
    applied = publishing = no_write = 0
    for msg in read_topic(pipe.bootstrap, pipe.topics.history):
        h = json.loads(msg.value())
        obs = h.get("observed_at")
        if obs is None or not t_start - 0.5 <= obs <= t_end + 0.5:
            continue
        applied += 1
        if "PublishAvailable" not in h["outcome"] or h["branch"] not in pipe.location_ids:
            continue
        publishing += 1
        in_worker.append(h["applied_at"] - obs)
        key = push_key(SHOP, pipe.items[h["sku"]], pipe.location_ids[h["branch"]])
        versions = acks.get(key, [])
        i = bisect.bisect_left(versions, (h["version"], -1.0))
        if i < len(versions):
            lat.append(versions[i][1] - obs)
        elif drained:
            no_write += 1
        else:
            lat.append(float("inf"))
    # Not drained: events produced but not yet applied are late by definition (scaled by the
    # share of applied events that changed Shopify). Drained: the difference is redeliveries
    # (the ledger writes no history record for a duplicate), excluded like other no-ops.
    if not drained:
        share = publishing / applied if applied else 1.0
        lat += [float("inf")] * int(max(0, produced - applied) * share)
    lat.sort()
    in_worker.sort()
    undelivered = sum(1 for x in lat if x == float("inf"))
    return {"events": produced, "applied": applied, "measured": len(lat),
            "undelivered": undelivered, "no_write_needed": no_write, "p50_s": percentile(lat, 50),
            "p95_s": percentile(lat, 95), "p99_s": percentile(lat, 99),
            "max_s": lat[-1] if lat else float("nan"),
            "worker_p50_s": percentile(in_worker, 50), "worker_p99_s": percentile(in_worker, 99)}


def one_rate(pipe: Pipeline, gen: Any, rate: float, seconds: float, drain_s: float,
             produced_total: int) -> tuple[dict[str, Any], int]:
    p = producer(pipe.bootstrap, **{"linger.ms": 1})
    warm(p, list(pipe.topics.sources().values()))
    t_start = time.time()
    n = paced_produce(p, pipe.topics, gen, rate, seconds)
    t_end = time.time()
    produced_total += n
    caught = pipe.caught_up(produced_total)
    deadline = time.monotonic() + drain_s
    while not caught and time.monotonic() < deadline:
        time.sleep(0.3)
        caught = pipe.caught_up(produced_total)
    time.sleep(1.0)  # the sink commits every 0.5 s after its acks are flushed
    res = measure_window(pipe, t_start, t_end, n, cutoff=time.time(), drained=caught)
    res.update(rate=rate, seconds=seconds, achieved_rate=n / (t_end - t_start),
               worker_caught_up=caught)
    return res, produced_total


def run_series(bootstrap: str, workdir: Path, *, skus: int, rates: list[float], reps: int,
               seconds: float, drain_s: float, window_s: float | None,
               quick_window_s: float | None = None) -> dict[str, Any]:
    """Every rate (ascending) on one pipeline, rebuilt after a rate it could not keep up with."""
    by_rate: dict[str, Any] = {}
    pipe: Pipeline | None = None
    total = 0
    attempt = 0
    try:
        for rate in sorted(rates):
            runs = []
            for rep in range(reps):
                if pipe is None:
                    attempt += 1
                    pipe = Pipeline(bootstrap, workdir / f"pipeline{attempt}", skus, window_s,
                                    quick_window_s)
                    pipe.start()
                    total = 0
                    log(f"latency pipeline {attempt} up (sink window {window_s or 'default'})")
                gen = traffic(skus, seed=1000 + attempt * 100 + rep)
                res, total = one_rate(pipe, gen, rate, seconds, drain_s, total)
                runs.append(res)
                log(f"latency {rate:.0f}/s rep {rep + 1}: p50 {res['p50_s']:.3f} s, p99 "
                    f"{res['p99_s']:.3f} s (in the worker: p50 {res['worker_p50_s']:.3f} s, p99 "
                    f"{res['worker_p99_s']:.3f} s), undelivered {res['undelivered']}, drained "
                    f"{res['worker_caught_up']}")
                if not res["worker_caught_up"]:
                    # Backlog left behind would pollute the next run: rebuild, and do not
                    # repeat a rate already shown to be over capacity.
                    pipe.stop()
                    pipe = None
                    break
            by_rate[str(int(rate))] = {
                "p50_s": median(r["p50_s"] for r in runs),
                "p95_s": median(r["p95_s"] for r in runs),
                "p99_s": median(r["p99_s"] for r in runs),
                "worker_p50_s": median(r["worker_p50_s"] for r in runs),
                "worker_p99_s": median(r["worker_p99_s"] for r in runs),
                "repetitions": len(runs), "runs": runs,
            }
    finally:
        if pipe is not None:
            pipe.stop()
    held = [float(r) for r, v in by_rate.items() if v["p99_s"] < P99_TARGET_S]
    return {"sink_window_s": window_s or DEFAULT_WINDOW_S, "rates": by_rate,
            "highest_rate_p99_under_2s": max(held) if held else None,
            "rates_tested": sorted(rates)}


def half_capacity(bootstrap: str, workdir: Path, *, capacity: float | None, skus: int,
                  reps: int, seconds: float, drain_s: float, quick: bool) -> dict[str, Any]:
    """p99 at half of one worker's measured capacity (issue #15: under 1 s): the sink's defaults
    (window 1 s, quick window 0.2 s while the budget is spare), the quick window off (the 1 s
    window alone, the default before it), and a 0.5 s window alone. ``capacity``: the
    throughput benchmark's figure from the same run; without it, one throughput repetition
    here measures it."""
    if capacity is None:
        from bench.throughput import encoded_events, run_ledger

        n = 3_000 if quick else 20_000
        capacity = float(run_ledger(bootstrap, workdir / "capacity", skus=skus,
                                    events=encoded_events(n, skus, seed=77))["events_per_s"])
        log(f"latency: measured capacity {capacity:.0f} events/s")
    rate = round(capacity / 2)
    kw = {"skus": skus, "reps": reps, "seconds": seconds, "drain_s": drain_s}
    windows = {"sink_window_default": (None, None), "sink_quick_window_off": (None, 0.0),
               "sink_window_0.5s": (0.5, 0.0)}
    series = {name: run_series(bootstrap, workdir / f"half-{name}", rates=[float(rate)],
                               window_s=window, quick_window_s=quick, **kw)["rates"][str(rate)]
              for name, (window, quick) in windows.items()}
    return {"capacity_events_per_s": capacity, "rate": rate, "p99_target_s": HALF_P99_TARGET_S,
            **{name: {k: v[k] for k in ("p50_s", "p95_s", "p99_s", "worker_p50_s",
                                        "worker_p99_s", "repetitions")}
               for name, v in series.items()},
            "met": {name: v["p99_s"] < HALF_P99_TARGET_S for name, v in series.items()}}


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int, seconds: float | None = None,
        rates: list[float] | None = None, capacity: float | None = None) -> dict[str, Any]:
    """The sink's default windows (1 s, 0.2 s while the budget is spare), then a 0.5 s window
    alone to show what that knob buys; then ``half_capacity``."""
    skus = 2_000 if quick else 20_000
    seconds = seconds or (4.0 if quick else 20.0)
    rates = rates or ([200.0, 500.0] if quick else [250.0, 500.0, 1000.0, 2000.0, 5000.0])
    drain_s = 10.0 if quick else 30.0
    kw = {"skus": skus, "reps": reps, "seconds": seconds, "drain_s": drain_s}
    default = run_series(bootstrap, workdir / "default", rates=rates, window_s=None, **kw)
    short_rates = [r for r in rates if r <= 2000.0]
    short = run_series(bootstrap, workdir / "window-0.5", rates=short_rates, window_s=0.5,
                       quick_window_s=0.0, **kw)
    half = half_capacity(bootstrap, workdir / "half-capacity", capacity=capacity, quick=quick,
                         **kw)
    return {"keys": skus * 5, "seconds_per_run": seconds, **default,
            "series": {"sink_window_0.5s": short}, "half_capacity": half}
