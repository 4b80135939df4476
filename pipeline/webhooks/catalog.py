"""What the webhook intake knows of the catalog: Shopify ids → SKU, per shop, from
``tally.catalog.v1``, for order lines that arrive with a null or empty ``sku``.

The catalog topic (``tally catalog import`` / ``sync``, key ``shop|sku``, compacted) maps each SKU
to its inventory item; a record may also carry ``variant_id`` (the productVariant that owns that
inventory item). :class:`SkuIndex` is the pure reverse index; :class:`CatalogFeed` fills it from
the topic on a thread (read from the beginning, then follows new records) and says when it has
read to the end it saw at start (``loaded``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("tally.webhooks")


def numeric_id(value: Any) -> str | None:
    """``123``, ``"123"`` or ``"gid://shopify/ProductVariant/123"`` → ``"123"``; else None."""
    if type(value) is int and value > 0:
        return str(value)
    if isinstance(value, str):
        tail = value.rsplit("/", 1)[-1] if value.startswith("gid://") else value
        if tail.isdigit():
            return tail
    return None


class SkuIndex:
    """(shop, inventory item id) → SKU and (shop, variant id) → SKU. Pure."""

    def __init__(self) -> None:
        self._forward: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self._by_item: dict[tuple[str, str], str] = {}
        self._by_variant: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._forward)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One catalog record (a None value is a tombstone for its ``shop|sku`` key)."""
        if value is None:
            dropped_shop, _, dropped_sku = (key or b"").decode(errors="replace").partition("|")
            self._drop(dropped_shop, dropped_sku)
            return
        try:
            data = json.loads(value)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        shop, sku = data.get("shop"), data.get("sku")
        if not isinstance(shop, str) or not isinstance(sku, str) or not sku:
            return
        self._drop(shop, sku)
        item = numeric_id(data.get("inventory_item_id"))
        variant = numeric_id(data.get("variant_id"))
        self._forward[(shop, sku)] = (item, variant)
        if item:
            self._by_item[(shop, item)] = sku
        if variant:
            self._by_variant[(shop, variant)] = sku

    def _drop(self, shop: str, sku: str) -> None:
        item, variant = self._forward.pop((shop, sku), (None, None))
        if item and self._by_item.get((shop, item)) == sku:
            del self._by_item[(shop, item)]
        if variant and self._by_variant.get((shop, variant)) == sku:
            del self._by_variant[(shop, variant)]

    def resolve(self, shop: str, line: Mapping[str, Any]) -> tuple[str | None, str]:
        """(sku, how) for a line without a SKU: ``how`` is ``inventory_item`` or ``variant``
        when found, else a sentence saying what was looked up."""
        item = numeric_id(line.get("inventory_item_id"))
        if item and (sku := self._by_item.get((shop, item))):
            return sku, "inventory_item"
        variant = numeric_id(line.get("variant_id"))
        if variant and (sku := self._by_variant.get((shop, variant))):
            return sku, "variant"
        asked = [f"inventory item {item}" if item else "", f"variant {variant}" if variant else ""]
        asked = [a for a in asked if a]
        return None, (" and ".join(asked) + f" not in the catalog of {shop}" if asked
                      else "no sku, variant_id or inventory_item_id")


class CatalogFeed:
    """Reads the catalog topic into a :class:`SkuIndex` on a daemon thread."""

    def __init__(self, bootstrap: str, topic: str, index: SkuIndex) -> None:
        self.bootstrap, self.topic, self.index = bootstrap, topic, index
        self.loaded = False
        self.state = f"catalog topic {topic} not read yet"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhooks-catalog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"tally-webhooks-catalog-"
            f"{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "reconnect.backoff.max.ms": 1000,
            "logger": logging.getLogger("tally.webhooks.kafka")})
        try:
            ends: dict[int, int] = {}
            while not self._stop.is_set():  # find the topic and where it ends now
                try:
                    meta = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
                    if meta is None or meta.error is not None or not meta.partitions:
                        # No catalog at all: nothing to wait for; lines without a SKU are
                        # dead-lettered. Checked again in a while.
                        self.state = f"catalog topic {self.topic} does not exist"
                        self.loaded = True
                        self._stop.wait(30)
                        continue
                    for p in meta.partitions:
                        _, hi = consumer.get_watermark_offsets(
                            TopicPartition(self.topic, p), timeout=5)
                        if hi > 0:
                            ends[p] = hi
                    consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                                     for p in meta.partitions])
                    break
                except KafkaException as exc:
                    self.state = f"catalog topic {self.topic} unreadable: {exc}"
                    self._stop.wait(1)
            read = 0
            total = sum(ends.values())
            started = time.monotonic()
            while not self._stop.is_set():
                if not ends and self.state != "loaded":
                    self.loaded = True
                    self.state = "loaded"
                    log.info("catalog loaded", extra={"fields": {
                        "entries": len(self.index), "seconds": round(
                            time.monotonic() - started, 2)}})
                for msg in consumer.consume(500, 0.5):
                    if msg.error():
                        continue
                    self.index.apply(msg.key(), msg.value())
                    read += 1
                    offset, partition = msg.offset(), msg.partition()
                    # A record without an error always has both; the check is for the types.
                    if (offset is not None and partition is not None
                            and offset + 1 >= ends.get(partition, 0)):
                        ends.pop(partition, None)
                if ends:
                    self.state = f"catalog topic {self.topic}: {read} of about {total} read"
        finally:
            consumer.close()
