"""``tally dlq`` on the real broker: events for a branch nobody configured yet are dead-lettered;
after the branch is added, a replay applies each exactly once, and a second replay changes
nothing (dedupe absorbs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.ledger.locations import load_locations
from tests.support.fixtures import LOCATIONS_TOML, event, write_locations
from tests.support.kafka import producer
from tests.support.oracle import Oracle
from tests.support.worker import WorkerProcess, produce_events, records, wait_for_oracle

POP_UP = """
[[branch]]
id = "POP-UP-STORE"
name = "A store that opened before anyone told Tally"
fulfills_online = false
"""
AT = "2026-11-30T10:00:00Z"


def _tally_dlq(worker: WorkerProcess, *args: str) -> dict:
    env = {**os.environ, **worker.topics.env(), "TALLY_KAFKA_BOOTSTRAP": worker.bootstrap}
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "dlq", *args], env=env,
                         capture_output=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_replay_after_the_branch_is_added_applies_each_letter_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    locations_file = write_locations(tmp_path)
    worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations_file)
    worker.create_topics()
    pop_up = [event("erp.goods_receipt", f"PO-POPUP-{i}", f"SKU-POPUP-{i % 5}", "POP-UP-STORE",
                    3 + i, AT) for i in range(20)]
    calm = [event("erp.goods_receipt", f"PO-CALM-{i}", f"SKU-CALM-{i}", "WH-ONLINE", 4, AT)
            for i in range(10)]
    stream = [(ev["source"], json.dumps(ev).encode()) for ev in [*pop_up, *calm]]

    worker.start()
    try:
        worker.wait_ready()
        produce_events(producer(kafka_bootstrap), worker.topics, stream)
        letters = records(kafka_bootstrap, worker.topics.dead_letter, expect=20, timeout=120)
        assert {x["reason"] for x in letters} == {"unknown_location"} and len(letters) == 20
        listed = _tally_dlq(worker, "list")
        assert listed["by_reason"] == {"unknown_location": 20}
        assert listed["by_source_system"] == {"erp": 20}
        shown = _tally_dlq(worker, "show", _an_id(worker))
        assert shown["reason"] == "unknown_location" and "POP-UP-STORE" in shown["detail"]
        assert json.loads(shown["original"])["location"] == "POP-UP-STORE"

        # The operator adds the branch and restarts the worker, then replays.
        worker.stop()
        locations_file.write_text(LOCATIONS_TOML + POP_UP)
        worker.start()
        worker.wait_ready()
        oracle = Oracle(load_locations(locations_file))
        oracle.feed(stream)
        replayed = _tally_dlq(worker, "replay", "--reason", "unknown_location")
        assert replayed["replayed"] == 20 and set(replayed) == {"replayed", "seconds"}
        assert wait_for_oracle(worker, oracle, timeout=120) == []
        assert worker.lookup("SKU-POPUP-0", "POP-UP-STORE")["components"]["on_hand"] == sum(
            3 + i for i in range(0, 20, 5))

        again = _tally_dlq(worker, "replay", "--reason", "unknown_location")
        assert again["replayed"] == 20
        assert wait_for_oracle(worker, oracle, timeout=120) == []  # versions unchanged too
        after = records(kafka_bootstrap, worker.topics.dead_letter, timeout=20, idle=3)
        assert len(after) == 20  # the replays were applied or absorbed, never dead-lettered
    finally:
        worker.stop()


def _an_id(worker: WorkerProcess) -> str:
    from tests.support.kafka import consume_all

    (msg, *_) = consume_all(worker.bootstrap, worker.topics.dead_letter, expect=1, timeout=30)
    return f"{msg.partition()}:{msg.offset()}"

