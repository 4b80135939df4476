"""Webhook intake settings: a shops file (TOML) plus environment variables.

Webhooks file (``TALLY_WEBHOOKS_FILE``)::

    [[shop]]
    domain = "tally-demo.myshopify.com"
    secret_env = "TALLY_WEBHOOK_SECRET_DEMO"   # or secret_file = "/run/secrets/demo-webhooks"
    online_branch = "AUS-WH"                   # holds online orders until routing says otherwise
    ignore_source_names = ["pos"]              # orders Tally already gets from the POS topic

Secrets are referenced, never written in the file, and never logged.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.settings import setting
from pipeline.settings.parts import KafkaSettings, LoggingSettings, locations_setting

DEFAULT_MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class ShopWebhooks:
    """One shop's webhook secret reference and order-placement rules."""

    domain: str
    online_branch: str
    secret_env: str | None = None
    secret_file: str | None = None
    ignore_source_names: tuple[str, ...] = ("pos",)

    def secret(self) -> str:
        """Resolve the shop's webhook secret (never log the result)."""
        if self.secret_env:
            value = os.environ.get(self.secret_env, "")
            if not value:
                raise ValueError(f"shop {self.domain}: {self.secret_env} is unset")
            return value
        if self.secret_file:
            return Path(self.secret_file).read_text().strip()
        raise ValueError(f"shop {self.domain}: no secret_env or secret_file")


def parse_webhook_shops(data: dict[str, Any]) -> list[ShopWebhooks]:
    """Validate parsed TOML (``{"shop": [...]}``). Raises ValueError naming the problem."""
    out = []
    for i, row in enumerate(data.get("shop", []), start=1):
        if "secret" in row:
            raise ValueError(f"shop #{i}: inline secret refused; use secret_env or secret_file")
        if not isinstance(row.get("domain"), str) or not isinstance(row.get("online_branch"), str):
            raise ValueError(f"shop #{i}: domain and online_branch are required strings")
        if not (row.get("secret_env") or row.get("secret_file")):
            raise ValueError(f"shop #{i} ({row['domain']}): secret_env or secret_file required")
        out.append(ShopWebhooks(
            domain=row["domain"], online_branch=row["online_branch"],
            secret_env=row.get("secret_env"), secret_file=row.get("secret_file"),
            ignore_source_names=tuple(row.get("ignore_source_names", ("pos",))),
        ))
    if not out:
        raise ValueError("no [[shop]] in the webhooks file")
    return out


def load_webhook_shops(path: str | Path) -> list[ShopWebhooks]:
    with open(path, "rb") as fh:
        return parse_webhook_shops(tomllib.load(fh))


@dataclass(frozen=True, kw_only=True)
class WebhookSettings(KafkaSettings, LoggingSettings):
    """Everything ``tally webhooks`` needs; loaded once in ``pipeline.webhooks.service.main``."""

    shops: list[ShopWebhooks] = setting(
        help="shops, their secret references (`secret_env` / `secret_file`) and default online "
        "branch", env="TALLY_WEBHOOKS_FILE", parse=load_webhook_shops,
        fallback="deploy/config/webhooks.example.toml", factory=list)
    locations_file: Path = locations_setting()
    host: str = setting("127.0.0.1", "webhook intake bind host (`0.0.0.0` in containers)",
                        env="TALLY_WEBHOOKS_HOST", flag="--host")
    port: int = setting(8090, "webhook intake port: `/webhooks`, `/metrics`, `/healthz`, "
                        "`/readyz`", env="TALLY_WEBHOOKS_PORT", flag="--port")
    max_body_bytes: int = setting(DEFAULT_MAX_BODY_BYTES, "request body limit (413 above it)",
                                  env="TALLY_WEBHOOKS_MAX_BODY_BYTES")
    dedupe_ttl_s: float = setting(86400.0, "how long an `X-Shopify-Event-Id` is remembered",
                                  env="TALLY_WEBHOOKS_DEDUPE_TTL_SECONDS")
    dedupe_max_entries: int = setting(200000, "cap on remembered event ids",
                                      env="TALLY_WEBHOOKS_DEDUPE_MAX_ENTRIES")
    # Shopify waits 5 s for an answer; answer 503 well before so it retries rather than times out.
    publish_timeout_s: float = setting(
        3.0, "time to get Kafka's acknowledgment before answering 503 (Shopify retries)",
        env="TALLY_WEBHOOKS_PUBLISH_TIMEOUT_SECONDS")
