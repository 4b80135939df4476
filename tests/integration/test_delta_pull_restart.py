"""Prove: a delta-pull poller killed at any point of a window loses nothing at the boundary
(real broker; HTTP JSON source; restarts from the stored watermark)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from pipeline.delta_pull.service import HttpSource, Poller, WatermarkStore, iso, parse_time
from pipeline.topics import Topics
from tests.support.kafka import consume_all, create_topics, unique

T0 = 1_773_000_000.0  # 2026-03-08


class Crash(Exception):
    """A kill of the poller mid-window."""


class Source:
    """An ERP change journal behind an HTTP JSON endpoint; records appear over time, some late
    (recorded with a timestamp a little before they become visible)."""

    def __init__(self) -> None:
        self.visible: list[dict] = []
        self.lock = threading.Lock()

    def add(self, n: int, recorded_at: float) -> dict:
        ev = {"type": "erp.goods_receipt", "source": "erp", "transaction_id": f"GR-{n}",
              "line": 1, "occurred_at": iso(recorded_at), "recorded_at": iso(recorded_at),
              "sku": f"SKU-DP-{n % 7}", "location": "WH-ONLINE", "quantity": 1}
        with self.lock:
            self.visible.append(ev)
        return ev

    def serve(self) -> ThreadingHTTPServer:
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                q = parse_qs(urlparse(self.path).query)
                since, until = parse_time(q["since"][0]), parse_time(q["until"][0])
                with source.lock:
                    rows = [e for e in source.visible
                            if since <= parse_time(e["recorded_at"]) < until]
                body = json.dumps({"events": rows, "next": None}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.mark.parametrize("crash_at", [0, 1, 3, "after_publish"])
def test_poller_restarted_mid_window_loses_nothing(kafka_bootstrap: str, tmp_path: Path,
                                                   crash_at: int | str) -> None:
    topics = Topics(erp=unique("dp-erp"))
    create_topics(kafka_bootstrap, [topics.erp], partitions=2)
    source = Source()
    server = source.serve()
    url = f"http://127.0.0.1:{server.server_address[1]}/movements"
    store = WatermarkStore(tmp_path / "erp.json")

    def poller() -> Poller:  # a fresh process: nothing but the watermark file survives
        return Poller(HttpSource(url), store, kafka_bootstrap, "erp", topics,
                      overlap_s=30, settle_s=2, initial_s=T0)

    expected = {source.add(i, T0 + 10 + i)["transaction_id"] for i in range(5)}
    poller().poll_once(now=T0 + 20)
    wm = store.load()
    assert wm == T0 + 18
    # Records exactly at, just before and just after the boundary; one recorded before the
    # boundary but committed (visible) only after the poll: the overlap must catch it.
    for n, t in ((100, wm), (101, wm - 0.001), (102, wm + 0.001), (103, wm - 10)):
        expected.add(source.add(n, t)["transaction_id"])
    expected |= {source.add(200 + i, wm + 1 + i)["transaction_id"] for i in range(4)}

    def crash(k: int) -> None:
        if k > int(crash_at):
            raise Crash

    if crash_at == "after_publish":
        # Killed after Kafka acknowledged but before the watermark was written.
        original = store.save
        store.save = lambda _w: (_ for _ in ()).throw(Crash())  # type: ignore[method-assign]
        with pytest.raises(Crash):
            poller().poll_once(now=T0 + 40)
        store.save = original  # type: ignore[method-assign]
    else:
        with pytest.raises(Crash):
            poller().poll_once(now=T0 + 40, on_record=crash)
    assert store.load() == wm  # not advanced by the crashed window
    expected.add(source.add(300, T0 + 39)["transaction_id"])  # appears during the restart
    poller().poll_once(now=T0 + 45)
    poller().poll_once(now=T0 + 80)
    server.shutdown()
    seen = [json.loads(m.value()) for m in consume_all(kafka_bootstrap, topics.erp, timeout=20,
                                                       idle=1.5)]
    got = {e["transaction_id"] for e in seen}
    assert expected <= got, sorted(expected - got)
    assert all("recorded_at" not in e for e in seen)
    assert store.load() == T0 + 78
