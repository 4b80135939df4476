"""One producer configuration: every producer Tally builds partitions a key as faust does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from confluent_kafka import Producer

from agents.direct_producer import config as worker_config
from pipeline.infra.kafka_write import PARTITIONER, producer_config

ROOT = Path(__file__).resolve().parents[2]
# Where a producer may be constructed: the configuration's own module, the webhook intake's
# disposable client (given producer_config's output), and the bench's minimal aiokafka
# reference (faust's own producer, measured on purpose).
CONSTRUCTORS_ALLOWED = {"pipeline/infra/kafka_write.py", "pipeline/webhooks/publisher.py",
                        "bench/throughput.py"}


def test_fixed_settings_and_extras() -> None:
    config = producer_config("broker:9092", client_id="tally-sink", linger_ms=7,
                             extra={"message.timeout.ms": 60_000})
    assert config["partitioner"] == PARTITIONER == "murmur2_random"
    assert config["enable.idempotence"] is True
    assert config["bootstrap.servers"] == "broker:9092" and config["client.id"] == "tally-sink"
    assert config["linger.ms"] == 7 and config["message.timeout.ms"] == 60_000
    assert config["reconnect.backoff.max.ms"] == 1000
    assert "client.id" not in producer_config("broker:9092")


@pytest.mark.parametrize("name, value", [("partitioner", "consistent_random"),
                                         ("enable.idempotence", False)])
def test_partitioner_and_idempotence_cannot_be_changed(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        producer_config("broker:9092", extra={name: value})


def test_librdkafka_accepts_the_worker_configuration() -> None:
    # Unknown or ill-typed settings fail here, at construction, without a broker.
    config = worker_config("127.0.0.1:1", client_id="t", linger_ms=5, delivery_timeout_s=30)
    Producer(config).flush(0)
    assert config["delivery.report.only.error"] is True


def test_no_producer_is_built_outside_the_one_configuration() -> None:
    offenders = []
    for folder in ("pipeline", "agents", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(), rel)
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in {"Producer", "AIOKafkaProducer"}
                        and rel not in CONSTRUCTORS_ALLOWED):
                    offenders.append(f"{rel}:{node.lineno}")
                if (isinstance(node, ast.Constant) and node.value == PARTITIONER
                        and rel != "pipeline/infra/kafka_write.py"):
                    offenders.append(f"{rel}:{node.lineno} names the partitioner")
    assert offenders == []

