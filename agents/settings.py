"""Worker settings (``tally worker``): loaded once in ``agents.worker.main`` with
``pipeline.settings.load``; documented in docs/configuration.md, which is generated from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import setting
from pipeline.settings.parts import (
    KafkaSettings,
    LedgerSettings,
    LoggingSettings,
    locations_setting,
)


@dataclass(frozen=True, kw_only=True)
class WorkerSettings(KafkaSettings, LedgerSettings, LoggingSettings):
    """Everything a ledger worker needs to start."""

    data_dir: Path = setting(
        Path(".tally/worker-data"), "RocksDB state directory (a persistent volume in production; "
        "`/data` in the image)", env="TALLY_DATA_DIR")
    locations_file: Path = locations_setting()
    # web_host is how peer workers reach this one (lookups are routed to the key's owner);
    # web_bind is the interface the server listens on (0.0.0.0 in containers).
    web_host: str = setting(
        "127.0.0.1", "host this worker advertises to peer workers for table routing "
        "(`/ledger/…` lookups go to the key's owner); the pod/container name in compose and "
        "Kubernetes", env="TALLY_WEB_HOST")
    web_bind: str = setting(
        "127.0.0.1", "interface the worker's web server listens on; `0.0.0.0` in containers",
        env="TALLY_WEB_BIND")
    web_port: int = setting(6066, "`/metrics`, `/healthz`, `/readyz`, `/ledger/{sku@branch}/`",
                            env="TALLY_WEB_PORT")
    dedupe_retention_s: float = setting(
        604800.0, "how long dedupe marks (source, transaction, line) are kept per position "
        "(7 days)", env="TALLY_DEDUPE_RETENTION_SECONDS")
    unmapped_report_interval_s: float = setting(
        3600.0, "at most one unmapped report per SKU@branch per interval",
        env="TALLY_UNMAPPED_REPORT_INTERVAL_SECONDS")
    block_cache_bytes: int = setting(
        32 * 1024 * 1024, "RocksDB block cache per table (32 MiB); counts against the memory "
        "limit", env="TALLY_ROCKSDB_BLOCK_CACHE_BYTES")
    standby_replicas: int = setting(
        0, "faust standby replicas of the positions table (1 = warm failover)",
        env="TALLY_STANDBY_REPLICAS")
    producer_linger_ms: int = setting(
        20, "how long the worker's producer waits to batch records into one produce request "
        "(20 ms: x1.4 events per worker CPU-second over 5 ms in `bench --only variants`)",
        env="TALLY_PRODUCER_LINGER_MS")
    apply_in_place: bool = setting(
        True, "apply a source record's movements where the record is read when it sits on the "
        "ledger key's own partition (producers keying `sku@location` with the murmur2 "
        "partitioner): one hop instead of re-keying through the movements topic. Checked per "
        "movement; `false` re-keys every movement", env="TALLY_APPLY_IN_PLACE")
    producer_delivery_timeout_s: float = setting(
        300.0, "how long the worker's C-backed producer (pushes, history, unmapped and low-stock "
        "records) keeps retrying a record while Kafka is away; past it the record counts as "
        "failed (`tally_worker_delivery_failures_total`) and the worker reads its input again "
        "from the last commit", env="TALLY_PRODUCER_DELIVERY_TIMEOUT_SECONDS")
    fetch_max_wait_ms: int = setting(
        100, "longest the broker may hold the worker's fetch when the partitions it names have "
        "no new records (faust's own is 1,500 ms, which kept a worker that fell behind ~2 s "
        "behind; agents/faust_internals.py)", env="TALLY_FETCH_MAX_WAIT_MS")
    commit_interval_s: float = setting(
        1.0, "how often the worker commits the input offsets it processed in order "
        "(agents/reading.py)", env="TALLY_COMMIT_INTERVAL_SECONDS")
    # Static group membership (KIP-345): a restarted worker with the same id takes its
    # partitions back at once, without the rebalances a departed member causes.
    instance_id: str | None = setting(
        None, "static group membership id of this worker (KIP-345): a restarted worker takes "
        "its partitions back without a rebalance; set a stable name per worker, e.g. the "
        "StatefulSet pod name", env="TALLY_INSTANCE_ID",
        doc_default="— (unset: dynamic membership)")
    session_timeout_s: float = setting(
        10.0, "Kafka consumer session timeout: how soon a crashed worker's partitions move to "
        "another", env="TALLY_SESSION_TIMEOUT_SECONDS")
    # Soft reservations without their own expiry end this long after they were made; the timer
    # that releases expired ones runs every reservation_scan_s.
    reservation_ttl_s: float = setting(
        86400.0, "expiry of a reservation that does not carry its own",
        env="TALLY_RESERVATION_TTL_SECONDS")
    reservation_scan_s: float = setting(
        5.0, "how often a worker's expiry timer scans its positions",
        env="TALLY_RESERVATION_SCAN_SECONDS")
    kits_file: Path | None = setting(
        None, "kits/bundles and per-SKU minimum publish thresholds (TOML, see below and "
        "`deploy/config/kits.example.toml`)", env="TALLY_KITS_FILE",
        doc_default="— (no kits, no per-SKU thresholds)")
