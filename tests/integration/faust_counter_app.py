"""A minimal faust app with a RocksDB table, run as a subprocess by the smoke test.

Usage: python faust_counter_app.py worker  (config by env: SMOKE_BOOTSTRAP, SMOKE_TOPIC,
SMOKE_APP_ID, SMOKE_DATADIR).
"""

from __future__ import annotations

import os

import faust

app = faust.App(
    os.environ["SMOKE_APP_ID"],
    broker=f"kafka://{os.environ['SMOKE_BOOTSTRAP']}",
    store="rocksdb://",
    datadir=os.environ["SMOKE_DATADIR"],
    topic_partitions=4,
    topic_allow_declare=True,
    web_enabled=False,
    table_standby_replicas=0,
    broker_commit_interval=0.5,
)
counts = app.Table(
    "counts", default=int, partitions=4,
    options={"block_cache_size": 8 * 1024 * 1024},
)
topic = app.topic(
    os.environ["SMOKE_TOPIC"], key_type=str, value_type=int, partitions=4,
    key_serializer="raw", value_serializer="json",
)


@app.agent(topic)
async def count(stream: faust.StreamT) -> None:
    async for key, value in stream.items():
        counts[key.decode() if isinstance(key, bytes) else key] += value


if __name__ == "__main__":
    app.main()
