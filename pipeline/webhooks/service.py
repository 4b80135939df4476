"""``tally webhooks``: the aiohttp shell around ``translate`` (HMAC, dedupe, Kafka publish).

Answers 200 only after Kafka acknowledged every record of the webhook (acks=all); 503 when Kafka
cannot take them in time, so Shopify retries; 401 on a bad signature or unknown shop (nothing
published); 400 on missing headers or bad JSON; 413 above the body limit; 422 on a body that is
JSON but not the topic's resource shape.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from pipeline.ledger.locations import load_locations
from pipeline.observability import logs
from pipeline.webhooks.config import WebhookSettings
from pipeline.webhooks.dedupe import SeenEvents
from pipeline.webhooks.translate import TOPICS, BadPayload, Translator

log = logging.getLogger("tally.webhooks")

RECEIVED = Counter(
    "tally_webhooks_received_total", "Shopify webhooks received, by topic and outcome.",
    ["topic", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "tally_webhooks_request_seconds", "Time to answer one webhook (verify, publish, ack).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PUBLISHED = Counter(
    "tally_webhooks_events_published_total", "Source events published from webhooks, by topic.",
    ["topic"],
)


def verify_hmac(secret: str, body: bytes, header: str) -> bool:
    """Shopify's signature: base64(HMAC-SHA256(secret, raw body)), compared in constant time."""
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return hmac.compare_digest(digest, header.encode())


class PublishFailed(Exception):
    """Kafka did not acknowledge in time."""


