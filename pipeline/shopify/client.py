"""aiohttp access to one shop's Admin GraphQL endpoint: one POST, with a deadline.

No retry logic here: the caller decides what a response means (the sink: ``responses.classify``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from pipeline.observability import metrics as m
from pipeline.shopify.shops import ShopConfig


@dataclass(frozen=True)
class HttpResult:
    """An HTTP answer (``status`` > 0) or a transport failure (``error`` set, status 0)."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str]
    error: str | None = None


class ShopClient:
    """One aiohttp session per shop, so a slow shop's connections never starve another's.

    Every call has a deadline of ``timeout_s`` from connect to the last byte of the answer (and
    an asyncio timeout around it, in case a stage escapes aiohttp's own): a call that misses it is
    answered ``HttpResult(error="timeout")``. ``longest_s`` is the longest call so far."""

    def __init__(self, shop: ShopConfig, timeout_s: float) -> None:
        self.shop = shop
        self.timeout_s = timeout_s
        self.longest_s = 0.0
        self._token = shop.token()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(5.0, timeout_s)),
            headers={"X-Shopify-Access-Token": self._token, "Content-Type": "application/json"},
        )

    @property
    def token(self) -> str:
        return self._token

    async def close(self) -> None:
        await self._session.close()

    async def post(self, body: dict[str, Any]) -> HttpResult:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s + 0.5):
                return await self._post(body)
        except TimeoutError:
            return HttpResult(0, None, {}, "timeout")
        finally:
            took = time.monotonic() - started
            self.longest_s = max(self.longest_s, took)
            m.SHOPIFY_REQUEST_SECONDS.labels(self.shop.domain).observe(took)

    async def _post(self, body: dict[str, Any]) -> HttpResult:
        try:
            async with self._session.post(self.shop.graphql_url, data=json.dumps(body)) as resp:
                text = await resp.text()
                headers = {k: v for k, v in resp.headers.items()}
                try:
                    parsed = json.loads(text) if text else None
                except ValueError:
                    parsed = None
                return HttpResult(resp.status, parsed if isinstance(parsed, dict) else None,
                                  headers)
        except TimeoutError:
            return HttpResult(0, None, {}, "timeout")
        except (aiohttp.ClientError, ConnectionError, asyncio.IncompleteReadError) as exc:
            return HttpResult(0, None, {}, type(exc).__name__)
