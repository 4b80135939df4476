"""``tally shopify-sim``: run the Shopify Admin API simulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path

from pipeline.shopify_sim.bucket import PLANS
from pipeline.shopify_sim.config import FaultConfig, SimConfig
from pipeline.shopify_sim.server import run_simulator
from pipeline.shopify_sim.webhooks import WebhookConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tally shopify-sim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8085)
    p.add_argument("--seed", help="JSON seed file with shops, locations, items and levels")
    p.add_argument("--shops", type=int, default=1)
    p.add_argument("--skus", type=int, default=100)
    p.add_argument("--locations", type=int, default=2)
    p.add_argument("--available", type=int, default=10, help="initial available per level")
    p.add_argument("--plan", choices=sorted(PLANS), default="standard")
    p.add_argument("--bucket-size", type=float)
    p.add_argument("--restore-rate", type=float)
    p.add_argument("--random-seed", type=int)
    p.add_argument("--lenient-idempotency", action="store_true",
                   help="do not enforce @idempotent (reported real-world behaviour)")
    p.add_argument("--mutation-latency", type=float, default=0.0)
    p.add_argument("--credentials-file",
                   help="write shop domains, access tokens and webhook secrets here (mode 0600)")
    p.add_argument("--webhook-url")
    p.add_argument("--webhook-api-version", default="2026-10")
    p.add_argument("--webhook-duplicate-rate", type=float, default=0.0)
    p.add_argument("--webhook-min-delay", type=float, default=0.0)
    p.add_argument("--webhook-max-delay", type=float, default=0.0)
    p.add_argument("--webhook-reorder-rate", type=float, default=0.0)
    p.add_argument("--webhook-retry-base", type=float, default=0.05)
    p.add_argument("--storefront-rate", type=float, default=0.0, help="orders/s per shop")
    p.add_argument("--order-max-quantity", type=int, default=1)
    p.add_argument("--fault-5xx", type=float, default=0.0)
    p.add_argument("--fault-429", type=float, default=0.0)
    p.add_argument("--fault-retry-after", type=float, default=1.0)
    p.add_argument("--fault-timeout", type=float, default=0.0)
    p.add_argument("--fault-timeout-seconds", type=float, default=30.0)
    p.add_argument("--fault-reset", type=float, default=0.0)
    p.add_argument("--fault-slow", type=float, default=0.0)
    p.add_argument("--fault-slow-seconds", type=float, default=0.5)
    return p


def config_from_args(a: argparse.Namespace) -> SimConfig:
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
            retry_base_s=a.webhook_retry_base),
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
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(_serve(config_from_args(args), args.host, args.port,
                           args.credentials_file))
    except KeyboardInterrupt:
        return 0
    return 0
