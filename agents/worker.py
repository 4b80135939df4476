"""``tally worker``: the ledger worker's entry point.

The worker is composed in ``agents/bootstrap.py`` (app, topics, tables, reader, catalog); its
agents are ``intake``, ``ledger`` and ``kits``, what it sends per output of the core is in
``handlers``, and its records are typed in ``pipeline/ledger/records.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agents.bootstrap import build_app
from agents.settings import WorkerSettings
from pipeline.infra.kafka_topics import COMPACTED, create_missing, ensure_topics
from pipeline.observability import heap, logs
from pipeline.settings import add_flags, load

__all__ = ["build_app", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``tally worker``: create topics if needed, then run the faust worker."""
    parser = argparse.ArgumentParser(prog="tally worker", description=main.__doc__)
    parser.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info",
                                                                "debug"])
    args = add_flags(parser, WorkerSettings).parse_args(list(argv or []))
    settings = load(WorkerSettings, flags=args)
    logs.configure("worker")
    heap.watch_pauses()
    ensure_topics(settings.bootstrap, settings.topics, settings.partitions,
                  settings.replication_factor)
    app = build_app(settings)
    # The tables' changelogs exist before the consumer subscribes: created by faust at start, a
    # changelog can be missing from the consumer's first metadata, and every table write then
    # fails with PartitionsMismatch until the metadata is refreshed minutes later.
    create_missing(settings.bootstrap, {
        table.changelog_topic_name: (table.partitions or settings.partitions, COMPACTED)
        for table in app.tables.values()}, settings.replication_factor)
    sys.argv = ["tally-worker", "worker", f"--loglevel={args.loglevel}",
                f"--web-port={settings.web_port}", f"--web-bind={settings.web_bind}",
                f"--web-host={settings.web_host}"]
    app.main()
    return 0
