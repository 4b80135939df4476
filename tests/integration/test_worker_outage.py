"""The ledger worker through a broker outage, on a broker of the test's own: /readyz says 503
naming Kafka while the broker is away and 200 again by itself after, /healthz stays 200 (a
restart would not help), and the ledger ends equal to the oracle: nothing lost or doubled."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.ledger.locations import load_locations
from pipeline.simulation.traffic import TrafficGenerator
from tests.support.fixtures import write_locations
from tests.support.kafka import producer
from tests.support.oracle import Oracle
from tests.support.outage import OutageBroker, outage_broker  # noqa: F401 (fixture)
from tests.support.worker import WorkerProcess, produce_events, wait_for_oracle

BRANCHES = ["WH-ONLINE", "STORE-ONLINE", "STORE-RETAIL-ONLY"]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, TimeoutError, ValueError):
        return 0, {}


def _wait_for(url: str, want: int, timeout: float) -> tuple[float, dict]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        status, body = _get(url)
        if status == want:
            return time.monotonic() - started, body
        time.sleep(0.25)
    raise AssertionError(f"{url} did not answer {want} within {timeout:.0f} s: {_get(url)}")


def test_worker_tells_the_truth_and_heals_after_a_broker_outage(
        outage_broker: OutageBroker, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = outage_broker.bootstrap
    locations_file = write_locations(tmp_path)
    worker = WorkerProcess(bootstrap, tmp_path / "w", locations_file)
    worker.create_topics()
    traffic = TrafficGenerator(skus=[f"SKU-OUTAGE-{i:02d}" for i in range(20)],
                               branches=BRANCHES, tpl_branches=["3PL-EU"], seed=9)
    before = [(s, json.dumps(ev).encode()) for s, ev in (traffic.event() for _ in range(500))]
    after = [(s, json.dumps(ev).encode()) for s, ev in (traffic.event() for _ in range(500))]
    oracle = Oracle(load_locations(locations_file))
    oracle.feed(before + after)

    worker.start()
    try:
        worker.wait_ready()
        produce_events(producer(bootstrap), worker.topics, before)
        outage_broker.stop()
        took, body = _wait_for(f"{worker.url}/readyz", 503, timeout=60)
        assert "kafka" in body["failing"], body
        assert _get(f"{worker.url}/healthz")[0] == 200
        time.sleep(10)
        assert _get(f"{worker.url}/readyz")[0] == 503
        back = outage_broker.start()
        ready_after, _ = _wait_for(f"{worker.url}/readyz", 200, timeout=120)
        produce_events(producer(bootstrap), worker.topics, after)
        assert wait_for_oracle(worker, oracle, timeout=180) == []
        assert worker.alive() and worker.starts == 1
        print(f"worker: not ready {took:.1f} s after the broker stopped; ready "
              f"{ready_after:.1f} s after it answered again ({time.monotonic() - back:.1f} s "
              "until the ledger matched)")
    finally:
        worker.stop()
