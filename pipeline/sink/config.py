"""Sink settings (``tally sink``): the shops file (``pipeline.shopify.shops``) + the shared
Kafka and logging parts; loaded once in ``pipeline.sink.service.main``."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import setting
from pipeline.settings.parts import KafkaSettings, LoggingSettings, shops_setting
from pipeline.shopify.shops import ShopConfig

__all__ = ["ShopConfig", "SinkSettings"]


@dataclass(frozen=True, kw_only=True)
class SinkSettings(KafkaSettings, LoggingSettings):
    """Everything the sink needs. Fields without a variable are tuning kept in code."""

    shops: list[ShopConfig] = shops_setting()
    group_id: str = setting("tally-sink", "consumer group on the push topic",
                            env="TALLY_SINK_GROUP", flag="--group")
    window_s: float = setting(
        1.0, "bounded staleness: a changed key is flushed at the latest after this many seconds "
        "after the sink reads it (keeps end-to-end under the 2 s target)",
        env="TALLY_SINK_WINDOW_S", flag="--window")
    quick_window_s: float = setting(
        0.2, "the window while the shop's cost bucket is at least half full: spare budget buys "
        "latency (a call every 0.2 s spends half the Standard plan's restore rate); a bucket "
        "drained below half by a backlog or by other apps brings back the full window. 0 turns "
        "it off", env="TALLY_SINK_QUICK_WINDOW_S", flag="--quick-window")
    hold_for_s: float = setting(
        30.0, "compare-and-set hold of a raise above Shopify's level before the ledger wins",
        env="TALLY_SINK_HOLD_S", flag="--hold")
    http_timeout_s: float = setting(
        10.0, "deadline of one Shopify call, connect to last byte; a call past it counts as a "
        "timeout and is retried with the same idempotency key after at most this long again, "
        "so a hung Shopify freezes only its own shop, for at most one deadline at a time",
        env="TALLY_SINK_HTTP_TIMEOUT_S")
    backoff_base_s: float = 0.25
    backoff_cap_s: float = 30.0
    commit_interval_s: float = 0.5
    max_reads_per_call: int = 50
    max_calls_in_flight: int = setting(
        4, "Shopify calls in flight per shop: beside a call in flight a full batch, or the keys "
        "whose window has passed, is sent (paced by the budget), so a backlog drains in "
        "parallel and a trickle goes out once per window without waiting for a slow call",
        env="TALLY_SINK_MAX_CALLS_IN_FLIGHT")
    max_held_records: int = setting(
        20_000, "backpressure: a push-topic partition holding this many records not yet done "
        "(a halted or slow shop) is paused, and resumed below half of it",
        env="TALLY_SINK_MAX_HELD_RECORDS")
    kafka_probe_interval_s: float = 2.0  # metadata request for /readyz's kafka condition
    web_port: int | None = setting(
        None, "port of `/metrics`, `/healthz`, `/readyz`, `/stats`; unset = no web server "
        "(`6067` in compose and Kubernetes). Binds `0.0.0.0`", env="TALLY_SINK_WEB_PORT",
        flag="--web-port")
    web_host: str = "0.0.0.0"
    client_id: str = "tally-sink"
