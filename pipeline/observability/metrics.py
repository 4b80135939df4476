"""Every Prometheus metric Tally exports, in one place so names stay consistent.

Conventions: ``tally_`` prefix, base units (seconds), counters end in ``_total``, never a SKU label.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# End-to-end latency buckets around the 2 s freshness SLO.
SLO_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)

# -- worker: intake and ledger ------------------------------------------------------------------
EVENTS_RECEIVED = Counter(
    "tally_events_received_total", "Source events read from Kafka.", ["source"]
)
EVENTS_APPLIED = Counter(
    "tally_events_applied_total", "Movements applied to the ledger.", ["source"]
)
MOVEMENTS_ROUTED = Counter(
    "tally_movements_routed_total", "Movements of valid source events, by route: applied where "
    "the record was read (in_place) or re-keyed through the movements topic (rekeyed).",
    ["route"],
)
EVENTS_DUPLICATE = Counter(
    "tally_events_duplicate_total", "Movements ignored as already applied (dedupe).", ["source"]
)
EVENTS_REJECTED = Counter(
    "tally_events_rejected_total", "Source events dead-lettered, by reason.", ["source", "reason"]
)
STALE_SNAPSHOTS = Counter(
    "tally_stale_snapshots_total", "Snapshots ignored because a newer one was applied.", ["source"]
)
DEAD_LETTERS = Counter(
    "tally_dead_letters_total", "Records written to the dead-letter topic.", ["service", "reason"]
)
UNMAPPED = Counter(
    "tally_unmapped_sku_events_total", "Changes to SKUs with no Shopify inventory item mapping."
)
SAFETY_BUFFER_BREACHES = Counter(
    "tally_safety_buffer_breaches_total", "Times the raw ATS fell below the safety buffer."
)
BELOW_ZERO = Counter(
    "tally_ats_below_zero_total", "Times the raw ATS (before clamping) fell below zero."
)
RECORDS_REREAD = Counter(
    "tally_records_reread_total",
    "Records the consumer did not hand to the worker in order, read again by seeking back.",
)
OFFSET_GAPS = Counter(
    "tally_input_offset_gaps_total",
    "Input offsets accepted as holding no record (transaction markers, compaction, expiry).",
)
PUSHES_EMITTED = Counter(
    "tally_pushes_emitted_total", "ATS changes emitted to the Shopify-push topic."
)
ATS_COMPUTE_SECONDS = Histogram(
    "tally_ats_computation_seconds", "Time to apply one movement and recompute ATS.",
    buckets=FAST_BUCKETS,
)
LEDGER_LAG_SECONDS = Gauge(
    "tally_consumer_lag_seconds", "Age of the newest record processed, by consumer.", ["consumer"]
)
CONSUMER_LAG_OFFSETS = Gauge(
    "tally_consumer_lag_offsets", "Records not yet consumed, by consumer.", ["consumer"]
)

# -- sink -----------------------------------------------------------------------------------------
SHOPIFY_CALLS = Counter(
    "tally_shopify_calls_total", "Calls to Shopify's Admin API, by shop and outcome.",
    ["shop", "outcome"],
)
SHOPIFY_ITEMS_PUSHED = Counter(
    "tally_shopify_items_pushed_total", "Item updates Shopify acknowledged, by shop and location.",
    ["shop", "location"],
)
SHOPIFY_ITEMS_PER_CALL = Histogram(
    "tally_shopify_items_per_call", "Quantities per inventorySetQuantities call.",
    buckets=(1, 5, 10, 25, 50, 100, 150, 200, 250),
)
SHOPIFY_THROTTLED = Counter(
    "tally_shopify_throttled_total", "Calls Shopify answered THROTTLED or 429.", ["shop"]
)
SHOPIFY_RETRIES = Counter(
    "tally_shopify_retries_total", "Calls retried, by shop and reason.", ["shop", "reason"]
)
SHOPIFY_COST_AVAILABLE = Gauge(
    "tally_shopify_cost_points_available", "Shopify's currentlyAvailable cost points.", ["shop"]
)
SHOPIFY_COST_SPENT = Counter(
    "tally_shopify_cost_points_spent_total", "Actual query cost spent, by shop.", ["shop"]
)
PUSHES_SUPERSEDED = Counter(
    "tally_pushes_superseded_total", "Push records dropped because a newer version arrived."
)
DRIFT_DETECTED = Counter(
    "tally_drift_detected_total", "Differences between Shopify and the ledger, by cause.",
    ["cause"],
)
END_TO_END_SECONDS = Histogram(
    "tally_end_to_end_latency_seconds",
    "From the oldest source event a value reflects to Shopify's acknowledgment.",
    ["tier"], buckets=SLO_BUCKETS,
)
SINK_PENDING_KEYS = Gauge(
    "tally_sink_pending_keys", "Keys waiting to be pushed, by shop.", ["shop"]
)
SINK_PAUSED_PARTITIONS = Gauge(
    "tally_sink_paused_partitions",
    "Push-topic partitions paused because they hold too many records waiting for Shopify.",
)
SHOPIFY_REQUEST_SECONDS = Histogram(
    "tally_shopify_request_seconds", "Duration of one Shopify call (cut at the deadline).",
    ["shop"], buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
LAST_PUSH_TIMESTAMP = Gauge(
    "tally_shopify_last_push_timestamp_seconds", "When Shopify last acknowledged a push.",
    ["shop"],
)
