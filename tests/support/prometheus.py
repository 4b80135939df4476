"""A real Prometheus server (Debian's ``prometheus``) scraping test services, for e2e and chaos.

It can load the project's own alert rules (deploy/prometheus/alerts.yml) with every ``for:``
compressed by ``time_scale`` (60: five minutes become five seconds), so a test sees an alert go
pending, fire and resolve in seconds while the expressions stay exactly the shipped ones.
Without ``prometheus`` the fixture skips locally and fails in CI (CI=true).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pipeline.demo.services import free_port

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def debian_tool(name: str, env_var: str) -> str:
    """Path of ``name`` from Debian's prometheus package (or ``$env_var``); skips locally and
    fails in CI (CI=true) when it is missing."""
    path = os.environ.get(env_var) or shutil.which(name)
    if path is None:
        missing = (f"{name} not found: install Debian's prometheus package (apt-get update && "
                   "apt-get install -y prometheus), or run `make setup`")
        if in_ci():
            pytest.fail(missing)
        pytest.skip(missing + " (outside CI this skips; in CI it fails)")
    return path


def prometheus_binary() -> str:
    return debian_tool("prometheus", "PROMETHEUS")


def compressed_rules(time_scale: float) -> str:
    """alerts.yml with every ``for: <duration>`` divided by ``time_scale`` (at least 1 s)."""

    def shorter(m: re.Match[str]) -> str:
        seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d)",
                                                                   m.group(2)))
        return f"{m.group(1)}{max(1, round(seconds / time_scale))}s"

    return re.sub(r"^(\s+for: )(\S+)$", shorter, RULES.read_text(), flags=re.M)


def scrape_config(targets: dict[str, str], rules: Path | None) -> str:
    jobs = "".join(
        f"  - job_name: {job}\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{address}']\n"
        for job, address in targets.items())
    rule_files = f"rule_files:\n  - {rules}\n" if rules is not None else ""
    return ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"  evaluation_interval: 1s\n{rule_files}scrape_configs:\n" + jobs)


class Prometheus:
    """One Prometheus process scraping ``targets`` (job → host:port) every second."""

    def __init__(self, binary: str, workdir: Path, targets: dict[str, str], *,
                 alert_time_scale: float | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        rules = None
        if alert_time_scale is not None:
            rules = workdir / "alerts.yml"
            rules.write_text(compressed_rules(alert_time_scale))
        self.config = workdir / "prometheus.yml"
        self.config.write_text(scrape_config(targets, rules))
        self.log = workdir / "prometheus.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    async def api(self, http: aiohttp.ClientSession, path: str, **params: str) -> Any:
        assert self.proc.poll() is None, f"prometheus exited:\n{self.tail()}"
        async with http.get(f"{self.url}/api/v1/{path}", params=params) as r:
            body = await r.json()
        assert body.get("status") == "success", body
        return body["data"]

    async def query(self, http: aiohttp.ClientSession, promql: str) -> list[dict[str, Any]]:
        return list((await self.api(http, "query", query=promql))["result"])

    async def value(self, http: aiohttp.ClientSession, promql: str) -> float | None:
        result = await self.query(http, promql)
        return float(result[0]["value"][1]) if result else None

    async def alerts(self, http: aiohttp.ClientSession,
                     state: str | None = None) -> list[dict[str, Any]]:
        """Active alerts (pending or firing), optionally of one ``state``."""
        found = (await self.api(http, "alerts"))["alerts"]
        return [a for a in found if state is None or a["state"] == state]

    async def rules_loaded(self, http: aiohttp.ClientSession) -> int:
        groups = (await self.api(http, "rules"))["groups"]
        return sum(len(g["rules"]) for g in groups)

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 30) -> None:
        await eventually(lambda: self._answers(http), timeout, "prometheus answers")

    async def _answers(self, http: aiohttp.ClientSession) -> bool:
        await self.api(http, "status/buildinfo")
        return True


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Await ``check()`` until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except (AssertionError, OSError, aiohttp.ClientError, KeyError) as exc:
            last = exc
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: not reached in {timeout}s (last: {last!r})")
