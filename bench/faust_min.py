"""The minimal faust agents Tally's worker is measured against (``bench.reference``).

``python -m bench.faust_min worker --loglevel=info`` with, in the environment,
``BENCH_FAUST_HOPS`` (1 or 2), ``BENCH_FAUST_APP``, ``BENCH_FAUST_BOOTSTRAP``,
``BENCH_FAUST_DATADIR``, ``BENCH_FAUST_PARTITIONS``, ``BENCH_FAUST_WEB_PORT``,
``BENCH_FAUST_SOURCES``
(comma-separated), ``BENCH_FAUST_MID`` (2 hops) and ``BENCH_FAUST_OUT``.

* 1 hop: source record (raw bytes) → ``json.loads`` → key ``sku@location`` → RocksDB table
  get/set (with its changelog) → one output record.
* 2 hops, as Tally does: source record → ``json.loads`` → the raw record re-sent to ``MID`` keyed
  ``sku@location``; an agent on ``MID`` does the table get/set and the one output.

Same faust settings as Tally's worker where they apply (RocksDB store, producer linger, commit
interval, no terminal spinner), so the difference to Tally is Tally's own work.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import faust

from agents.faust_internals import TallyWorker
from agents.settings import WorkerSettings
from pipeline.settings import load


def build() -> faust.App:
    env = os.environ
    hops = int(env.get("BENCH_FAUST_HOPS", "2"))
    partitions = int(env["BENCH_FAUST_PARTITIONS"])
    defaults = load(WorkerSettings)  # Tally's settings from the environment, as the worker
    app = faust.App(
        env["BENCH_FAUST_APP"], broker=f"kafka://{env['BENCH_FAUST_BOOTSTRAP']}",
        store="rocksdb://", datadir=env["BENCH_FAUST_DATADIR"], topic_partitions=partitions,
        broker_commit_interval=defaults.commit_interval_s,
        producer_linger=defaults.producer_linger_ms / 1000.0,
        consumer_auto_offset_reset="earliest", web_port=int(env["BENCH_FAUST_WEB_PORT"]),
        web_bind="127.0.0.1", web_host="127.0.0.1", Worker=TallyWorker,
    )

    def raw(*names: str) -> faust.TopicT:
        return app.topic(*names, key_serializer="raw", value_serializer="raw")

    sources = raw(*env["BENCH_FAUST_SOURCES"].split(","))
    out = raw(env["BENCH_FAUST_OUT"])
    table = app.Table("counts", partitions=partitions, key_type=bytes, value_type=bytes)

    async def apply(key: bytes, event: dict[str, Any]) -> None:
        stored = table.get(key)
        total = json.loads(stored)["q"] if stored is not None else 0
        value = json.dumps({"q": total + event["quantity"]}).encode()
        table[key] = value
        await out.send(key=key, value=value)

    def key_of(event: dict[str, Any]) -> bytes:
        return f"{event['sku']}@{event['location']}".encode()

    if hops == 1:
        @app.agent(sources)
        async def one_hop(stream: faust.StreamT) -> None:
            async for value in stream:
                event = json.loads(value)
                await apply(key_of(event), event)
    else:
        mid = raw(env["BENCH_FAUST_MID"])

        @app.agent(sources)
        async def rekey(stream: faust.StreamT) -> None:
            async for value in stream:
                await mid.send(key=key_of(json.loads(value)), value=value)

        @app.agent(mid)
        async def second_hop(stream: faust.StreamT) -> None:
            async for value in stream:
                event = json.loads(value)
                await apply(key_of(event), event)

    return app


if __name__ == "__main__":
    app = build()
    sys.argv = ["bench-faust-min", *sys.argv[1:]]
    app.main()
