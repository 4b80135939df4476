"""promtool validates the scrape config and alert rules and runs the alert unit tests.

promtool comes from Debian's ``prometheus`` package (``make setup`` installs it). Without it these
tests skip locally and fail in CI (CI=true), like the Kafka tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.prometheus import debian_tool

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    return debian_tool("promtool", "PROMTOOL")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=PROM, capture_output=True, text=True, timeout=120,
                          check=False)


def _alert_names() -> list[str]:
    return re.findall(r"^\s*-\s*alert:\s*(\S+)\s*$", (PROM / "alerts.yml").read_text(),
                      flags=re.M)


def test_check_config(promtool: str) -> None:
    proc = _run(promtool, "check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_check_rules(promtool: str) -> None:
    proc = _run(promtool, "check", "rules", "alerts.yml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"SUCCESS: {len(_alert_names())} rules found" in out


def test_alert_unit_tests_pass(promtool: str) -> None:
    proc = _run(promtool, "test", "rules", "tests/alerts_test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_unit_tests_fail_when_an_alert_misbehaves(promtool: str, tmp_path: Path) -> None:
    """The unit tests are not vacuous: raising a threshold so an alert never fires breaks them."""
    rules = (PROM / "alerts.yml").read_text()
    broken = rules.replace("max by (consumer) (tally_consumer_lag_seconds) > 30",
                           "max by (consumer) (tally_consumer_lag_seconds) > 3000")
    assert broken != rules
    (tmp_path / "alerts.yml").write_text(broken)
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    shutil.copy(PROM / "tests" / "alerts_test.yml", tests_dir / "alerts_test.yml")
    proc = subprocess.run([promtool, "test", "rules", "tests/alerts_test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "TallyConsumerLagHigh" in proc.stdout + proc.stderr


def test_every_alert_has_a_unit_test() -> None:
    tested = set(re.findall(r"alertname:\s*(\S+)",
                            (PROM / "tests" / "alerts_test.yml").read_text()))
    alerts = _alert_names()
    assert alerts
    assert sorted(set(alerts) - tested) == []


def test_check_script_runs_all_three(promtool: str) -> None:
    env = dict(os.environ, PROMTOOL=promtool)
    proc = subprocess.run(["sh", str(PROM / "check.sh")], capture_output=True, text=True,
                          timeout=180, env=env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "valid prometheus config file syntax" in out
    assert "rules found" in out
    assert "Unit Testing" in out


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Every Grafana query parses (checked by promtool as recording rules)."""
    import json

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "tally.json").read_text())
    exprs = [t["expr"].replace("$__rate_interval", "5m")
             for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(exprs):
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout + proc.stderr
