"""Shopify Admin GraphQL API simulator (``tally shopify-sim``); see docs/shopify-simulator.md."""

from pipeline.shopify_sim.config import FaultConfig, SimConfig
from pipeline.shopify_sim.server import RunningSimulator, Simulator, run_simulator
from pipeline.shopify_sim.webhooks import WebhookConfig, sign

__all__ = [
    "FaultConfig", "RunningSimulator", "SimConfig", "Simulator", "WebhookConfig", "run_simulator",
    "sign",
]
