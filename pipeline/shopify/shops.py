"""The shops Tally writes to: the shops file (TOML). Tokens are referenced, never stored inline.

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

API_VERSION = "2026-10"  # the Admin API version Tally speaks


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
