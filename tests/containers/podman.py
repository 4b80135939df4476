"""podman helpers for the container tests: run Tally's services from the image, as containers."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from pipeline.demo.services import Service

REPO = Path(__file__).resolve().parents[2]
TALLY_IMAGE = os.environ.get("TALLY_IMAGE", "localhost/tally:local")
KAFKA_IMAGE = os.environ.get("TALLY_KAFKA_IMAGE", "localhost/tally-kafka:3.9.1")
PROMETHEUS_IMAGE = os.environ.get("PROMETHEUS_IMAGE", "localhost/tally-prometheus:debian")
os.environ.setdefault("CONTAINERS_CONF", str(REPO / "deploy/containers/containers.conf"))


def podman(*args: str, check: bool = True, timeout: float = 120.0,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} failed ({proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    return proc


def engine_problem() -> str | None:
    """None when podman runs containers and the images are built, else what is missing."""
    try:
        podman("info", timeout=60)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"podman does not answer: {exc}"
    for image in (TALLY_IMAGE,):
        if podman("image", "exists", image, check=False).returncode != 0:
            return f"image {image} is not built (make containers builds it)"
    return None


def inspect(name: str) -> dict[str, Any]:
    return json.loads(podman("inspect", name).stdout)[0]


def health_status(name: str) -> str:
    state = inspect(name)["State"]
    health = state.get("Health") or state.get("Healthcheck") or {}
    return str(health.get("Status", ""))


def wait_healthy(name: str, timeout: float = 120.0) -> float:
    """Run the container's healthcheck until it passes (podman has no timer without systemd
    here); return the seconds it took, or raise with the last answer."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        proc = podman("healthcheck", "run", name, check=False)
        last = (proc.stdout + proc.stderr).strip()
        if proc.returncode == 0 and health_status(name) == "healthy":
            return time.monotonic() - started
        time.sleep(1.0)
    raise AssertionError(f"{name} not healthy after {timeout:.0f}s: {last}")


def process_uid(name: str) -> int:
    """The real uid of the container's main process (PID 1 in its namespace)."""
    status = podman("exec", name, "cat", "/proc/1/status").stdout
    line = next(x for x in status.splitlines() if x.startswith("Uid:"))
    return int(line.split()[1])


def healthz_command(url: str) -> str:
    return ("python -c \"import urllib.request; "
            f"urllib.request.urlopen('{url}', timeout=4)\"")


class ContainerService(Service):
    """A demo service (pipeline.demo.services.Service) run from the Tally image with podman:
    host network, the demo's files mounted read-only at the same path, the worker's data on a
    named volume at /data. Variables reach podman by name only (``-e NAME``), never on its
    command line. ``stop()`` is ``podman stop`` (SIGTERM); its time and exit code are kept."""

    grace_s = 30

    def container(self, generation: int = 0) -> str:
        suffix = f"-{generation}" if generation else ""
        return f"tally-ct-{self.log_dir.name}-{self.name}{suffix}"

    @property
    def volume(self) -> str:
        return f"tally-ct-{self.log_dir.name}-{self.name}-data"

    generation: int = 0
    stopped_in_s: float | None = None
    exit_code: int | None = None
    ready_in_s: float | None = None  # from `podman run` to the service's readiness URL

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # uid 10001 reads the demo's files (written by this test, mode 0600 for the seed).
        for path in [self.log_dir, *self.log_dir.rglob("*")]:
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
        env = dict(self.env)
        mounts = ["-v", f"{self.log_dir}:{self.log_dir}:ro"]
        if "TALLY_DATA_DIR" in env:
            env["TALLY_DATA_DIR"] = "/data"
            mounts += ["-v", f"{self.volume}:/data"]
        health: list[str] = []
        if self.ready_url and self.name != "worker":  # the worker keeps the image's HEALTHCHECK
            base = self.ready_url.rsplit("/", 1)[0]
            health = ["--health-cmd", healthz_command(f"{base}/healthz"),
                      "--health-interval", "15s", "--health-retries", "3",
                      "--health-timeout", "5s", "--health-start-period", "30s"]
        cmd = ["podman", "run", "--rm", "--name", self.container(self.generation),
               "--network", "host", "--stop-timeout", str(self.grace_s), *mounts, *health,
               *[x for name in env for x in ("-e", name)], TALLY_IMAGE, *self.args]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=self.log_file.open("ab"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        super().wait_ready(timeout)
        self.ready_in_s = time.monotonic() - self.started_at

    def stop(self, timeout: float = 60.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        started = time.monotonic()
        podman("stop", "-t", str(self.grace_s), self.container(self.generation),
               check=False, timeout=timeout)
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            podman("rm", "-f", self.container(self.generation), check=False)
            self.exit_code = self.proc.wait(timeout=30)
        self.stopped_in_s = time.monotonic() - started

    def remove(self) -> None:
        """Remove what may be left: the container and the data volume."""
        for generation in range(self.generation + 1):
            podman("rm", "-f", self.container(generation), check=False)
        podman("volume", "rm", "-f", self.volume, check=False)


def note(line: str) -> None:
    """Print a measurement and keep it in .tally/containers/measurements.log."""
    print(line)
    path = REPO / ".tally" / "containers" / "measurements.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")
