"""Webhook payloads (REST resource shapes), HMAC signing and at-least-once delivery."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from pipeline.shopify_sim.state import Level, Order, Shop, gid, next_id

log = logging.getLogger(__name__)


def sign(secret: str, body: bytes) -> str:
    """``X-Shopify-Hmac-Sha256``: base64 of HMAC-SHA256 over the raw body, keyed by the secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def inventory_level_payload(level: Level) -> dict[str, Any]:
    return {
        "inventory_item_id": level.item.id,
        "location_id": level.location.id,
        "available": level.get("available"),
        "updated_at": level.updated_at,
        "admin_graphql_api_id": level.gid,
    }


def _money(amount: float, currency: str = "USD") -> dict[str, Any]:
    value = f"{amount:.2f}"
    return {"shop_money": {"amount": value, "currency_code": currency},
            "presentment_money": {"amount": value, "currency_code": currency}}


def order_payload(shop: Shop, order: Order) -> dict[str, Any]:
    """The REST Order resource, trimmed to what an inventory consumer reads (plus the usual
    identity, money and status fields so JSON-schema style consumers see a realistic body)."""
    variant = order.level.item.variant
    assert variant is not None
    price = float(variant.price)
    total = f"{price * order.quantity:.2f}"
    line_id = order.id + 1
    cancelled = order.status == "cancelled"
    return {
        "id": order.id,
        "admin_graphql_api_id": gid("Order", order.id),
        "name": f"#{order.number}",
        "order_number": order.number,
        "number": order.number - 1000,
        "email": f"customer{order.number}@example.com",
        "created_at": order.created_at,
        "updated_at": order.created_at,
        "processed_at": order.created_at,
        "cancelled_at": order.created_at if cancelled else None,
        "cancel_reason": "customer" if cancelled else None,
        "currency": "USD",
        "presentment_currency": "USD",
        "financial_status": "refunded" if order.status == "refunded" else "paid",
        "fulfillment_status": None,
        "gateway": "bogus",
        "payment_gateway_names": ["bogus"],
        "source_name": "web",
        "test": True,
        "confirmed": True,
        "subtotal_price": total,
        "total_price": total,
        "total_tax": "0.00",
        "total_discounts": "0.00",
        "total_price_set": _money(price * order.quantity),
        "location_id": None,
        "line_items": [{
            "id": line_id,
            "admin_graphql_api_id": gid("LineItem", line_id),
            "variant_id": variant.id,
            "product_id": variant.product.id,
            "sku": variant.sku,
            "title": variant.product.title,
            "variant_title": variant.title,
            "name": f"{variant.product.title} - {variant.title}",
            "quantity": order.quantity,
            "current_quantity": 0 if cancelled else order.quantity,
            "fulfillable_quantity": 0 if cancelled else order.quantity,
            "fulfillment_service": "manual",
            "fulfillment_status": None,
            "requires_shipping": True,
            "taxable": True,
            "gift_card": False,
            "price": variant.price,
            "price_set": _money(price),
            "total_discount": "0.00",
            "vendor": shop.name,
        }],
        "shipping_lines": [],
        "refunds": [],
    }


def routing_payload(order: Order) -> dict[str, Any]:
    """``fulfillment_orders/order_routing_complete``, with the assigned location and lines."""
    variant = order.level.item.variant
    assert variant is not None
    return {"fulfillment_order": {
        "id": order.id + 2, "admin_graphql_api_id": gid("FulfillmentOrder", order.id + 2),
        "order_id": order.id, "status": "open",
        "assigned_location_id": order.level.location.id,
        "line_items": [{"id": order.id + 3, "line_item_id": order.id + 1,
                        "inventory_item_id": order.level.item.id, "sku": variant.sku,
                        "quantity": order.quantity, "fulfillable_quantity": order.quantity}],
    }}


def refund_payload(order: Order) -> dict[str, Any]:
    refund_id = next_id()
    variant = order.level.item.variant
    assert variant is not None
    return {
        "id": refund_id,
        "admin_graphql_api_id": gid("Refund", refund_id),
        "order_id": order.id,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "processed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "restock": True,
        "note": None,
        "refund_line_items": [{
            "id": next_id(),
            "line_item_id": order.id + 1,
            "location_id": order.level.location.id,
            "quantity": order.quantity,
            "restock_type": "cancel",
            "subtotal": f"{float(variant.price) * order.quantity:.2f}",
            "line_item": {"id": order.id + 1, "variant_id": variant.id, "sku": variant.sku,
                          "quantity": order.quantity},
        }],
        "transactions": [],
    }


