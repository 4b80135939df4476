"""``tally webhooks``: the aiohttp shell around ``translate`` (HMAC, dedupe, Kafka publish).

Answers 200 only after Kafka acknowledged every record of the webhook (acks=all); 503 when Kafka
cannot take them in time, so Shopify retries; 401 on a bad signature or unknown shop (nothing
published); 400 on missing headers or bad JSON; 413 above the body limit; 422 on a body that is
JSON but not the topic's resource shape (the detail names the field and what was found).

One publish per ``X-Shopify-Event-Id``: the id is claimed before publishing, so a delivery racing
another of the same event waits for its outcome (200 ``duplicate`` once it published, 503 if it
failed); a failed publish releases the id so Shopify's retry publishes it. Lines without a SKU
are resolved through the catalog (variant or inventory item id) or dead-lettered one by one; the
body's ``lines`` says what happened to each line.

The producer is rebuilt when it cannot publish (see ``publisher.py``); ``/readyz`` is 503 with the
failing conditions (``kafka``, ``producer``, ``catalog``, ``event_loop``) while it cannot do its
job; ``/healthz`` fails only when the event loop is blocked.
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
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from pipeline.ledger.locations import load_locations
from pipeline.messages import DeadLetter
from pipeline.observability import health, heap, logs
from pipeline.observability import metrics as m
from pipeline.settings import add_flags, load
from pipeline.webhooks.catalog import CatalogFeed, SkuIndex
from pipeline.webhooks.config import WebhookSettings
from pipeline.webhooks.dedupe import SeenEvents
from pipeline.webhooks.publisher import KafkaPublisher, PublishFailed
from pipeline.webhooks.translate import TOPICS, BadPayload, Translation, Translator

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
LINES = Counter(
    "tally_webhooks_lines_total", "Order lines received in webhooks, by topic and outcome "
    "(published, resolved_by_variant, resolved_by_inventory_item, dead_lettered, skipped).",
    ["topic", "outcome"],
)
PRODUCER_REBUILDS = Counter(
    "tally_webhooks_producer_rebuilds_total",
    "Kafka producers replaced because the previous one could not publish.",
)
SERVICE = "webhooks"


def verify_hmac(secret: str, body: bytes, header: str) -> bool:
    """Shopify's signature: base64(HMAC-SHA256(secret, raw body)), compared in constant time."""
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return hmac.compare_digest(digest, header.encode())


