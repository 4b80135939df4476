"""The garbage collector's pauses: measured, and kept short once a service has loaded its state.

A full (generation 2) collection walks every container object alive. A service's long-lived
state (the worker's catalog, the sink's compare-and-set state of every key seeded from the acks
topic, the simulator's Admin API schema) made each one a stop of the event loop of 0.1 to 0.5 s
in the middle of traffic (measured at 351 events/s end to end), straight into the latency tail.
``settle`` collects once and moves what is alive into the permanent generation
(``gc.freeze``), which later collections skip; what a service allocates afterwards is collected
as before. ``watch_pauses`` times every collection (``tally_gc_pause_seconds``).
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from prometheus_client import Histogram

log = logging.getLogger("tally.heap")

GC_PAUSE = Histogram(
    "tally_gc_pause_seconds",
    "Time the process stopped for one garbage collection, by generation (2 = full).",
    ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)

_watching = False


def settle(service: str) -> None:
    """Collect, then exempt every object alive now from later collections. Call once the
    service has loaded what it keeps for its lifetime, before traffic."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info("heap settled: %d objects exempt from garbage collection (%.2f s)",
             gc.get_freeze_count(), time.perf_counter() - started,
             extra={"fields": {"service": service}})


def watch_pauses() -> None:
    """Time every collection of this process into ``GC_PAUSE`` (idempotent)."""
    global _watching
    if _watching:
        return
    _watching = True
    children = {g: GC_PAUSE.labels(str(g)) for g in range(3)}
    started = [0.0]

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            children[info["generation"]].observe(time.perf_counter() - started[0])

    gc.callbacks.append(on_collection)
