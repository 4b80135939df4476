"""``tally shopify-sim``: run the Shopify Admin API simulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.observability import heap
from pipeline.settings import add_flags, load, setting
from pipeline.shopify_sim.bucket import PLANS
from pipeline.shopify_sim.config import FaultConfig, SimConfig
from pipeline.shopify_sim.server import run_simulator
from pipeline.shopify_sim.webhooks import WebhookConfig


@dataclass(frozen=True, kw_only=True)
class SimFlags:
    """The simulator's start-up settings: command-line flags only (no variables)."""

    host: str = setting("127.0.0.1", "bind address (`0.0.0.0` in containers)", flag="--host")
    port: int = setting(8085, "Admin API, `/_sim/*` control API, `/metrics`, `/healthz`",
                        flag="--port")
    seed: str | None = setting(
        None, "JSON seed file: shops, tokens, webhook secrets, locations, items, levels",
        flag="--seed")
    shops: int = setting(1, "generated shops (without `--seed`)", flag="--shops")
    skus: int = setting(100, "generated SKUs per shop", flag="--skus")
    locations: int = setting(2, "generated locations per shop", flag="--locations")
    available: int = setting(10, "initial available per level", flag="--available")
    plan: str = setting("standard", "Shopify plan: bucket size and restore rate", flag="--plan",
                        choices=tuple(sorted(PLANS)))
    bucket_size: float | None = setting(None, "override the cost bucket size",
                                        flag="--bucket-size", doc_default="plan's")
    restore_rate: float | None = setting(None, "override the restore rate (points/s)",
                                         flag="--restore-rate", doc_default="plan's")
    random_seed: int | None = setting(None, "make random choices reproducible",
                                      flag="--random-seed")
    lenient_idempotency: bool = setting(
        False, "do not enforce `@idempotent` (reported real-world behaviour)",
        flag="--lenient-idempotency", doc_default="off")
    mutation_latency: float = setting(0.0, "seconds added to every mutation",
                                      flag="--mutation-latency")
    credentials_file: str | None = setting(
        None, "write shop domains, tokens and webhook secrets here (mode 0600)",
        flag="--credentials-file")
    webhook_url: str | None = setting(None, "where to send signed webhooks",
                                      flag="--webhook-url")
    webhook_api_version: str = setting("2026-10", "`X-Shopify-API-Version` of webhooks",
                                       flag="--webhook-api-version")
    webhook_duplicate_rate: float = setting(0.0, "share of webhooks delivered twice",
                                            flag="--webhook-duplicate-rate")
    webhook_min_delay: float = setting(0.0, "minimum delivery delay, s",
                                       flag="--webhook-min-delay")
    webhook_max_delay: float = setting(0.0, "maximum delivery delay, s",
                                       flag="--webhook-max-delay")
    webhook_reorder_rate: float = setting(0.0, "share of webhooks delivered out of order",
                                          flag="--webhook-reorder-rate")
    webhook_retry_base: float = setting(0.05, "first retry delay of failed deliveries, s",
                                        flag="--webhook-retry-base")
    webhook_routing: bool = setting(
        False, "after `orders/create`, also send `fulfillment_orders/order_routing_complete` "
        "naming the location that took the order (as a shop subscribed to it does)",
        flag="--webhook-routing", doc_default="off")
    storefront_rate: float = setting(0.0, "storefront orders per second per shop",
                                     flag="--storefront-rate")
    order_max_quantity: int = setting(1, "maximum quantity per order line",
                                      flag="--order-max-quantity")
    fault_5xx: float = setting(0.0, "share of Admin API calls answered 5xx", flag="--fault-5xx")
    fault_429: float = setting(0.0, "share answered 429", flag="--fault-429")
    fault_retry_after: float = setting(1.0, "`Retry-After` of injected 429s, s",
                                       flag="--fault-retry-after")
    fault_timeout: float = setting(0.0, "share that hang", flag="--fault-timeout")
    fault_timeout_seconds: float = setting(30.0, "how long they hang",
                                           flag="--fault-timeout-seconds")
    fault_reset: float = setting(0.0, "share whose connection is reset", flag="--fault-reset")
    fault_slow: float = setting(0.0, "share answered slowly", flag="--fault-slow")
    fault_slow_seconds: float = setting(0.5, "how slowly", flag="--fault-slow-seconds")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tally shopify-sim", description=__doc__)
    return add_flags(p, SimFlags, config_file=False)


def config_from_flags(a: SimFlags) -> SimConfig:
    return SimConfig(
        shops=a.shops, skus=a.skus, locations=a.locations, plan=a.plan,
        initial_available=a.available, seed=a.seed, random_seed=a.random_seed,
        bucket_size=a.bucket_size, restore_rate=a.restore_rate,
        strict_idempotency=not a.lenient_idempotency, mutation_latency_s=a.mutation_latency,
        storefront_rate=a.storefront_rate, order_max_quantity=a.order_max_quantity,
        webhook=WebhookConfig(
            url=a.webhook_url, api_version=a.webhook_api_version,
            duplicate_rate=a.webhook_duplicate_rate, min_delay_s=a.webhook_min_delay,
            max_delay_s=a.webhook_max_delay, reorder_rate=a.webhook_reorder_rate,
            retry_base_s=a.webhook_retry_base, routing=a.webhook_routing),
        faults=FaultConfig(
            error_5xx_rate=a.fault_5xx, throttle_429_rate=a.fault_429,
            retry_after_s=a.fault_retry_after, timeout_rate=a.fault_timeout,
            timeout_s=a.fault_timeout_seconds, reset_rate=a.fault_reset, slow_rate=a.fault_slow,
            slow_s=a.fault_slow_seconds),
    )


async def _serve(config: SimConfig, host: str, port: int, credentials: str | None) -> None:
    async with run_simulator(config, host=host, port=port) as sim:
        if credentials:
            path = Path(credentials)
            path.touch(mode=0o600)
            path.write_text(json.dumps({"base_url": sim.base_url, "shops": [
                {"domain": d, "base_url": sim.shop_url(d), "access_token": sim.access_token(d),
                 "webhook_secret": sim.webhook_secret(d)} for d in sim.shops]}, indent=2))
        # Shop domains and where to find credentials; the credentials themselves are never
        # logged (they are only available via the seed file or the programmatic API).
        for domain in sim.shops:
            print(f"shop {domain}: {sim.shop_url(domain)}/admin/api/<version>/graphql.json",
                  flush=True)
        print(f"control API: {sim.base_url}/_sim/stats", flush=True)
        heap.settle("shopify-sim")  # its shops and Shopify's schema, out of GC's way
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    flags = load(SimFlags, flags=build_parser().parse_args(argv), environ={})
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(_serve(config_from_flags(flags), flags.host, flags.port,
                           flags.credentials_file))
    except KeyboardInterrupt:
        return 0
    return 0
