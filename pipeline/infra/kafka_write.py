"""The one producer configuration every Tally service and tool writes to Kafka with.

* **Partitions.** ``murmur2_random``: a key goes to the partition Java, aiokafka and faust give
  it. A record keyed ``sku@location`` must land on the partition whose ledger owns that key,
  whatever wrote it; librdkafka's default (CRC32) puts the same key on another partition. (The
  worker still checks each record before applying it where it is read: docs/ledger.md.)
* **Idempotent.** acks=all, and no duplicates or reordering from the producer's own retries.
* **Reconnects** within a second of a broker coming back, not librdkafka's 10 s.

What a service does when a delivery fails differs on purpose and stays with the service: the
sink keeps records until confirmed (``pipeline.infra.outbox``), the worker reads its input again
(``agents/direct_producer.py``), the webhook intake answers 503 so Shopify retries
(``pipeline/webhooks/publisher.py``), and operator tools flush and report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import Producer

PARTITIONER = "murmur2_random"
FIXED = {"partitioner": PARTITIONER, "enable.idempotence": True}


def producer_config(bootstrap: str, *, client_id: str | None = None, linger_ms: int = 5,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka settings for a producer to ``bootstrap``; ``extra`` adds settings (callbacks,
    timeouts, sizes) but may not change the partitioner or idempotence."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "linger.ms": linger_ms,
                              "reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 1000,
                              **FIXED}
    if client_id is not None:
        config["client.id"] = client_id
    for name, value in (extra or {}).items():
        if name in FIXED and value != FIXED[name]:
            raise ValueError(f"{name}={value!r}: every Tally producer uses {FIXED[name]!r}")
        config[name] = value
    return config


def new_producer(bootstrap: str, *, client_id: str | None = None, linger_ms: int = 5,
                 extra: Mapping[str, Any] | None = None) -> Producer:
    """A confluent-kafka producer with ``producer_config``."""
    return Producer(producer_config(bootstrap, client_id=client_id, linger_ms=linger_ms,
                                    extra=extra))
