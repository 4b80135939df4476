"""Create Tally's topics explicitly, with their partition counts and cleanup policies."""

from __future__ import annotations

import time

from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.topics import Topics

COMPACTED = {"cleanup.policy": "compact"}


def topic_plan(topics: Topics, partitions: int) -> dict[str, tuple[int, dict[str, str]]]:
    """Every topic Tally uses → (partitions, config). Movements, push and the ledger changelog
    share one partition count so each SKU@branch has one owner end to end."""
    plan: dict[str, tuple[int, dict[str, str]]] = {
        name: (partitions, {}) for name in topics.sources().values()
    }
    plan.update({
        topics.movements: (partitions, {}),
        topics.shopify_push: (partitions, {}),
        topics.shopify_acks: (partitions, COMPACTED),
        topics.catalog: (partitions, COMPACTED),
        topics.unmapped: (partitions, {}),
        topics.drift: (partitions, {}),
        topics.low_stock: (partitions, {}),
        topics.dead_letter: (partitions, {}),
        topics.history: (partitions, {}),
        topics.shopify_levels: (partitions, {}),
        topics.reconciliation: (partitions, {}),
        # Internal: component ATS keyed kit@branch, read by the kits agent (co-partitioned with
        # its table's changelog, so the same partition count).
        topics.kit_components: (partitions, {}),
    })
    return plan


def ensure_topics(bootstrap: str, topics: Topics, partitions: int,
                  replication_factor: int = 1) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    return create_missing(bootstrap, topic_plan(topics, partitions), replication_factor)


def create_missing(bootstrap: str, plan: dict[str, tuple[int, dict[str, str]]],
                   replication_factor: int = 1) -> list[str]:
    """Create the topics of ``plan`` (name → (partitions, config)) that do not exist yet."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=15).topics)
    missing = [
        NewTopic(name, num_partitions=n, replication_factor=replication_factor, config=cfg)
        for name, (n, cfg) in plan.items()
        if name not in existing
    ]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing).items():
        try:
            future.result(timeout=30)
            created.append(name)
        except Exception as exc:  # a concurrent creator is fine; anything else is not
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    _wait_until_served(admin, {t.topic: t.num_partitions for t in missing})
    return created


def _wait_until_served(admin: AdminClient, expected: dict[str, int],
                       timeout: float = 30.0) -> None:
    """Wait until the broker's metadata shows each new topic with all its partitions led: a
    client that reads metadata earlier sees the topic without partitions, and a faust consumer
    keeps that view for minutes (its tables then refuse every write: PartitionsMismatch)."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=10).topics
        waiting = [name for name, n in expected.items()
                   if (meta := topics.get(name)) is None or meta.error is not None
                   or len(meta.partitions) != n
                   or any(p.leader < 0 for p in meta.partitions.values())]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {waiting} not served by the broker after {timeout:.0f} s")
        time.sleep(0.2)
