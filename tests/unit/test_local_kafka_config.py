"""The local broker's generated configuration is a loopback-only single-node KRaft cluster."""

from __future__ import annotations

from pathlib import Path

from pipeline.infra.local_kafka import LocalKafka


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and "=" in line)


def test_server_properties_bind_loopback_with_single_replica(tmp_path: Path) -> None:
    broker = LocalKafka(port=29092, controller_port=29093, home=tmp_path)
    props = _props(broker.server_properties())
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["log.dirs"].startswith(str(tmp_path))


def test_pom_pins_kafka_and_a_logging_backend(tmp_path: Path) -> None:
    pom = LocalKafka(version="3.9.1", home=tmp_path).pom()
    assert "<artifactId>kafka_2.13</artifactId><version>3.9.1</version>" in pom
    assert "<artifactId>reload4j</artifactId>" in pom
    assert "<artifactId>slf4j-reload4j</artifactId>" in pom
