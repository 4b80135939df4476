"""docker-compose.yml as users run it, under podman-compose: the whole stack up (Grafana aside),
every healthcheck healthy, events through the source topics and a signed webhook through the
intake, then Shopify (the simulator) equals the ledger on every key, and Prometheus scrapes every
Tally service. Images that cannot be pulled here are the stand-ins of deploy/containers/.

podman-compose 1.6 has no ``configs:``; the override of deploy/containers/compose-override.py
mounts each inline config (written out from docker-compose.yml itself) at its target, as Compose
does, and selects the Kafka stand-in (``TALLY_KAFKA_IMAGE``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from pipeline.infra.kafka_read import read_to_end
from pipeline.ledger.ats import available_to_sell
from pipeline.ledger.locations import load_locations
from pipeline.ledger.position import LedgerPosition
from pipeline.ledger.rules import publish_value
from pipeline.simulation.traffic import TrafficGenerator
from pipeline.topics import Topics, changelog_topic
from tests.containers.podman import (
    KAFKA_IMAGE,
    PROMETHEUS_IMAGE,
    REPO,
    note,
    podman,
    process_uid,
    wait_healthy,
)

COMPOSE = REPO / "docker-compose.yml"
OVERRIDE_SCRIPT = REPO / "deploy/containers/compose-override.py"
PROJECT = "tallyct"
SERVICES = ["kafka", "topics", "worker-1", "worker-2", "sink", "webhooks", "shopify-sim",
            "prometheus"]  # grafana stays out of this run
WITH_HEALTHCHECK = ["kafka", "worker-1", "worker-2", "sink", "webhooks", "shopify-sim"]
TALLY_JOBS = {"tally-worker", "tally-sink", "tally-webhooks", "shopify-sim"}
BASE_IMAGE = os.environ.get("TALLY_BASE_IMAGE", "localhost/python:3.11-slim-bookworm")
KAFKA = "localhost:29092"
SIM = "http://localhost:8085"
WORKER = "http://localhost:6066"
HOOKS = "http://localhost:6068"
PROMETHEUS = "http://localhost:9090"


def http(url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json",
                                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.spec = yaml.safe_load(COMPOSE.read_text())
        self.override = Path()
        self.env = {**os.environ, "TALLY_KAFKA_IMAGE": KAFKA_IMAGE,
                    "PROMETHEUS_IMAGE": PROMETHEUS_IMAGE, "PYTHON_IMAGE": BASE_IMAGE}
        self.up_seconds = 0.0
        self.up_started = 0.0

    def write_override(self) -> None:
        done = subprocess.run([sys.executable, str(OVERRIDE_SCRIPT), str(self.workdir)],
                              capture_output=True, text=True, check=True)
        self.override = Path(done.stdout.strip())

    def compose(self, *args: str, timeout: float = 300.0,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [str(Path(sys.executable).with_name("podman-compose")), "-p", PROJECT,
               "-f", str(COMPOSE), "-f", str(self.override), *args]
        return subprocess.run(cmd, env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, input=input)

    def up(self, services: list[str]) -> None:
        """``up -d`` in the order of the file's ``depends_on``, each condition met first.

        podman 4.3 cannot do this itself: podman-compose ignores ``service_healthy`` before
        podman 4.6, and starting a container whose ``--requires`` dependency has one of its own
        fails ("not found in input list"). So each service starts with ``--no-deps`` once what
        it depends on is healthy, completed successfully or started, as its file says."""
        specs = self.spec["services"]
        started: set[str] = set()
        while len(started) < len(services):
            stage = [name for name in services if name not in started and
                     set(specs[name].get("depends_on") or ()) <= started]
            assert stage, f"depends_on has a cycle among {set(services) - started}"
            for name in stage:
                deps = specs[name].get("depends_on") or {}
                for dep in deps:
                    condition = deps[dep].get("condition") if isinstance(deps, dict) else None
                    if condition == "service_healthy":
                        wait_healthy(self.containers()[dep], timeout=180)
                    elif condition == "service_completed_successfully":
                        wait_exited_ok(self.containers()[dep], timeout=180)
            up = self.compose("up", "-d", "--no-build", "--no-deps", *stage)
            assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
            started.update(stage)

    def containers(self) -> dict[str, str]:
        """service -> container name."""
        out = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}",
                     "--format", "json").stdout
        return {c["Labels"]["com.docker.compose.service"]: c["Names"][0]
                for c in json.loads(out or "[]")}

    def down(self) -> None:
        """``down -v``, and the anonymous volumes of the images' VOLUMEs with it."""
        volumes = {m["Name"] for name in self.containers().values()
                   for m in json.loads(podman("inspect", name).stdout)[0].get("Mounts", [])
                   if m.get("Type") == "volume"}
        self.compose("down", "-v", "-t", "30", timeout=300)
        if volumes:
            podman("volume", "rm", "-f", *sorted(volumes), check=False)

    def save_logs(self) -> None:
        for service, name in self.containers().items():
            log = podman("logs", name, check=False).stdout + podman("logs", name,
                                                                    check=False).stderr
            (self.workdir / f"{service}.log").write_text(log)


