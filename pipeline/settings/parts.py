"""The settings services share: Kafka (with the topic names), the ledger they read, logging, and
the branches and shops file fields. Services compose them by inheritance, so their attributes stay
flat (``settings.bootstrap``, ``settings.topics``), as the worker's and the tests' code expects.

Web endpoints are declared by each service: their variables differ (``TALLY_WEB_PORT``,
``TALLY_SINK_WEB_PORT``, ``TALLY_WEBHOOKS_PORT``, ...) and deployments set them, so one shared
part would have to rename either the variables or the attributes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.settings import part, setting
from pipeline.shopify.shops import load_shops
from pipeline.topics import Topics, changelog_topic

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_LOCATIONS_FILE = "deploy/config/locations.example.toml"


@dataclass(frozen=True, kw_only=True)
class KafkaSettings:
    """Where Kafka is and how Tally's topics are named and created."""

    bootstrap: str = setting(
        DEFAULT_BOOTSTRAP, "Kafka bootstrap servers, `host:port[,host:port]`",
        env=("TALLY_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP"), flag="--bootstrap")
    partitions: int = setting(
        8, "partitions of every topic Tally creates; movements, push and the ledger changelog "
        "share it. Upper bound for worker replicas", env="TALLY_PARTITIONS")
    replication_factor: int = setting(
        1, "replication factor of topics Tally creates (use 3 in production)",
        env="TALLY_REPLICATION_FACTOR")
    topics: Topics = part(Topics)


@dataclass(frozen=True, kw_only=True)
class LedgerSettings:
    """Which worker's ledger: its application id names its consumer group and changelogs."""

    app_id: str = setting(
        "tally-ledger", "faust application id = consumer group and changelog topic prefix",
        env="TALLY_APP_ID")

    @property
    def positions_changelog(self) -> str:
        """The ledger's positions changelog topic (read by reconcile and catalog sync)."""
        return changelog_topic(self.app_id)


@dataclass(frozen=True, kw_only=True)
class LoggingSettings:
    """Logs: JSON lines on stderr."""

    log_level: str = setting("info", "log level of every service (JSON lines on stderr)",
                             env="TALLY_LOG_LEVEL")


def locations_setting() -> Any:
    """The branches file field, shared by the worker, the webhook intake and reconcile."""
    return setting(
        Path(DEFAULT_LOCATIONS_FILE), "branches file (see below)", env="TALLY_LOCATIONS_FILE")


def shops_setting() -> Any:
    """The shops file field (parsed into ``ShopConfig``s), shared by the sink and reconcile."""
    return setting(help="shops file (see below); required", env="TALLY_SHOPS_FILE",
                   flag="--shops-file", parse=load_shops, factory=list, doc_default="—")
