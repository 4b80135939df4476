"""Simulator configuration (start-time values; most can be changed via POST /_sim/config)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline.shopify_sim.webhooks import WebhookConfig


@dataclass
class FaultConfig:
    """Per-request fault rates (0..1) for the Admin API endpoint."""

    error_5xx_rate: float = 0.0
    throttle_429_rate: float = 0.0
    retry_after_s: float = 1.0
    timeout_rate: float = 0.0
    timeout_s: float = 30.0  # hang this long: longer than any sane client timeout
    reset_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 0.5


@dataclass
class SimConfig:
    """How to build and run a simulator.

    Shops come from ``seed`` (a dict, JSON text or file path; see ``state.load_seed``) or are
    generated: ``shops`` x ``skus`` x ``locations`` with ``initial_available`` units each.
    """

    shops: int = 1
    skus: int = 10
    locations: int = 2
    plan: str = "standard"
    initial_available: int = 10
    seed: dict[str, Any] | str | Path | None = None
    random_seed: int | None = None
    # Override the plan's bucket (None = the plan's value), e.g. a tiny bucket for tests.
    bucket_size: float | None = None
    restore_rate: float | None = None
    strict_idempotency: bool = True
    idempotency_ttl_s: float = 24 * 3600.0
    mutation_latency_s: float = 0.0
    storefront_rate: float = 0.0  # orders per second per shop
    order_max_quantity: int = 1
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)


def update_dataclass(obj: Any, values: dict[str, Any]) -> list[str]:
    """Set known fields from a JSON object; returns the unknown keys."""
    known = {f.name for f in fields(obj)}
    unknown = [k for k in values if k not in known]
    for k, v in values.items():
        if k in known:
            setattr(obj, k, v)
    return unknown
