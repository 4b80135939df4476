"""``tally catalog import FILE.csv`` / ``sync --shop S``: fill the SKU → inventory item mapping."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pipeline.infra.kafka_write import new_producer
from pipeline.ledger.catalog import CatalogEntry, parse_catalog_lines
from pipeline.operations.config import OperatorSettings
from pipeline.settings import add_flags, load


def catalog_record(entry: CatalogEntry) -> tuple[bytes, bytes]:
    """Key ``shop|sku`` (compacted: the last mapping wins) and a JSON value."""
    key = f"{entry.shop}|{entry.sku}".encode()
    value = json.dumps({"shop": entry.shop, "sku": entry.sku,
                        "inventory_item_id": entry.inventory_item_id}).encode()
    return key, value


def publish_entries(bootstrap: str, topic: str, entries: Sequence[CatalogEntry]) -> None:
    producer = new_producer(bootstrap, linger_ms=20)
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
    add_flags(imp, OperatorSettings, only={"bootstrap"})
    syn = sub.add_parser("sync", help="fill the mapping from Shopify's productVariants by SKU")
    syn.add_argument("--shop", required=True)
    syn.add_argument("--skus", help="file with one SKU per line (default: the ledger's SKUs)")
    add_flags(syn, OperatorSettings, only={"bootstrap", "shops_file"})
    args = parser.parse_args(list(argv or []))
    settings = load(OperatorSettings, flags=args)
    if args.action == "sync":
        return _sync(args, settings)
    with open(args.file, encoding="utf-8") as fh:
        entries, errors = parse_catalog_lines(fh)
    for error in errors:
        print(f"{args.file}:{error.line_number}: {error.problem}", file=sys.stderr)
    publish_entries(settings.bootstrap, settings.topics.catalog, entries)
    print(f"imported {len(entries)} mappings, {len(errors)} lines rejected")
    return 1 if errors else 0


def _sync(args: argparse.Namespace, settings: OperatorSettings) -> int:
    import asyncio

    from pipeline.infra.kafka_read import latest_by_key
    from pipeline.ledger.position import LedgerPosition
    from pipeline.operations.catalog_sync import sync_shop
    from pipeline.shopify.shops import load_shops

    bootstrap, shops_file = settings.bootstrap, settings.shops_file
    if not shops_file:
        print("no shops file: pass --shops-file or set TALLY_SHOPS_FILE", file=sys.stderr)
        return 2
    shops = load_shops(shops_file)
    shop = next((s for s in shops if s.domain == args.shop), None)
    if shop is None:
        print(f"shop {args.shop} is not in the shops file", file=sys.stderr)
        return 2
    if args.skus:
        with open(args.skus, encoding="utf-8") as fh:
            skus = sorted({line.strip() for line in fh if line.strip()})
    else:
        skus = sorted({LedgerPosition.from_json(v).sku for v in latest_by_key(
            bootstrap, settings.positions_changelog, timeout=120).values()})
    result = asyncio.run(sync_shop(shop, skus))
    publish_entries(bootstrap, settings.topics.catalog, result.entries)
    for sku, items in sorted(result.duplicates.items()):
        print(f"duplicate SKU {sku}: {', '.join(items)} (not mapped)", file=sys.stderr)
    for sku in result.missing:
        print(f"no variant with SKU {sku}", file=sys.stderr)
    print(f"mapped {len(result.entries)} SKUs, {len(result.duplicates)} duplicates, "
          f"{len(result.missing)} without match, {result.cost_points:.0f} cost points")
    return 1 if result.duplicates or result.missing else 0
