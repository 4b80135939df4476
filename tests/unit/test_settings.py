"""The one settings mechanism: flag > environment > settings file > default, one bootstrap."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from agents.settings import WorkerSettings
from pipeline.settings import add_flags, load, resolve
from pipeline.settings.parts import DEFAULT_BOOTSTRAP, KafkaSettings
from pipeline.sink.config import SinkSettings
from pipeline.sink.service import settings_from_args
from pipeline.topics import Topics, changelog_topic


def test_precedence_flag_then_env_then_file_then_default(tmp_path: Path) -> None:
    file = tmp_path / "tally.toml"
    file.write_text('TALLY_WEB_PORT = 7001\nTALLY_APP_ID = "from-file"\n'
                    'TALLY_DATA_DIR = "/file/data"\nTALLY_TOPIC_ERP = "erp.file"\n')
    env = {"TALLY_CONFIG_FILE": str(file), "TALLY_WEB_PORT": "7002", "TALLY_APP_ID": "from-env"}
    s, origin = resolve(WorkerSettings, environ=env, flags={"bootstrap": "flag:1"})
    assert (s.bootstrap, origin["bootstrap"]) == ("flag:1", "flag")
    assert (s.web_port, origin["web_port"]) == (7002, "env")
    assert (s.app_id, origin["app_id"]) == ("from-env", "env")
    assert (s.data_dir, origin["data_dir"]) == (Path("/file/data"), "file")
    assert (s.topics.erp, origin["topics.erp"]) == ("erp.file", "file")
    assert (s.partitions, origin["partitions"]) == (8, "default")
    assert s.topics.wms == "inventory.wms.v1"


def test_config_flag_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "t.toml"
    file.write_text('TALLY_SINK_GROUP = "g-file"\n')
    parser = add_flags(argparse.ArgumentParser(), SinkSettings)
    s = load(SinkSettings, flags=parser.parse_args(["--config", str(file)]), environ={})
    assert s.group_id == "g-file"


def test_one_default_bootstrap_and_one_fallback_order() -> None:
    for cls in (WorkerSettings, SinkSettings, KafkaSettings):
        assert load(cls, environ={}).bootstrap == DEFAULT_BOOTSTRAP == "127.0.0.1:9092"
        assert load(cls, environ={"KAFKA_BOOTSTRAP": "k:1"}).bootstrap == "k:1"
        both = {"KAFKA_BOOTSTRAP": "k:1", "TALLY_KAFKA_BOOTSTRAP": "t:1"}
        assert load(cls, environ=both).bootstrap == "t:1"
        # an empty variable counts as unset
        empty = {"KAFKA_BOOTSTRAP": "k:1", "TALLY_KAFKA_BOOTSTRAP": ""}
        assert load(cls, environ=empty).bootstrap == "k:1"


def test_optional_values_and_bad_values() -> None:
    s = load(WorkerSettings, environ={"TALLY_INSTANCE_ID": "", "TALLY_KITS_FILE": "k.toml"})
    assert s.instance_id is None and s.kits_file == Path("k.toml")
    assert load(SinkSettings, environ={}).web_port is None
    assert load(SinkSettings, environ={"TALLY_SINK_WEB_PORT": "6067"}).web_port == 6067
    with pytest.raises(ValueError, match="TALLY_WEB_PORT"):
        load(WorkerSettings, environ={"TALLY_WEB_PORT": "sixty"})


def test_settings_are_immutable_and_construction_reads_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLY_WEB_PORT", "7777")
    s = WorkerSettings()
    assert s.web_port == 6066
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.web_port = 1  # type: ignore[misc]


def test_sink_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLY_SINK_WINDOW_S", "3")
    monkeypatch.setenv("TALLY_TOPIC_DLQ", "dlq.env")
    s = settings_from_args(["--window", "0.5", "--topic-push", "push.flag", "--bootstrap", "b:2"])
    assert (s.window_s, s.topics.shopify_push, s.bootstrap) == (0.5, "push.flag", "b:2")
    assert s.topics.dead_letter == "dlq.env"
    assert settings_from_args([]).window_s == 3.0


def test_topic_names_and_changelog_from_one_place() -> None:
    t = Topics.prefixed("run")
    assert t.erp == "run.inventory.erp.v1"
    assert load(Topics, environ=t.env()) == t
    assert changelog_topic("tally-ledger") == "tally-ledger-positions-changelog"
    assert load(WorkerSettings, environ={"TALLY_APP_ID": "a"}).positions_changelog == (
        "a-positions-changelog")


def test_the_topics_job_creates_topics_where_the_environment_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The compose / Kubernetes one-shot topics job loads the worker's settings (a bare
    ``WorkerSettings()`` would be the defaults, 127.0.0.1:9092, not the cluster)."""
    import yaml

    import pipeline.infra.kafka_topics as kafka_topics

    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml")
                             .read_text())
    code = compose["services"]["topics"]["entrypoint"][2]
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(kafka_topics, "ensure_topics", lambda *a: calls.append(a) or [])
    monkeypatch.setenv("TALLY_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("TALLY_PARTITIONS", "12")
    exec(code, {"print": lambda *a: None})
    (bootstrap, topics, partitions, replication), = calls
    assert (bootstrap, partitions, replication) == ("kafka:9092", 12, 1)
    assert isinstance(topics, Topics)


def test_config_show_says_where_each_value_came_from(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from pipeline.settings.docs import main

    monkeypatch.setenv("TALLY_SINK_GROUP", "g-env")
    for name in ("TALLY_CONFIG_FILE", "TALLY_SHOPS_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["show", "sink"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["group_id"] == {"value": "g-env", "from": "env", "variable": "TALLY_SINK_GROUP"}
    assert shown["shops"]["value"] == "0 entries"  # parsed files are counted, never printed
    assert main(["docs", "--check"]) == 0
