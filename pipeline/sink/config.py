"""Sink settings: the shops file (``pipeline.shopify.shops``) + environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from pipeline.shopify.shops import ShopConfig, load_shops
from pipeline.topics import Topics


def _f(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass
class SinkSettings:
    """Everything the sink needs; ``from_env()`` reads ``TALLY_*`` variables."""

    bootstrap: str = "localhost:9092"
    shops: list[ShopConfig] = field(default_factory=list)
    topics: Topics = field(default_factory=Topics)
    group_id: str = "tally-sink"
    window_s: float = 1.0  # bounded staleness: flush a dirty key at the latest after this
    hold_for_s: float = 30.0  # compare-and-set hold of a raise above Shopify's level
    http_timeout_s: float = 10.0  # deadline of one Shopify call, connect to last byte
    backoff_base_s: float = 0.25
    backoff_cap_s: float = 30.0
    commit_interval_s: float = 0.5
    max_reads_per_call: int = 50
    max_calls_in_flight: int = 4  # per shop; beside a call in flight only full batches go
    max_held_records: int = 20_000  # per partition; more unfinished records pause it
    kafka_probe_interval_s: float = 2.0  # metadata request for /readyz's kafka condition
    web_port: int | None = None  # /metrics, /healthz, /readyz (None = no web server)
    web_host: str = "0.0.0.0"
    client_id: str = "tally-sink"

    @classmethod
    def from_env(cls, **overrides: Any) -> SinkSettings:
        env = os.environ
        shops_file = env.get("TALLY_SHOPS_FILE")
        port = env.get("TALLY_SINK_WEB_PORT")
        values: dict[str, Any] = {
            "bootstrap": env.get("TALLY_KAFKA_BOOTSTRAP") or env.get("KAFKA_BOOTSTRAP")
            or "localhost:9092",
            "shops": load_shops(shops_file) if shops_file else [],
            "group_id": env.get("TALLY_SINK_GROUP", "tally-sink"),
            "window_s": _f("TALLY_SINK_WINDOW_S", 1.0),
            "hold_for_s": _f("TALLY_SINK_HOLD_S", 30.0),
            "http_timeout_s": _f("TALLY_SINK_HTTP_TIMEOUT_S", 10.0),
            "web_port": int(port) if port else None,
            "max_held_records": int(env.get("TALLY_SINK_MAX_HELD_RECORDS", "20000")),
            "max_calls_in_flight": int(env.get("TALLY_SINK_MAX_CALLS_IN_FLIGHT", "4")),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
