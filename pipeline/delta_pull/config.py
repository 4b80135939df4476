"""Delta pull settings (``tally delta-pull``): loaded once in its ``main``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import setting
from pipeline.settings.parts import KafkaSettings, LoggingSettings


@dataclass(frozen=True, kw_only=True)
class DeltaPullSettings(KafkaSettings, LoggingSettings):
    """Where watermarks live, how often and how far back each poll reads, the web endpoint."""

    state_dir: Path = setting(Path(".tally/delta-pull"), "where watermark files are kept",
                              env="TALLY_DELTA_PULL_STATE_DIR", flag="--state-dir")
    overlap_s: float = setting(
        300.0, "how far each window re-reads before the watermark (dedupe makes the overlap "
        "safe)", env="TALLY_DELTA_PULL_OVERLAP_SECONDS", flag="--overlap")
    interval_s: float = setting(900.0, "time between polls",
                                env="TALLY_DELTA_PULL_INTERVAL_SECONDS", flag="--interval")
    web_port: int | None = setting(
        None, "`tally delta-pull poll` serves `/readyz`, `/healthz` and `/metrics` on this port; "
        "unset = no web server", env="TALLY_DELTA_PULL_WEB_PORT",
        flag="--web-port")
    web_host: str = setting(
        "127.0.0.1", "address that web server binds (`0.0.0.0` in a container)",
        env="TALLY_DELTA_PULL_WEB_HOST")
