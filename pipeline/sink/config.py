"""Sink settings: shops file (TOML) + environment. Tokens are referenced, never stored inline.

Shops file (``TALLY_SHOPS_FILE``)::

    [[shop]]
    domain = "tally-demo.myshopify.com"
    admin_url = "https://tally-demo.myshopify.com"   # or the simulator's /shops/<domain>
    api_version = "2026-10"
    token_env = "TALLY_SHOPIFY_TOKEN_DEMO"             # or token_file = "/run/secrets/demo"

A ``token = "..."`` inline value is refused unless ``allow_inline_token = true`` is set at the top
of the file (for throwaway local runs only): tokens belong in the environment or a secret file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.sink.batching import API_VERSION
from pipeline.topics import Topics


@dataclass(frozen=True)
class ShopConfig:
    domain: str
    admin_url: str  # base URL; the GraphQL endpoint is {admin_url}/admin/api/{version}/graphql.json
    api_version: str = API_VERSION
    token_env: str | None = None
    token_file: str | None = None
    token_inline: str | None = field(default=None, repr=False)

    @property
    def graphql_url(self) -> str:
        return f"{self.admin_url.rstrip('/')}/admin/api/{self.api_version}/graphql.json"

    def token(self) -> str:
        """Resolve the access token (never log the result)."""
        if self.token_env:
            value = os.environ.get(self.token_env, "")
            if not value:
                raise ValueError(f"shop {self.domain}: environment variable {self.token_env} unset")
            return value.strip()
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        if self.token_inline:
            return self.token_inline
        raise ValueError(f"shop {self.domain}: no token_env or token_file")


def parse_shops(data: dict[str, Any]) -> list[ShopConfig]:
    allow_inline = bool(data.get("allow_inline_token", False))
    shops: list[ShopConfig] = []
    for row in data.get("shop", []):
        if "token" in row and not allow_inline:
            raise ValueError(
                f"shop {row.get('domain')}: inline token refused; use token_env or token_file"
            )
        shops.append(
            ShopConfig(
                domain=str(row["domain"]),
                admin_url=str(row["admin_url"]),
                api_version=str(row.get("api_version", API_VERSION)),
                token_env=row.get("token_env"),
                token_file=row.get("token_file"),
                token_inline=row.get("token"),
            )
        )
    return shops


def load_shops(path: str | Path) -> list[ShopConfig]:
    with open(path, "rb") as fh:
        return parse_shops(tomllib.load(fh))


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
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
