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
