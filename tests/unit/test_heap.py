"""The garbage collector's pauses are timed, and a settled heap is left out of collections."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

from prometheus_client import REGISTRY

from pipeline.observability import heap


def _count(generation: str) -> float:
    value = REGISTRY.get_sample_value("tally_gc_pause_seconds_count",
                                      {"generation": generation})
    return value or 0.0


def test_every_collection_is_timed_by_generation_once_however_often_watched() -> None:
    heap.watch_pauses()
    heap.watch_pauses()
    before = _count("2")
    gc.collect(2)
    assert _count("2") == before + 1


def test_settle_exempts_what_is_alive_and_later_garbage_is_still_collected() -> None:
    # In a child process: a frozen heap is for a service's lifetime, not a test session's.
    code = textwrap.dedent("""
        import gc, weakref
        from pipeline.observability import heap

        class Catalog: pass
        catalog = [Catalog() for _ in range(1000)]
        heap.settle("test")
        assert gc.get_freeze_count() >= 1000, gc.get_freeze_count()

        class Later: pass
        later = Later()
        later.self = later  # a cycle: only the collector frees it
        ref = weakref.ref(later)
        del later
        gc.collect()
        assert ref() is None
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