@dataclass
class Intake:
    """State of one running intake: settings, translator, dedupe memory, producer."""

    settings: WebhookSettings
    translator: Translator
    secrets: dict[str, str]
    seen: SeenEvents
    producer: AIOKafkaProducer | None = None
    _lock: asyncio.Lock | None = None

    async def _producer(self) -> AIOKafkaProducer:
        # Started lazily so the intake comes up (and answers 503) while Kafka is down.
        if self.producer is not None:
            return self.producer
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.producer is None:
                p = AIOKafkaProducer(
                    bootstrap_servers=self.settings.bootstrap, acks="all",
                    enable_idempotence=True, linger_ms=1, client_id="tally-webhooks",
                    request_timeout_ms=int(self.settings.publish_timeout_s * 1000) + 2000,
                )
                try:
                    await asyncio.wait_for(p.start(), self.settings.publish_timeout_s)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await p.stop()
                    raise
                self.producer = p
        return self.producer

    async def publish(self, records: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Send (topic, key, value) records; return once Kafka acknowledged all of them."""
        if not records:
            return
        async def send_all() -> None:
            producer = await self._producer()
            futures = [await producer.send(topic, key=key.encode(),
                                           value=json.dumps(value, separators=(",", ":")).encode())
                       for topic, key, value in records]
            await asyncio.gather(*futures)

        try:
            # One deadline for metadata, sends and acks: Shopify gives up after 5 s.
            await asyncio.wait_for(send_all(), self.settings.publish_timeout_s)
        except Exception as exc:  # timeouts and aiokafka's KafkaError family
            raise PublishFailed(type(exc).__name__) from exc

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


INTAKE_KEY = web.AppKey("intake", Intake)


def _answer(topic: str, outcome: str, status: int, started: float, **body: Any) -> web.Response:
    RECEIVED.labels(topic if topic in TOPICS else "other", outcome).inc()
    REQUEST_SECONDS.observe(time.perf_counter() - started)
    return web.json_response({"outcome": outcome, **body}, status=status)


async def handle_webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    intake = request.app[INTAKE_KEY]
    h = request.headers
    topic = h.get("X-Shopify-Topic", "")
    shop = h.get("X-Shopify-Shop-Domain", "")
    signature = h.get("X-Shopify-Hmac-Sha256", "")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _answer(topic, "too_large", 413, started)
    if not topic or not shop or not signature:
        return _answer(topic, "missing_headers", 400, started,
                       detail="X-Shopify-Topic, -Shop-Domain and -Hmac-Sha256 are required")
    secret = intake.secrets.get(shop)
    # Unknown shop and bad signature look the same from outside (no probing which shops exist).
    if secret is None or not verify_hmac(secret, body, signature):
        return _answer(topic, "unauthorized", 401, started)
    event_id = h.get("X-Shopify-Event-Id") or h.get("X-Shopify-Webhook-Id") or ""
    dedupe_key = f"{shop}|{event_id}"
    now = time.time()
    if event_id and intake.seen.seen(dedupe_key, now):
        return _answer(topic, "duplicate", 200, started)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _answer(topic, "bad_json", 400, started, detail="the body is not JSON")
    try:
        translation = intake.translator.translate(topic, shop, payload)
    except BadPayload as exc:
        return _answer(topic, "bad_payload", 422, started, detail=str(exc)[:300])
    # The source transaction id (e.g. order-123) travels on: the worker's dedupe mark is
    # shopify:<transaction_id>:<line> and the sink logs that mark with each push.
    txns = sorted({str(ev.get("transaction_id")) for _, ev in translation.events})
    logs.correlation_id.set(",".join(txns) or event_id)
    s = intake.settings
    records = [(s.topics.shopify_orders, key, ev) for key, ev in translation.events]
    records += [(s.topics.shopify_levels, key, rec) for key, rec in translation.levels]
    try:
        await intake.publish(records)
    except PublishFailed as exc:
        log.warning("publish failed for %s from %s: %s", topic, shop, exc)
        return _answer(topic, "kafka_unavailable", 503, started)
    if event_id:
        intake.seen.remember(dedupe_key, now)
    if translation.events:
        PUBLISHED.labels(topic).inc(len(translation.events))
    outcome = translation.outcome if not records else "published"
    log.info("webhook %s", outcome, extra={"fields": {
        "topic": topic, "shop": shop, "event_id": event_id, "events": len(translation.events),
        "levels": len(translation.levels)}})
    return _answer(topic, outcome, 200, started, published=len(records))


async def handle_metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


async def handle_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def handle_ready(request: web.Request) -> web.Response:
    """Ready once a Kafka producer is connected: only then can a webhook be acknowledged."""
    intake = request.app[INTAKE_KEY]
    try:
        await asyncio.wait_for(intake._producer(), timeout=2.0)
    except Exception as exc:  # any failure to connect means not ready, with the reason
        return web.json_response({"ready": False, "reason": type(exc).__name__}, status=503)
    return web.json_response({"ready": True})


def build_app(intake: Intake) -> web.Application:
    app = web.Application(client_max_size=intake.settings.max_body_bytes)
    app[INTAKE_KEY] = intake
    app.router.add_post("/webhooks", handle_webhook)
    app.router.add_post("/webhooks/{topic:.*}", handle_webhook)  # per-topic subscription URLs
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_health)
    app.router.add_get("/readyz", handle_ready)
    return app


def make_intake(settings: WebhookSettings) -> Intake:
    locations = load_locations(settings.locations_file)
    for shop in settings.shops:
        if shop.online_branch not in locations:
            raise ValueError(f"shop {shop.domain}: online_branch {shop.online_branch!r} is not "
                             "a configured branch")
    return Intake(settings=settings, translator=Translator(settings.shops, locations),
                  secrets={s.domain: s.secret() for s in settings.shops},
                  seen=SeenEvents(settings.dedupe_ttl_s, settings.dedupe_max_entries))


@contextlib.asynccontextmanager
async def run_webhooks(settings: WebhookSettings) -> AsyncIterator[str]:
    """Serve the intake for the duration of the block; yields its base URL."""
    intake = make_intake(settings)
    runner = web.AppRunner(build_app(intake), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://{settings.host}:{port}"
    finally:
        await runner.cleanup()
        await intake.close()


async def _serve(settings: WebhookSettings) -> None:
    async with run_webhooks(settings) as url:
        log.info("webhook intake listening on %s/webhooks", url)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``tally webhooks``: receive Shopify webhooks and publish them to Kafka."""
    parser = argparse.ArgumentParser(prog="tally webhooks", description=main.__doc__)
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(list(argv or []))
    settings = WebhookSettings.from_env(host=args.host, port=args.port)
    logs.configure("webhooks", secrets=[s.secret() for s in settings.shops])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings))
    return 0
