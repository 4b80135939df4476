"""Create Tally's topics explicitly, with their partition counts and cleanup policies."""

from __future__ import annotations

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
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=15).topics)
    missing = [
        NewTopic(name, num_partitions=n, replication_factor=replication_factor, config=cfg)
        for name, (n, cfg) in topic_plan(topics, partitions).items()
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
    return created
