"""Worker configuration, from environment variables (documented in docs/configuration.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.topics import Topics


def bootstrap_from_env() -> str:
    return os.environ.get("TALLY_KAFKA_BOOTSTRAP") or os.environ.get(
        "KAFKA_BOOTSTRAP", "127.0.0.1:9092"
    )


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a ledger worker needs to start."""

    bootstrap: str = field(default_factory=bootstrap_from_env)
    app_id: str = field(default_factory=lambda: os.environ.get("TALLY_APP_ID", "tally-ledger"))
    partitions: int = field(default_factory=lambda: int(os.environ.get("TALLY_PARTITIONS", "8")))
    replication_factor: int = field(
        default_factory=lambda: int(os.environ.get("TALLY_REPLICATION_FACTOR", "1"))
    )
    data_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("TALLY_DATA_DIR", ".tally/worker-data"))
    )
    locations_file: Path = field(
        default_factory=lambda: Path(
            os.environ.get("TALLY_LOCATIONS_FILE", "deploy/config/locations.example.toml")
        )
    )
    # web_host is how peer workers reach this one (lookups are routed to the key's owner);
    # web_bind is the interface the server listens on (0.0.0.0 in containers).
    web_host: str = field(default_factory=lambda: os.environ.get("TALLY_WEB_HOST", "127.0.0.1"))
    web_bind: str = field(default_factory=lambda: os.environ.get("TALLY_WEB_BIND", "127.0.0.1"))
    web_port: int = field(default_factory=lambda: int(os.environ.get("TALLY_WEB_PORT", "6066")))
    dedupe_retention_s: float = field(
        default_factory=lambda: float(os.environ.get("TALLY_DEDUPE_RETENTION_SECONDS", "604800"))
    )
    unmapped_report_interval_s: float = field(
        default_factory=lambda: float(os.environ.get("TALLY_UNMAPPED_REPORT_INTERVAL_SECONDS",
                                                     "3600"))
    )
    block_cache_bytes: int = field(
        default_factory=lambda: int(os.environ.get("TALLY_ROCKSDB_BLOCK_CACHE_BYTES",
                                                   str(32 * 1024 * 1024)))
    )
    standby_replicas: int = field(
        default_factory=lambda: int(os.environ.get("TALLY_STANDBY_REPLICAS", "0"))
    )
    producer_linger_ms: int = field(
        default_factory=lambda: int(os.environ.get("TALLY_PRODUCER_LINGER_MS", "20"))
    )
    commit_interval_s: float = field(
        default_factory=lambda: float(os.environ.get("TALLY_COMMIT_INTERVAL_SECONDS", "1.0"))
    )
    # Static group membership (KIP-345): a restarted worker with the same id takes its
    # partitions back at once, without the rebalances a departed member causes. Set it to a
    # stable name per worker (the pod name of a StatefulSet); unset = dynamic membership.
    instance_id: str | None = field(
        default_factory=lambda: os.environ.get("TALLY_INSTANCE_ID") or None
    )
    session_timeout_s: float = field(
        default_factory=lambda: float(os.environ.get("TALLY_SESSION_TIMEOUT_SECONDS", "10"))
    )
    # Soft reservations without their own expiry end this long after they were made; the timer
    # that releases expired ones runs every reservation_scan_s.
    reservation_ttl_s: float = field(
        default_factory=lambda: float(os.environ.get("TALLY_RESERVATION_TTL_SECONDS", "86400"))
    )
    reservation_scan_s: float = field(
        default_factory=lambda: float(os.environ.get("TALLY_RESERVATION_SCAN_SECONDS", "5"))
    )
    # Kits/bundles and per-SKU minimum publish thresholds (TOML); unset = none.
    kits_file: Path | None = field(
        default_factory=lambda: _optional_path(os.environ.get("TALLY_KITS_FILE"))
    )
    topics: Topics = field(default_factory=Topics)


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None
