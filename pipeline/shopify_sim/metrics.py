"""Prometheus metrics on the simulator's own registry (no SKU labels: bounded cardinality)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SimMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        p = "tally_shopify_sim_"
        r = self.registry
        self.requests = Counter(p + "requests_total", "Admin API requests by outcome",
                                ["shop", "outcome"], registry=r)
        self.cost = Counter(p + "cost_points_total", "Actual query cost charged", ["shop"],
                            registry=r)
        self.throttled = Counter(p + "throttled_total", "Requests refused with THROTTLED",
                                 ["shop"], registry=r)
        self.user_errors = Counter(p + "user_errors_total", "Mutation user errors by code",
                                   ["code"], registry=r)
        self.orders = Counter(p + "orders_total", "Storefront orders by outcome",
                              ["shop", "outcome"], registry=r)
        self.webhooks = Counter(p + "webhook_attempts_total", "Webhook delivery attempts",
                                ["topic", "outcome"], registry=r)
        self.faults = Counter(p + "faults_injected_total", "Injected faults", ["kind"],
                              registry=r)
        self.bucket = Gauge(p + "bucket_available_points", "Points left in the bucket",
                            ["shop"], registry=r)
        self.latency = Histogram(p + "request_seconds", "Admin API handling time",
                                 registry=r, buckets=(.001, .0025, .005, .01, .025, .05, .1, .5))
