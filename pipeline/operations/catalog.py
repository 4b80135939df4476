"""``tally catalog import FILE.csv``: fill the SKU → Shopify inventory item mapping topic."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from confluent_kafka import Producer

from agents.settings import bootstrap_from_env
from pipeline.ledger.catalog import CatalogEntry, parse_catalog_lines
from pipeline.topics import Topics


def catalog_record(entry: CatalogEntry) -> tuple[bytes, bytes]:
    """Key ``shop|sku`` (compacted: the last mapping wins) and a JSON value."""
    key = f"{entry.shop}|{entry.sku}".encode()
    value = json.dumps({"shop": entry.shop, "sku": entry.sku,
                        "inventory_item_id": entry.inventory_item_id}).encode()
    return key, value


def publish_entries(bootstrap: str, topic: str, entries: Sequence[CatalogEntry]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "enable.idempotence": True, "linger.ms": 20})
    failures: list[str] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for entry in entries:
        key, value = catalog_record(entry)
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(f"{remaining} mappings not delivered; errors: {failures[:5]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally catalog")
    sub = parser.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", help="publish shop,sku,inventory_item_id lines from a CSV")
    imp.add_argument("file")
    imp.add_argument("--bootstrap", default=None)
    args = parser.parse_args(list(argv or []))
    with open(args.file, encoding="utf-8") as fh:
        entries, errors = parse_catalog_lines(fh)
    for error in errors:
        print(f"{args.file}:{error.line_number}: {error.problem}", file=sys.stderr)
    publish_entries(args.bootstrap or bootstrap_from_env(), Topics().catalog, entries)
    print(f"imported {len(entries)} mappings, {len(errors)} lines rejected")
    return 1 if errors else 0
