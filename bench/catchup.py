"""Catch-up after ``kill -9`` under steady input: how fast a restarted worker works off its
backlog, and how long Shopify-bound values lag the sources.

Each repetition, on fresh topics: one worker (static group membership, as deployed), the
realistic mix produced at a steady ``rate`` (200 events/s, the issue's figure) for a warm-up, then
``kill -9`` and an immediate restart on the same data directory (as a supervisor would), while
the input keeps coming. The worker's audit records (``tally.history``) carry each movement's
``observed_at`` (the source record's Kafka timestamp, set when this process produced it) and
``applied_at``, so a history reader in this process sees the lag of every applied movement as it
happens:

- ``catchup_x_input`` and ``catchup_per_s``: how many times the input rate the restarted worker
  applied movements from its first application until it is caught up (``rate_while_behind``:
  movements per second then, over movements per second before the kill), and that in source
  events per second;
- ``warm_max_lag_s``: the largest lag before the kill (over 1 s: the worker did not even keep up
  with the input on this machine, and the catch-up figures mean little);
- ``kill_to_lag_under_1s_s``: kill → the moment from which every applied movement's lag stays
  under 1 s (``caught up``); also kill → first application again, and kill → ``/readyz`` 200.

Goal (issue #15): ``catchup_x_input`` >= 3.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from bench.common import (
    fake_catalog,
    log,
    median,
    new_worker,
    produce,
    producer,
    publish_catalog,
    source_key,
    traffic,
    write_locations,
)
from tests.support.kafka import unique

LAG_TARGET_S = 1.0
GOAL_X_INPUT = 3.0


class Lags:
    """Tails the history topic: (applied_at, lag) of every applied movement, in arrival order."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.points: list[tuple[float, float]] = []
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("lag"),
                                   "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        self._consumer.subscribe([topic])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(2000, 0.2):
                if msg.error() or msg.value() is None:
                    continue
                h = json.loads(msg.value())
                if h.get("observed_at") is not None:
                    self.points.append((h["applied_at"], h["applied_at"] - h["observed_at"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


def caught_up_at(points: list[tuple[float, float]], after: float) -> float | None:
    """The first applied_at after ``after`` from which every later lag is under the target."""
    later = sorted(p for p in points if p[0] >= after)
    if not later or later[-1][1] >= LAG_TARGET_S:
        return None
    last_late = max((i for i, (_, lag) in enumerate(later) if lag >= LAG_TARGET_S), default=-1)
    return later[last_late + 1][0]


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1.0) as r:
            return bool(r.status == 200)
    except Exception:
        return False


def one_run(bootstrap: str, workdir: Path, *, skus: int, rate: float, warm_s: float,
            max_after_s: float, seed: int) -> dict[str, Any]:
    locations = write_locations(workdir / "locations.toml")
    # Static group membership, as the shipped manifests run it: the restarted worker takes its
    # partitions back at once instead of after the dead member's session timeout.
    worker = new_worker(bootstrap, workdir / "worker", locations,
                        extra_env={"TALLY_INSTANCE_ID": unique("bench-worker")})
    worker.create_topics()
    publish_catalog(bootstrap, worker.topics.catalog, fake_catalog(skus))
    by_system = worker.topics.sources()
    gen = traffic(skus, seed=seed)
    p = producer(bootstrap, **{"linger.ms": 1})
    worker.start()
    worker.wait_ready(timeout=180)
    lags = Lags(bootstrap, worker.topics.history)
    t0 = time.time()
    produced = 0
    t_kill = t_restart = t_ready = None
    stable_since: float | None = None
    next_check = 0.0
    try:
        while True:
            now = time.time()
            due = int((now - t0) * rate) + 1
            while produced < due:
                system, ev = gen.event()
                produce(p, by_system[system], source_key(ev),
                        json.dumps(ev, separators=(",", ":")).encode())
                produced += 1
            p.poll(0)
            if t_kill is None and now - t0 >= warm_s:
                t_kill = time.time()
                worker.kill9()
                worker.start()
                t_restart = time.time()
                log(f"catch-up: killed after {warm_s:.0f} s at {rate:.0f}/s, restarted")
            if t_kill is not None and now >= next_check:  # twice a second: cheap for the box
                next_check = now + 0.5
                if t_ready is None and ready(worker.url):
                    t_ready = time.time()
                # Caught up and stable for 5 s, or out of time.
                if caught_up_at(list(lags.points), t_kill) is not None:
                    stable_since = stable_since or now
                else:
                    stable_since = None
                if (stable_since and now - stable_since >= 5.0) or now - t_kill > max_after_s:
                    break
            time.sleep(0.005)
        p.flush(30)
        time.sleep(1.0)
    finally:
        lags.close()
        worker.stop()
    assert t_kill is not None and t_restart is not None
    points = sorted(lags.points)
    after = [a for a, _ in points if a >= t_restart]
    t_caught = caught_up_at(points, t_kill)
    first = after[0] if after else None
    res: dict[str, Any] = {
        "rate": rate, "warm_s": warm_s, "events_produced": produced,
        "warm_max_lag_s": max((lag for a, lag in points if t0 + 2.0 <= a < t_kill), default=None),
        "kill_to_first_apply_s": (first - t_kill) if first else None,
        "kill_to_ready_s": (t_ready - t_kill) if t_ready else None,
        "kill_to_lag_under_1s_s": (t_caught - t_kill) if t_caught else None,
        "caught_up": t_caught is not None,
        "max_lag_s": max((lag for a, lag in points if a >= t_kill), default=None),
    }
    # Behind: from the first application after the restart until caught up (or the end).
    rates = rate_while_behind(points, first=first, caught=t_caught,
                              steady=(t0 + 5.0, t_kill))
    res["catchup_per_s"] = rates * rate if rates is not None else None
    res["catchup_x_input"] = rates
    return res


def rate_while_behind(points: list[tuple[float, float]], *, first: float | None,
                      caught: float | None, steady: tuple[float, float]) -> float | None:
    """How many times the input rate the restarted worker applied while behind: movements
    applied per second from its first application after the restart until caught up (the last
    point if it never was), over movements applied per second in the ``steady`` span before the
    kill, when it kept up with the input. Both from the history records' ``applied_at``, so no
    conversion from events to movements is needed and commit intervals do not blur a catch-up
    of a few seconds. None when it never applied again or the spans are empty."""
    if first is None:
        return None
    end = caught if caught is not None else max((a for a, _ in points), default=first)
    behind = sum(1 for a, _ in points if first <= a <= end)
    before = sum(1 for a, _ in points if steady[0] <= a < steady[1])
    if end <= first or behind < 2 or before == 0 or steady[1] <= steady[0]:
        return None
    return (behind / (end - first)) / (before / (steady[1] - steady[0]))


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int) -> dict[str, Any]:
    skus = 2_000 if quick else 20_000  # x 5 branches
    rate = 200.0
    warm_s, max_after_s = (8.0, 60.0) if quick else (30.0, 300.0)
    runs = []
    for rep in range(reps):
        res = one_run(bootstrap, workdir / f"rep{rep}", skus=skus, rate=rate, warm_s=warm_s,
                      max_after_s=max_after_s, seed=500 + rep)
        runs.append(res)
        log(f"catch-up rep {rep + 1}: ready {res['kill_to_ready_s']}, caught up "
            f"{res['kill_to_lag_under_1s_s']} s after the kill, catch-up "
            f"{res['catchup_x_input']} x input")
    keys = ("warm_max_lag_s", "catchup_per_s", "catchup_x_input", "kill_to_first_apply_s",
            "kill_to_ready_s", "kill_to_lag_under_1s_s", "max_lag_s")
    return {"rate": rate, "goal_x_input": GOAL_X_INPUT, "lag_target_s": LAG_TARGET_S,
            **{k: median(r[k] for r in runs if r[k] is not None) for k in keys},
            "caught_up_runs": sum(1 for r in runs if r["caught_up"]), "repetitions": reps,
            "runs": runs}
