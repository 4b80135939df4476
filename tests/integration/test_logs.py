"""What the services print: one JSON object per line, a correlation id on lines about a record,
and never a token or secret.

The sink and the webhook intake run as real ``tally`` subprocesses (their own ``logs.configure``)
with a known Shopify token / webhook secret, each fed one record, on the real broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from pipeline.messages import ShopifyPush
from pipeline.observability import logs
from pipeline.shopify_sim import SimConfig, run_simulator, sign
from pipeline.topics import Topics
from tests.support.kafka import create_topics, unique
from tests.support.sink import (
    level_ids,
    make_push,
    produce_pushes,
    read_json,
    shop_configs,
    sink_topics,
    wait_until,
    write_shops_file,
)
from tests.support.worker import free_port

ROOT = Path(__file__).resolve().parents[2]
SHOP = "tally-logs.myshopify.com"


def seed() -> dict:
    return {"shops": [{"domain": SHOP, "locations": ["WH"],
                       "items": [{"sku": "LOG-1", "levels": {"WH": {"available": 10}}}]}]}


def start(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT,
                            env={**os.environ, **env}, stdout=out.open("wb"),
                            stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def json_lines(out: Path, service: str, secret: str) -> list[dict]:
    text = out.read_text(errors="replace")
    assert secret not in text, f"the secret leaked into the {service} output:\n{text[-3000:]}"
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"{service} printed a non-JSON line: {line!r}") from None
        assert entry.get("service") == service, entry
        assert {"ts", "level", "logger", "msg"} <= entry.keys(), entry
        entries.append(entry)
    return entries


def test_json_formatter_redacts_known_and_token_shaped_secrets(
        capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("sink", secrets=["s3cr3t-value-xyz"])
        token = logs.correlation_id.set("pos:TILL-1:1")
        log = logging.getLogger("tally.test")
        log.warning("calling with s3cr3t-value-xyz and shpat_abcdef0123456789")
        log.warning("config", extra={"fields": {"shop": SHOP}})
        log.warning("headers: X-Shopify-Access-Token: abc123def")
        logs.correlation_id.reset(token)
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    err = capsys.readouterr().err
    for secret in ("s3cr3t-value-xyz", "shpat_abcdef0123456789", "abc123def"):
        assert secret not in err
    entries = [json.loads(line) for line in err.splitlines()]
    assert all(e["service"] == "sink" and e["correlation_id"] == "pos:TILL-1:1"
               for e in entries)
    assert entries[1]["shop"] == SHOP


async def test_sink_logs_json_with_correlation_id_and_no_token(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    async with run_simulator(SimConfig(seed=seed())) as sim:
        topics = sink_topics(kafka_bootstrap, "logs", partitions=1)
        shops = shop_configs(sim, env_prefix="TALLY_LOGS_TOKEN")
        token = sim.access_token(SHOP)
        assert token
        shops_file = write_shops_file(tmp_path / "shops.toml", shops)
        ids = level_ids(sim, "LOG-1", "WH")
        good = ShopifyPush(**{**make_push(ids, "LOG-1", 7, 1).to_dict(),
                              "correlation_id": "pos:TILL-42:1"})
        stray = ShopifyPush(**{**make_push(("unknown.myshopify.com", ids[1], ids[2]), "LOG-1",
                                           3, 1).to_dict(), "correlation_id": "pos:TILL-43:1"})
        produce_pushes(kafka_bootstrap, topics.shopify_push, [good, stray])
        out = tmp_path / "sink.out"
        proc = start(["sink", "--shops-file", str(shops_file), "--bootstrap", kafka_bootstrap,
                      "--group", unique("sink-logs"), "--window", "0.1",
                      "--web-port", str(free_port()),
                      "--topic-push", topics.shopify_push, "--topic-acks", topics.shopify_acks,
                      "--topic-drift", topics.drift, "--topic-dlq", topics.dead_letter],
                     {"TALLY_LOG_LEVEL": "debug"}, out)
        try:
            def done() -> bool:
                assert proc.poll() is None, out.read_text(errors="replace")[-3000:]
                text = out.read_text(errors="replace")
                return (sim.level("LOG-1", "WH").get("available") == 7
                        and "pos:TILL-43:1" in text and "pos:TILL-42:1" in text)
            await wait_until(done, 30)
        finally:
            stop(proc)
    entries = json_lines(out, "sink", token)
    pushed = [e for e in entries if e["msg"] == "pushed"]
    assert [e["correlation_id"] for e in pushed] == ["pos:TILL-42:1"], entries
    dead = [e for e in entries if e["msg"].startswith("dead letter")]
    assert [(e["correlation_id"], e["level"]) for e in dead] == [("pos:TILL-43:1", "warning")]
    assert any(e["msg"] == "sink started" for e in entries)
    dlq = await asyncio.to_thread(read_json, kafka_bootstrap, topics.dead_letter)
    assert [d["reason"] for d in dlq] == ["unknown_shop"]


async def test_webhooks_log_json_with_order_id_and_no_secret(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    secret = "whsec-" + unique("known")
    topics = Topics.prefixed(unique("logs"))
    create_topics(kafka_bootstrap, [topics.shopify_orders, topics.shopify_levels], 1)
    (tmp_path / "locations.toml").write_text(
        '[[branch]]\nid = "WH"\nfulfills_online = true\n')
    (tmp_path / "webhooks.toml").write_text(
        f'[[shop]]\ndomain = "{SHOP}"\nonline_branch = "WH"\n'
        f'secret_env = "TALLY_LOGS_WEBHOOK_SECRET"\n')
    port = free_port()
    out = tmp_path / "webhooks.out"
    proc = start(["webhooks", "--port", str(port)], {
        **topics.env(), "TALLY_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TALLY_WEBHOOKS_FILE": str(tmp_path / "webhooks.toml"),
        "TALLY_LOCATIONS_FILE": str(tmp_path / "locations.toml"),
        "TALLY_LOGS_WEBHOOK_SECRET": secret}, out)
    url = f"http://127.0.0.1:{port}"
    order = {"id": 987654321, "name": "#1001", "created_at": "2026-03-10T06:00:00Z",
             "line_items": [{"id": 1, "sku": "LOG-1", "quantity": 2}]}
    body = json.dumps(order).encode()
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, out.read_text(errors="replace")[-3000:]
                try:
                    async with http.get(f"{url}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "webhooks not ready"
                await asyncio.sleep(0.2)
            headers = {"X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": SHOP,
                       "X-Shopify-Hmac-Sha256": sign(secret, body),
                       "X-Shopify-Event-Id": "evt-1", "Content-Type": "application/json"}
            async with http.post(f"{url}/webhooks", data=body, headers=headers) as r:
                assert r.status == 200, await r.text()
            bad = {**headers, "X-Shopify-Hmac-Sha256": sign("wrong", body)}
            async with http.post(f"{url}/webhooks", data=body, headers=bad) as r:
                assert r.status == 401
        await wait_until(lambda: "order-987654321" in out.read_text(errors="replace"), 10)
    finally:
        stop(proc)
    entries = json_lines(out, "webhooks", secret)
    about = [e for e in entries if e.get("correlation_id")]
    assert [(e["msg"], e["correlation_id"], e["event_id"]) for e in about] == [
        ("webhook published", "order-987654321", "evt-1")], entries