@dataclass
class WebhookConfig:
    """Delivery behaviour. Delays are seconds; the retry schedule is Shopify's 8 retries over
    4 hours compressed to ``retry_base_s`` x 2^n."""

    url: str | None = None
    api_version: str = "2026-10"
    duplicate_rate: float = 0.0
    min_delay_s: float = 0.0
    max_delay_s: float = 0.0
    reorder_rate: float = 0.0  # share of deliveries held back by an extra delay
    reorder_delay_s: float = 0.2
    max_retries: int = 8
    retry_base_s: float = 0.05
    timeout_s: float = 5.0
    # Also send fulfillment_orders/order_routing_complete after orders/create, naming the
    # location the order was taken from (a richer body than Shopify's ids-only payload).
    routing: bool = False


@dataclass
class Delivery:
    topic: str
    shop: str
    webhook_id: str
    event_id: str
    triggered_at: str
    attempts: int = 0
    status: str = "pending"  # pending | delivered | failed
    last_http_status: int | None = None
    duplicate: bool = False


@dataclass
class WebhookStats:
    emitted: int = 0
    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    retries: int = 0
    duplicates: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


class WebhookDispatcher:
    """Sends signed webhooks in background tasks; at-least-once with retries and duplicates."""

    def __init__(self, config: WebhookConfig, rng: random.Random,
                 on_attempt: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self.rng = rng
        self.stats = WebhookStats()
        self.deliveries: list[Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._on_attempt = on_attempt

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for in-flight deliveries (tests and shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def emit(self, shop: Shop, topic: str, payload: dict[str, Any]) -> None:
        self.stats.emitted += 1
        self.stats.by_topic[topic] = self.stats.by_topic.get(topic, 0) + 1
        if not self.config.url or self._session is None:
            return
        body = json.dumps(payload, separators=(",", ":")).encode()
        triggered = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event_id = str(uuid.uuid4())
        copies = 2 if self.rng.random() < self.config.duplicate_rate else 1
        for n in range(copies):
            # A duplicate is a second delivery of the same event: same Event-Id, new Webhook-Id.
            d = Delivery(topic, shop.domain, str(uuid.uuid4()), event_id, triggered,
                         duplicate=n > 0)
            self.stats.duplicates += n
            self.deliveries.append(d)
            task = asyncio.get_running_loop().create_task(
                self._deliver(d, shop, body, self.config.url))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _initial_delay(self) -> float:
        c = self.config
        delay = self.rng.uniform(c.min_delay_s, max(c.min_delay_s, c.max_delay_s))
        if self.rng.random() < c.reorder_rate:
            delay += c.reorder_delay_s
        return delay

    async def _deliver(self, d: Delivery, shop: Shop, body: bytes, url: str) -> None:
        c = self.config
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Hmac-Sha256": sign(shop.webhook_secret, body),
            "X-Shopify-Topic": d.topic,
            "X-Shopify-Shop-Domain": shop.domain,
            "X-Shopify-API-Version": c.api_version,
            "X-Shopify-Webhook-Id": d.webhook_id,
            "X-Shopify-Event-Id": d.event_id,
            "X-Shopify-Triggered-At": d.triggered_at,
        }
        delay = self._initial_delay()
        assert self._session is not None
        for attempt in range(c.max_retries + 1):
            if delay > 0:
                await asyncio.sleep(delay)
            d.attempts += 1
            self.stats.attempts += 1
            if attempt:
                self.stats.retries += 1
            try:
                async with self._session.post(
                    url, data=body, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=c.timeout_s, connect=1.0),
                ) as resp:
                    d.last_http_status = resp.status
                    ok = 200 <= resp.status < 300
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("webhook %s to %s failed: %s", d.topic, url, type(exc).__name__)
                ok = False
            if self._on_attempt is not None:
                self._on_attempt(d.topic, "delivered" if ok else "failed_attempt")
            if ok:
                d.status = "delivered"
                self.stats.delivered += 1
                return
            delay = c.retry_base_s * (2 ** attempt)
        d.status = "failed"
        self.stats.failed += 1
