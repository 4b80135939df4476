"""No record stops a partition: every class of hostile record, on the real broker, interleaved with
valid traffic whose effect the test computes itself (the oracle replays the pure core).

Each bad record must be on the dead-letter topic with the expected reason (and fit there), each
valid one applied exactly once, every partition's committed offset at its end, and the worker
never restarted. (test_worker_resilience.py is the broad fuzz: 10,000 mutated records.)
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

from confluent_kafka import Producer

from pipeline.ledger.locations import load_locations
from pipeline.ledger.movements import Movement
from pipeline.messages import DEAD_LETTER_MAX_BYTES, DeadLetter
from pipeline.simulation.traffic import TrafficGenerator
from tests.support.fixtures import event, write_locations
from tests.support.kafka import consume_all
from tests.support.oracle import Oracle
from tests.support.worker import WorkerProcess, metric, wait_for_oracle

BRANCHES = ["WH-ONLINE", "STORE-ONLINE", "STORE-RETAIL-ONLY"]
BROKER_LIMIT = 1_048_588  # Kafka's default message.max.bytes (the local broker keeps it)
AT = "2026-11-30T10:00:00Z"
CONFLICT_KEY = b"SKU-CONFLICT-FIRST-WINS@WH-ONLINE"

# SKUs a real Shopify catalog holds: they must be admitted and addressable end to end.
LEGAL_SKUS = ["TEE BLUE M", "BUNDLE@2|A/B", "ÉTÉ-日本-منتج", "MUG ☕ 350ml"]
# Identifiers nobody should accept, and the code point the detail must name.
ILLEGAL_SKUS = {"SKU-NUL\x00": "U+0000", "SKU-ESC\x1b": "U+001B", "SKU-DEL\x7f": "U+007F",
                "SKU-ZWSP\u200b": "U+200B", "SKU-\u202eBIDI": "U+202E",
                "SKU-PRIVATE\ue000": "U+E000"}


def _hostile(seed: int) -> list[tuple[str, bytes | None, bytes | None, str]]:
    """(system, key, value, expected reason) for every hostile class."""
    rng = random.Random(seed)
    valid = json.dumps(event("pos.sale", "TX-TEMPLATE", "SKU-HOSTILE-OK", "WH-ONLINE", 1, AT))
    out: list[tuple[str, bytes | None, bytes | None, str]] = [
        ("pos", b"k", b"\x01" * 200_000, "too_large"),  # 200 KB of control bytes
        ("pos", b"k", rng.randbytes(1_000_000), "too_large"),  # 1 MB, not UTF-8
        ("erp", b"k", rng.randbytes(BROKER_LIMIT - 400), "too_large"),  # the broker's limit
        ("pos", b"k", b'{"sku": "\xc3\x28"}', "not_utf8"),
        ("pos", None, None, "empty_record"),  # a tombstone with a null key
        ("wms", b"x" * 20_000, b"[" * 30_000 + b"]" * 30_000, "malformed_json"),  # huge key
        ("pos", b"k", b'{"quantity": 1e400}', "schema_violation"),  # inf: not an integer
        ("pos", b"k", b"12345678901234567890123456789", "not_an_object"),
        ("pos", b"k", valid.replace('"quantity": 1', '"quantity": 1e999').encode(),
         "schema_violation"),
        ("pos", b"k", valid.replace('"quantity": 1', '"quantity": 100000000000000000000000')
         .encode(), "quantity_out_of_range"),
        ("pos", b"k", valid.replace('"quantity": 1', '"quantity": "1"').encode(),
         "schema_violation"),
        ("pos", b"k", valid.replace('"SKU-HOSTILE-OK"', '"SKU-\\ud800"').encode(),
         "invalid_identifier"),  # an escape that decodes to a lone surrogate
        ("pos", b"k", valid.replace('"TX-TEMPLATE"', '"TX-\\udfff"').encode(),
         "invalid_identifier"),
    ]
    for i, (sku, _) in enumerate(ILLEGAL_SKUS.items()):
        ev = event("pos.sale", f"TX-ILLEGAL-{i}", sku, "WH-ONLINE", 1, AT)
        out.append(("pos", None, json.dumps(ev).encode(), "invalid_identifier"))
    return out


def _legal_and_conflicting() -> list[tuple[str, bytes]]:
    """Receipts for SKUs with spaces, '@', '|', '/', other scripts, and a conflicting resend."""
    out = []
    for i, sku in enumerate(LEGAL_SKUS):
        for j, qty in enumerate((7, 3)):
            ev = event("erp.goods_receipt", f"PO-LEGAL-{i}-{j}", sku, "WH-ONLINE", qty, AT)
            out.append(("erp", json.dumps(ev, ensure_ascii=False).encode()))
    first = event("pos.sale", "TX-CONFLICT", "SKU-CONFLICT-FIRST-WINS", "WH-ONLINE", 2, AT)
    out.append(("pos", json.dumps(first).encode()))
    out.append(("pos", json.dumps(dict(first, quantity=5)).encode()))  # same line, other content
    out.append(("pos", json.dumps(first).encode()))  # a plain redelivery
    return out


def test_no_record_stops_a_partition(kafka_bootstrap: str, tmp_path: Path) -> None:
    locations_file = write_locations(tmp_path)
    worker = WorkerProcess(kafka_bootstrap, tmp_path / "w", locations_file)
    worker.create_topics()
    sources = worker.topics.sources()
    traffic = TrafficGenerator(skus=[f"SKU-CALM-{i:02d}" for i in range(40)], branches=BRANCHES,
                               tpl_branches=["3PL-EU"], seed=5, duplicate_rate=0.02)
    valid = [(system, json.dumps(ev).encode()) for system, ev in
             (traffic.event() for _ in range(2_000))] + _legal_and_conflicting()
    hostile = _hostile(seed=13)
    # A foreign producer's records on the movements topic: one unreadable, one that reads but
    # that the ledger cannot apply (an unknown op) -> bad_movement and internal_error.
    bad_op = Movement(sku="SKU-BAD-OP", branch="WH-ONLINE", mark="x:1:1", source="erp",
                      type="erp.goods_receipt", occurred_at=1.0, op="teleport").to_json()

    oracle = Oracle(load_locations(locations_file))
    oracle.feed(valid)
    assert not oracle.rejections and len(oracle.conflicts) == 1
    expected = Counter(reason for *_, reason in hostile)
    expected.update(["conflicting_duplicate", "bad_movement", "internal_error"])

    # "First" is defined within a partition only: unkeyed records land on random partitions and
    # are read in any order across them, so the conflicting resend is keyed as the contract
    # recommends (sku@location), which keeps its order.
    records: list[tuple[str, bytes | None, bytes | None]] = [
        (sources[s], CONFLICT_KEY if b"TX-CONFLICT" in v else None, v) for s, v in valid]
    rng = random.Random(3)
    for system, key, value, _ in hostile:  # bad records at random places among the good ones
        records.insert(rng.randrange(len(records) + 1), (sources[system], key, value))
    records.insert(rng.randrange(len(records)), (worker.topics.movements, b"SKU-X@WH-ONLINE",
                                                 b'{"v":1,"sku":"SKU-X"}'))
    records.insert(rng.randrange(len(records)), (worker.topics.movements,
                                                 b"SKU-BAD-OP@WH-ONLINE", bad_op))

    worker.start()
    try:
        worker.wait_ready()
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5,
                             "partitioner": "murmur2_random", "enable.idempotence": True,
                             "message.max.bytes": BROKER_LIMIT})
        for topic, key, value in records:
            producer.produce(topic, key=key, value=value)
            producer.poll(0)
        assert producer.flush(60) == 0
        del producer  # no reconnect noise once the broker fixture stops

        letters = [DeadLetter.from_json(m.value()) for m in consume_all(
            kafka_bootstrap, worker.topics.dead_letter, expect=sum(expected.values()),
            timeout=240)]
        wire_sizes = [len(m) for m in (x.to_json() for x in letters)]
        assert Counter(x.reason for x in letters) == expected, [
            (x.reason, x.detail) for x in letters]
        assert max(wire_sizes) <= DEAD_LETTER_MAX_BYTES
        by_length = {x.original_length: x for x in letters}
        big = by_length[BROKER_LIMIT - 400]
        assert big.truncated and big.original_sha256 and big.source_offset is not None
        control = by_length[200_000]
        assert not control.truncated and control.original_bytes() == b"\x01" * 200_000
        for x in letters:
            if x.truncated:  # the original can still be read from its source
                continue
            assert x.original_sha256 == hashlib.sha256(x.original_bytes()).hexdigest()
        details = " | ".join(x.detail for x in letters if x.reason == "invalid_identifier")
        for named in ILLEGAL_SKUS.values():
            assert named in details
        conflict = next(x for x in letters if x.reason == "conflicting_duplicate")
        assert conflict.extra["applied_digest"] != conflict.extra["digest"]
        internal = next(x for x in letters if x.reason == "internal_error")
        assert internal.extra["exception"] == "ValueError" and internal.extra["traceback_digest"]

        assert wait_for_oracle(worker, oracle, timeout=180) == []  # also: no partition behind
        for sku in LEGAL_SKUS:
            assert worker.lookup(sku, "WH-ONLINE")["components"]["on_hand"] == 10
        assert worker.lookup("SKU-CONFLICT-FIRST-WINS", "WH-ONLINE")["components"][
            "pending_sales"] == 2
        assert worker.alive() and worker.starts == 1
        crashes = [line for line in worker.tail(5_000_000).splitlines()
                   if "Crashed reason=" in line and "CancelledError" not in line]
        assert crashes == []  # faust's log when an agent dies and is restarted
        assert metric(worker.url, 'tally_internal_errors_total{agent="ledger"}') == 1.0
        assert metric(worker.url, 'tally_conflicting_duplicates_total{source="pos"}') == 1.0
    finally:
        worker.stop()