@dataclass
class Intake:
    """State of one running intake: settings, translator, dedupe memory, producer, health."""

    settings: WebhookSettings
    translator: Translator
    secrets: dict[str, str]
    seen: SeenEvents
    readiness: health.Readiness
    publisher: KafkaPublisher
    catalog: CatalogFeed

    async def publish(self, records: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Send (topic, key, value) records; return once Kafka acknowledged all of them."""
        before = self.publisher.rebuilds
        try:
            await self.publisher.publish([
                (topic, key, json.dumps(value, separators=(",", ":")).encode())
                for topic, key, value in records])
        finally:
            if self.publisher.rebuilds > before:
                PRODUCER_REBUILDS.inc(self.publisher.rebuilds - before)

    async def monitor(self, interval_s: float = 1.0) -> None:
        """Every ``interval_s``: Kafka reachability (and a dirty producer's rebuild) and how
        far the catalog is read, into the readiness conditions."""
        while True:
            before = self.publisher.rebuilds
            with contextlib.suppress(Exception):
                await self.publisher.check()
            PRODUCER_REBUILDS.inc(self.publisher.rebuilds - before)
            self.readiness.set("catalog", self.catalog.loaded, self.catalog.state)
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        await self.publisher.close()
        await asyncio.to_thread(self.catalog.stop)


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
    if not event_id:
        return await _accept(intake, topic, shop, event_id, body, started)
    waiter = intake.seen.claim(dedupe_key, time.time())
    if waiter is not None:  # seen, or another delivery of this event is publishing it
        try:
            published = await asyncio.wait_for(waiter, intake.settings.publish_timeout_s + 2)
        except TimeoutError:
            published = False
        if published:
            return _answer(topic, "duplicate", 200, started)
        return _answer(topic, "kafka_unavailable", 503, started,
                       detail="a concurrent delivery of this event could not be published")
    confirmed = False
    try:
        response = await _accept(intake, topic, shop, event_id, body, started)
        confirmed = response.status == 200
        if confirmed:
            intake.seen.confirm(dedupe_key, time.time())
        return response
    finally:
        if not confirmed:
            intake.seen.release(dedupe_key)


def _dead_letters(topic: str, shop: str, event_id: str, translation: Translation
                  ) -> list[tuple[str, dict[str, Any]]]:
    """(key, dead-letter record) per line that could not be placed."""
    out = []
    now = time.time()
    for d in translation.dead:
        dl = DeadLetter(reason=d["reason"], detail=d["detail"], source_topic=f"webhooks:{topic}",
                        source_partition=None, source_offset=None,
                        original=json.dumps(d["item"], separators=(",", ":")), service=SERVICE,
                        at=now, extra={"shop": shop, "event_id": event_id, "line": d["line"]})
        out.append((f"{shop}|{event_id}|{d['line']}", dl.to_dict()))
    return out


async def _accept(intake: Intake, topic: str, shop: str, event_id: str, body: bytes,
                  started: float) -> web.Response:
    """Parse, translate and publish one verified webhook (the caller owns its event id)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return _answer(topic, "bad_json", 400, started, detail=f"the body is not JSON: {exc}"[:300])
    try:
        translation = intake.translator.translate(topic, shop, payload)
    except BadPayload as exc:
        return _answer(topic, "bad_payload", 422, started, detail=str(exc)[:300])
    if translation.dead and not intake.catalog.loaded:
        # Lines without a SKU need the catalog; dead-lettering them before it is read would
        # lose orders the catalog can place: Shopify retries.
        return _answer(topic, "catalog_loading", 503, started, detail=intake.catalog.state)
    # The source transaction id (e.g. order-123) travels on: the worker's dedupe mark is
    # shopify:<transaction_id>:<line> and the sink logs that mark with each push.
    txns = sorted({str(ev.get("transaction_id")) for _, ev in translation.events})
    logs.correlation_id.set(",".join(txns) or event_id)
    s = intake.settings
    records = [(s.topics.shopify_orders, key, ev) for key, ev in translation.events]
    records += [(s.topics.shopify_levels, key, rec) for key, rec in translation.levels]
    records += [(s.topics.dead_letter, key, dl)
                for key, dl in _dead_letters(topic, shop, event_id, translation)]
    try:
        await intake.publish(records)
    except PublishFailed as exc:
        log.warning("publish failed for %s from %s: %s", topic, shop, exc)
        return _answer(topic, "kafka_unavailable", 503, started, detail=f"Kafka: {exc}")
    if translation.events:
        PUBLISHED.labels(topic).inc(len(translation.events))
    for line in translation.lines:
        LINES.labels(topic if topic in TOPICS else "other", line["outcome"]).inc()
    for d in translation.dead:
        m.DEAD_LETTERS.labels(SERVICE, d["reason"]).inc()
    if translation.dead:
        log.warning("order lines dead-lettered", extra={"fields": {
            "topic": topic, "shop": shop, "event_id": event_id,
            "lines": [d["line"] for d in translation.dead]}})
    outcome = "published" if translation.events or translation.levels else translation.outcome
    if translation.dead and not translation.events:
        outcome = "dead_lettered"
    log.info("webhook %s", outcome, extra={"fields": {
        "topic": topic, "shop": shop, "event_id": event_id, "events": len(translation.events),
        "levels": len(translation.levels), "dead_lettered": len(translation.dead)}})
    extra: dict[str, Any] = {"published": len(translation.events) + len(translation.levels)}
    if translation.lines:
        extra["lines"] = translation.lines
    if translation.dead:
        extra["dead_lettered"] = len(translation.dead)
    return _answer(topic, outcome, 200, started, **extra)


async def handle_metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(intake: Intake) -> web.Application:
    app = web.Application(client_max_size=intake.settings.max_body_bytes)
    app[INTAKE_KEY] = intake
    app.router.add_post("/webhooks", handle_webhook)
    app.router.add_post("/webhooks/{topic:.*}", handle_webhook)  # per-topic subscription URLs
    app.router.add_get("/metrics", handle_metrics)
    health.add_routes(app, intake.readiness)
    return app


def make_intake(settings: WebhookSettings) -> Intake:
    locations = load_locations(settings.locations_file)
    for shop in settings.shops:
        if shop.online_branch not in locations:
            raise ValueError(f"shop {shop.domain}: online_branch {shop.online_branch!r} is not "
                             "a configured branch")
    readiness = health.Readiness(SERVICE)
    # Not ready until the broker answered once.
    readiness.set("kafka", False, "no Kafka metadata answer yet")
    index = SkuIndex()
    return Intake(settings=settings, translator=Translator(settings.shops, locations,
                                                           resolve=index.resolve),
                  secrets={s.domain: s.secret() for s in settings.shops},
                  seen=SeenEvents(settings.dedupe_ttl_s, settings.dedupe_max_entries),
                  readiness=readiness,
                  publisher=KafkaPublisher(settings.bootstrap,
                                           timeout_s=settings.publish_timeout_s,
                                           readiness=readiness,
                                           probe_topic=settings.topics.shopify_orders),
                  catalog=CatalogFeed(settings.bootstrap, settings.topics.catalog, index))


@contextlib.asynccontextmanager
async def run_webhooks(settings: WebhookSettings) -> AsyncIterator[str]:
    """Serve the intake for the duration of the block; yields its base URL."""
    intake = make_intake(settings)
    intake.catalog.start()
    watchdog = health.LoopWatchdog(intake.readiness)
    watchdog.start()
    monitor = asyncio.create_task(intake.monitor(), name="webhooks-monitor")
    runner = web.AppRunner(build_app(intake), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    port = runner.addresses[0][1]  # the bound port when settings.port is 0
    try:
        yield f"http://{settings.host}:{port}"
    finally:
        await runner.cleanup()
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        await watchdog.stop()
        await intake.close()
        intake.readiness.close()


async def _serve(settings: WebhookSettings) -> None:
    async with run_webhooks(settings) as url:
        log.info("webhook intake listening on %s/webhooks", url)
        heap.settle("webhooks")
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``tally webhooks``: receive Shopify webhooks and publish them to Kafka."""
    parser = argparse.ArgumentParser(prog="tally webhooks", description=main.__doc__)
    args = add_flags(parser, WebhookSettings).parse_args(list(argv or []))
    settings = load(WebhookSettings, flags=args)
    logs.configure("webhooks", level=settings.log_level,
                   secrets=[s.secret() for s in settings.shops])
    heap.watch_pauses()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings))
    return 0
