"""Reconciliation settings (``tally reconcile``): loaded once in ``pipeline.reconcile.cli.main``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import setting
from pipeline.settings.parts import (
    KafkaSettings,
    LedgerSettings,
    LoggingSettings,
    locations_setting,
    shops_setting,
)
from pipeline.shopify.shops import ShopConfig


@dataclass(frozen=True, kw_only=True)
class ReconcileSettings(KafkaSettings, LedgerSettings, LoggingSettings):
    """Everything a run (and ``--serve``) needs. ``app_id`` is the worker's: reconcile reads its
    positions changelog."""

    locations_file: Path = locations_setting()
    shops: list[ShopConfig] = shops_setting()
    # None: the topics' reconciliation topic (a test run passes its own).
    report_topic: str | None = None
    report_dir: Path = setting(
        Path(".tally/reconcile"), "where delta reports (JSON, CSV) and `history.jsonl` are "
        "written", env="TALLY_RECONCILE_REPORT_DIR", flag="--report-dir")
    grace_s: float = setting(
        300.0, "a key whose ledger changed this recently and is not yet acknowledged counts as "
        "push-in-flight and is left out", env="TALLY_RECONCILE_GRACE_SECONDS")
    batch: int = setting(100, "Shopify levels read per GraphQL call", env="TALLY_RECONCILE_BATCH")
    http_timeout_s: float = 30.0
    at: str = setting("02:00", "daily run time (UTC) of `tally reconcile --serve`",
                      env="TALLY_RECONCILE_AT", flag="--at")
    web_host: str = setting(
        "127.0.0.1", "bind address of the on-demand endpoint `POST /reconcile/{shop}`",
        env="TALLY_RECONCILE_WEB_HOST")
    web_port: int = setting(6070, "port of that endpoint", env="TALLY_RECONCILE_WEB_PORT",
                            flag="--port")

    def __post_init__(self) -> None:
        if self.report_topic is None:  # frozen: set once, here, from the one place of names
            object.__setattr__(self, "report_topic", self.topics.reconciliation)

    def shop(self, domain: str) -> ShopConfig:
        for s in self.shops:
            if s.domain == domain:
                return s
        raise ValueError(f"shop {domain} is not in the shops file")
