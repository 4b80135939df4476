"""Follows the compacted catalog topic into memory: (shop, sku) → inventory item GID.

Every worker needs the whole catalog (any partition of the ledger may touch any SKU), so this is
a plain consumer assigned to all partitions from the beginning, not a group member.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import MappingProxyType

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents import faust_internals
from pipeline.ledger.catalog import Catalog

log = logging.getLogger(__name__)


class CatalogFollower:
    """Keeps ``catalog`` current; ``ready`` is set once the topic was read to its end at start."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._items: dict[tuple[str, str], str] = {}
        self.catalog = Catalog(MappingProxyType(self._items))  # a live view of _items
        self.ready = asyncio.Event()

    def apply_record(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            shop, sku = key.decode().split("|", 1)
        except (UnicodeDecodeError, ValueError):
            log.warning("catalog record with a malformed key %r ignored", key[:80])
            return
        if value is None:  # tombstone: the mapping was removed
            self._items.pop((shop, sku), None)
            return
        try:
            self._items[(shop, sku)] = json.loads(value)["inventory_item_id"]
        except (ValueError, KeyError, TypeError):
            log.warning("catalog record for %s|%s with a malformed value ignored", shop, sku)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            while partitions is None:
                await asyncio.sleep(0.5)
                await faust_internals.refresh_metadata(consumer)
                partitions = consumer.partitions_for_topic(self.topic)
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if end[tp] > 0}
            if not pending:
                self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        self.apply_record(record.key, record.value)
                    if tp in pending and records and records[-1].offset + 1 >= end[tp]:
                        pending.discard(tp)
                if pending:
                    for tp in list(pending):
                        if await consumer.position(tp) >= end[tp]:
                            pending.discard(tp)
                if not pending and not self.ready.is_set():
                    log.info("catalog loaded: %d mappings", len(self._items))
                    self.ready.set()
        finally:
            await consumer.stop()
