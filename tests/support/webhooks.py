"""Acting as Shopify towards the webhook intake: signed order webhooks, deliveries retried until
answered 200 (as Shopify does), and a sampler of a service's /readyz and /healthz."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import aiohttp

from pipeline.shopify_sim.webhooks import sign


def order_body(oid: int, lines: list[dict] | None = None) -> bytes:
    return json.dumps({"id": oid, "name": f"#{oid}", "created_at": "2026-03-10T10:00:00Z",
                       "gateway": "bogus", "line_items": lines or [
                           {"id": oid + 1, "sku": "SKU-HOOK", "quantity": 1}]}).encode()


def webhook_headers(secret: str, shop: str, body: bytes, event_id: str,
                    topic: str = "orders/create") -> dict[str, str]:
    return {"X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": shop,
            "X-Shopify-Hmac-Sha256": sign(secret, body), "X-Shopify-Event-Id": event_id,
            "Content-Type": "application/json"}


async def wait_status(http: aiohttp.ClientSession, url: str, status: int, timeout: float
                      ) -> float:
    """Poll ``url`` until it answers ``status``; returns the seconds it took."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout:
        try:
            async with http.get(url) as r:
                if r.status == status:
                    return time.monotonic() - started
                last = f"{r.status} {(await r.text())[:2000]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = repr(exc)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not {status} after {timeout} s; last answer: {last}")


@dataclass
class Deliveries:
    """Order webhooks sent at ``rate`` per second, each retried every ``retry_s`` until 200."""

    http: aiohttp.ClientSession
    url: str  # .../webhooks
    secret: str
    shop: str
    rate: float = 10.0
    retry_s: float = 0.5
    accepted: dict[int, float] = field(default_factory=dict)  # order id -> when answered 200
    refused: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def deliver(self, oid: int) -> None:
        body = order_body(oid)
        headers = webhook_headers(self.secret, self.shop, body, f"ev-{oid}")
        while True:
            try:
                async with self.http.post(self.url, data=body, headers=headers) as r:
                    if r.status == 200:
                        self.accepted[oid] = time.monotonic()
                        return
                    assert r.status == 503, await r.text()
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.refused += 1
            await asyncio.sleep(self.retry_s)

    async def run(self, first_id: int = 10_000) -> None:
        """Send until ``stop`` is set (then the caller awaits ``finish``)."""
        oid = first_id
        while not self.stop.is_set():
            self.tasks.append(asyncio.create_task(self.deliver(oid)))
            oid += 10
            await asyncio.sleep(1 / self.rate)

    async def finish(self, timeout: float) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), timeout)

    @property
    def sent(self) -> int:
        return len(self.tasks)


@dataclass
class Sampler:
    """(time, path, status, body) of ``base``'s /readyz and /healthz every ``every`` s."""

    http: aiohttp.ClientSession
    base: str
    every: float = 0.25
    samples: list[tuple[float, str, int, dict]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for path in ("/readyz", "/healthz"):
                try:
                    async with self.http.get(self.base + path) as r:
                        self.samples.append((time.monotonic(), path, r.status, await r.json()))
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    self.samples.append((time.monotonic(), path, 0, {}))
            await asyncio.sleep(self.every)

    def between(self, path: str, start: float, end: float) -> list[tuple[int, dict]]:
        return [(s, b) for t, p, s, b in self.samples if p == path and start < t < end]

    def first_ok_after(self, path: str, start: float) -> float | None:
        return next((round(t - start, 2) for t, p, s, _ in self.samples
                     if p == path and t >= start and s == 200), None)