@pytest.fixture(scope="module")
def stack(engine: None) -> Iterator[Stack]:
    logs = REPO / ".tally" / "containers" / f"compose-{time.strftime('%Y%m%d-%H%M%S')}"
    logs.mkdir(parents=True)
    s = Stack(logs)
    s.write_override()
    s.down()  # what an interrupted earlier run may have left
    s.up_started = time.monotonic()
    try:
        s.up(SERVICES)
        s.up_seconds = time.monotonic() - s.up_started
        yield s
    finally:
        s.save_logs()
        print(f"compose logs in {s.workdir}")
        s.down()


def worker_counts() -> dict[str, str]:
    """Each worker's event counters, for a failure message."""
    out = {}
    for name, port in (("worker-1", 6066), ("worker-2", 6166)):
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            out[name] = " ".join(line for line in text.splitlines()
                                 if line.startswith("tally_events_"))
        except OSError as exc:
            out[name] = repr(exc)
    return out


def wait_exited_ok(name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        if state["Status"] == "exited":
            assert state["ExitCode"] == 0, f"{name} exited with {state['ExitCode']}"
            return
        assert time.monotonic() < deadline, f"{name} still {state['Status']}"
        time.sleep(1.0)


def signed(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def webhook_order(sku: str, order_id: int) -> dict[str, Any]:
    """A minimal orders/create payload, as Shopify sends it for one line."""
    return {
        "id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#CT{order_id}", "created_at": "2026-12-01T00:00:00Z",
        "updated_at": "2026-12-01T00:00:00Z", "source_name": "web",
        "financial_status": "paid", "fulfillment_status": None, "cancelled_at": None,
        "line_items": [{"id": order_id * 10, "sku": sku, "quantity": 1,
                        "variant_id": 1, "product_id": 1, "fulfillable_quantity": 1}],
    }


def opening_snapshots(skus: list[str], erp_branches: list[str],
                      tpl_branches: list[str]) -> list[tuple[str, bytes]]:
    """On-hand snapshots of every SKU at every branch, from the system that owns its on hand."""
    as_of = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    out = []
    for n, (sku, branch) in enumerate((s, b) for s in skus for b in erp_branches + tpl_branches):
        source = "3pl" if branch in tpl_branches else "erp"
        event = {"schema_version": "1", "type": f"{source}.on_hand_snapshot", "source": source,
                 "transaction_id": f"CT-OPEN-{uuid.uuid4().hex[:8]}-{n}", "line": 1,
                 "occurred_at": as_of, "sku": sku, "location": branch,
                 "quantity": 20 + n % 30, "as_of": as_of}
        if source == "3pl":
            event["facility_id"] = branch
        out.append((source, json.dumps(event).encode()))
    return out


def shopify_and_ledger(locations_file: Path) -> tuple[dict[str, int], dict[str, int | None]]:
    """Shopify's available per key (the simulator) and the ledger's ATS of the same keys, from
    the workers' changelog (what a recovering worker restores; as `tally demo` compares)."""
    locations = load_locations(locations_file)
    _, levels = http(f"{SIM}/_sim/levels", timeout=30)
    shopify = {}
    for row in levels["levels"]:
        branch = locations.branch_for_shopify_location(row["shop"], row["location_id"])
        shopify[f"{row['sku']}@{branch}"] = row["quantities"]["available"]
    ats: dict[str, int | None] = dict.fromkeys(shopify)
    for _, value in read_to_end(KAFKA, changelog_topic("tally-ledger")):
        if value is not None:
            position = LedgerPosition.from_json(value)
            if position.key in ats:
                # What the worker publishes: below the branch's minimum publish threshold, 0.
                rules = locations.rules(position.branch)
                ats[position.key] = publish_value(available_to_sell(position, rules).value,
                                                  rules.min_publish_threshold)
    return shopify, ats


@pytest.mark.kafka
def test_compose_stack(stack: Stack) -> None:
    containers = stack.containers()
    assert set(SERVICES) <= set(containers), containers

    # Every healthcheck passes; the one-shot topics job exited 0.
    for service in WITH_HEALTHCHECK:
        wait_healthy(containers[service], timeout=180)
    healthy_after = time.monotonic()
    wait_exited_ok(containers["topics"], timeout=10)
    # Ready too (catalogue loaded, tables recovered, partitions assigned) before any traffic.
    for ready_url in (f"{WORKER}/readyz", "http://localhost:6166/readyz",
                      "http://localhost:6067/readyz", f"{HOOKS}/readyz"):
        deadline = time.monotonic() + 180
        while http(ready_url)[0] != 200:
            assert time.monotonic() < deadline, f"{ready_url}: {http(ready_url)}"
            time.sleep(1.0)
    ready_after = time.monotonic()
    assert process_uid(containers["worker-1"]) == 10001

    # The catalogue: SKU -> inventory item per shop, synced from the simulator inside the sink.
    seed = json.loads(stack.spec["configs"]["sim-seed"]["content"])
    for shop in seed["shops"]:
        skus = "\n".join(item["sku"] for item in shop["items"]) + "\n"
        done = subprocess.run(["podman", "exec", "-i", containers["sink"], "tally", "catalog",
                               "sync", "--shop", shop["domain"], "--skus", "/dev/stdin"],
                              input=skus, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"mapped {len(shop['items'])} SKUs" in done.stdout, done.stdout

    # Upstream events through the source topics: opening stock, then mixed traffic.
    skus = sorted({item["sku"] for shop in seed["shops"] for item in shop["items"]})
    gen = TrafficGenerator(skus=skus, branches=["AUS-WH", "BKN-RETAIL", "MAN-RETAIL"],
                           tpl_branches=["EU-3PL"], seed=int(time.time()), start=time.time())
    sources = Topics().sources()
    producer = Producer({"bootstrap.servers": KAFKA, "enable.idempotence": True})
    for system, raw in opening_snapshots(skus, ["AUS-WH", "BKN-RETAIL", "MAN-RETAIL"],
                                         ["EU-3PL"]):
        producer.produce(sources[system], value=raw)
    assert producer.flush(60) == 0
    sent = 0
    for _ in range(20):
        for system, raw in gen.encoded(25):
            producer.produce(sources[system], value=raw)
            sent += 1
        producer.poll(0)
        time.sleep(1.0)
    assert producer.flush(60) == 0
    del producer

    # A webhook signed with the shop's secret goes through the intake; a forged one does not.
    secret = stack.spec["services"]["webhooks"]["environment"]["TALLY_WEBHOOK_SECRET_DEMO"]
    order_id = 900_000_000 + int(uuid.uuid4().int % 1_000_000)
    body = json.dumps(webhook_order(skus[0], order_id)).encode()
    headers = {"X-Shopify-Topic": "orders/create",
               "X-Shopify-Shop-Domain": "tally-demo.myshopify.com",
               "X-Shopify-Event-Id": str(uuid.uuid4()), "X-Shopify-API-Version": "2026-10"}
    forged, _ = http(f"{HOOKS}/webhooks", body, {**headers, "X-Shopify-Hmac-Sha256":
                                                  signed("not-the-secret", body)})
    assert forged == 401
    status, answer = http(f"{HOOKS}/webhooks", body, {**headers,
                                                     "X-Shopify-Hmac-Sha256": signed(secret, body)})
    assert status == 200, answer

    # Storefront customers stop; then Shopify must come to equal the ledger on every key.
    assert http(f"{SIM}/_sim/config", {"storefront_rate": 0})[0] == 200
    locations_file = REPO / "deploy/config/locations.example.toml"
    deadline = time.monotonic() + 240
    while True:
        shopify, ledger = shopify_and_ledger(locations_file)
        if shopify == ledger or time.monotonic() > deadline:
            break
        time.sleep(3)
    different = {k: (shopify[k], ledger[k]) for k in shopify if shopify[k] != ledger[k]}
    assert not different, (different, worker_counts())
    # The workers answer for the same keys (worker-1 forwards to the owner of each key).
    lookups = {k: http(f"{WORKER}/ledger/{k}/") for k in sorted(ledger)}
    answers = {k: v["available_to_sell"] if st == 200 else (st, v)
               for k, (st, v) in lookups.items()}
    note(f"ledger lookups through worker-1: {answers}")
    assert len(shopify) == 8 * 3 and sum(shopify.values()) > 0
    _, sim_stats = http(f"{SIM}/_sim/stats")
    note(f"compose: up in {stack.up_seconds:.1f}s, every service healthy "
          f"{healthy_after - stack.up_started:.1f}s after `up` began, ready "
          f"{ready_after - stack.up_started:.1f}s; {sent} events; "
          f"Shopify equals the ledger on {len(shopify)} keys; simulator {sim_stats}")

    # Prometheus (the stand-in container) scrapes every Tally service.
    deadline = time.monotonic() + 90
    while True:
        _, targets = http(f"{PROMETHEUS}/api/v1/targets")
        health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"]
                  for t in targets["data"]["activeTargets"]}
        jobs = {job for job, _ in health}
        if (jobs >= TALLY_JOBS and all(h == "up" for (job, _), h in health.items()
                                      if job in TALLY_JOBS)) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert jobs >= TALLY_JOBS, health
    assert all(h == "up" for (job, _), h in health.items() if job in TALLY_JOBS), health
    assert len([1 for job, _ in health if job in TALLY_JOBS]) == 5
