"""Smoke test of the benchmark harness: ``python -m bench.run --quick --only api_efficiency``
runs end to end and writes JSON with the expected keys. No timing assertions (speed targets
belong in the benchmarks, not in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.kafka
def test_quick_api_efficiency_writes_positive_figures(kafka_bootstrap: str,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "TALLY_BENCH_BOOTSTRAP": kafka_bootstrap}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "api_efficiency", "--out",
         str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["errors"] == {}
    api = results["benchmarks"]["api_efficiency"]
    for key in ("tally_updates_per_1000_points", "tally_updates_per_s_budget_ceiling",
                "a_updates_per_1000_points", "a_updates_per_s_steady", "b_updates_per_s_steady",
                "ratio_per_1000_points_tally_to_a", "ratio_per_s_tally_ceiling_to_b"):
        assert isinstance(api[key], int | float) and api[key] > 0, (key, api[key])
    assert "api_efficiency" in (out / "results.md").read_text().lower() or \
        "inventorySetQuantities" in (out / "results.md").read_text()


@pytest.mark.kafka
def test_quick_core_and_reference_variants_write_figures(kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    """The pure core split and the reference loops (raw, raw + core, minimal faust 2 hops)
    beside Tally's worker: every variant reports events/s, CPU per event and Tally's ratio."""
    out = tmp_path / "results"
    env = {**os.environ, "TALLY_BENCH_BOOTSTRAP": kafka_bootstrap}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "core", "--only", "reference",
         "--variant", "tally", "--variant", "raw", "--variant", "raw_core", "--variant",
         "faust_2hops", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["errors"] == {}
    core = results["benchmarks"]["core"]
    parts = [core[k] for k in ("decode_us", "rekey_us", "ledger_us", "encode_us")]
    assert all(p > 0 for p in parts) and sum(parts) <= core["us_per_event"]
    variants = results["benchmarks"]["reference"]["variants"]
    assert set(variants) == {"tally", "raw", "raw_core", "faust_2hops"}
    for name, v in variants.items():
        assert v["events_per_s"] > 0 and v["cpu_ms_per_event"] > 0, (name, v)
        assert v["runs"][0]["events"] == results["benchmarks"]["reference"]["events_per_run"]
        if name != "tally":
            assert v["tally_cpu_ratio"] > 0 and v["tally_rate_ratio"] > 0, (name, v)
    # The raw + core loop emits the core's records: pushes and audit entries.
    assert variants["raw_core"]["runs"][0]["records_out"] > 0
    md = (out / "results.md").read_text()
    assert "Tally's worker beside reference loops" in md and "minimal faust, 2 hops" in md


@pytest.mark.kafka
def test_quick_catchup_and_snapshot_write_figures(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Catch-up after kill -9 under steady input, and a full count applied and pushed: the
    restarted worker applies again and reports its rate while behind; every Shopify level ends
    equal to the count (minus its branch's safety buffer)."""
    out = tmp_path / "results"
    env = {**os.environ, "TALLY_BENCH_BOOTSTRAP": kafka_bootstrap}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "catchup", "--only", "snapshot",
         "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["errors"] == {}
    (run,) = results["benchmarks"]["catchup"]["runs"]
    assert run["kill_to_first_apply_s"] > 0 and run["catchup_per_s"] > 0, run
    (snap,) = results["benchmarks"]["snapshot"]["runs"]
    assert snap["lines"] == 8_000 and snap["levels_checked"] == 6_000, snap
    assert snap["levels_different_at_end"] == 0 and snap["to_consistent_s"] is not None, snap
    md = (out / "results.md").read_text()
    assert "Catch-up after kill -9" in md and "Full-count snapshot" in md
