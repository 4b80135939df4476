"""Settings of the operator tools (``tally dlq``, ``catalog``, ``ledger``): loaded once in each
tool's ``main``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import setting
from pipeline.settings.parts import KafkaSettings, LedgerSettings


@dataclass(frozen=True, kw_only=True)
class OperatorSettings(KafkaSettings, LedgerSettings):
    """Kafka, the ledger's changelog (catalog sync), the worker to ask and the shops file."""

    worker_url: str = setting(
        "http://127.0.0.1:6066", "worker that `tally ledger show` asks (any worker; it routes "
        "to the owner)", env="TALLY_WORKER_URL", flag="--worker")
    shops_file: Path | None = setting(
        None, "shops file (see below); required", env="TALLY_SHOPS_FILE",
        flag="--shops-file", doc_default="—")
