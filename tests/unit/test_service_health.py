"""Readiness of reconcile --serve and delta-pull: the shared shape, retries instead of crashes."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from pipeline.delta_pull.service import run_poller
from pipeline.observability.health import Readiness
from pipeline.reconcile.cli import Scheduler, build_web
from pipeline.reconcile.service import ReconcileSettings
from pipeline.sink.config import ShopConfig


class FlakyPoller:
    """poll_once fails ``fail`` times (Kafka not acknowledging), then succeeds."""

    def __init__(self, fail: int) -> None:
        self.fail, self.calls = fail, 0
        self.succeeded = asyncio.Event()

    def poll_once(self) -> tuple[Any, int]:
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError("3 events not acknowledged: ['timed out']")
        return None, 0


async def test_poller_retries_a_failed_window_and_reports_it() -> None:
    readiness = Readiness("delta-pull-test")
    poller = FlakyPoller(fail=2)
    seen: list[tuple[int, dict]] = []

    async def watch() -> None:
        while poller.calls < 3:
            seen.append(readiness.report())
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    task = asyncio.create_task(run_poller(poller, 0.02, readiness, report=lambda _: None))  # type: ignore[arg-type]
    await asyncio.wait_for(watcher, 5)
    await asyncio.sleep(0.05)
    task.cancel()
    assert poller.calls >= 3  # it went on after two failures instead of exiting
    failing = [body["failing"]["last_poll"]["detail"] for status, body in seen if status == 503]
    assert failing and failing[-1].startswith("2 polls failed in a row, last: 3 events not")
    assert readiness.report()[0] == 200


async def test_poller_once_still_fails_loudly() -> None:
    readiness = Readiness("delta-pull-once")
    try:
        await run_poller(FlakyPoller(fail=1), 0.01, readiness, once=True)  # type: ignore[arg-type]
    except RuntimeError as exc:
        assert "not acknowledged" in str(exc)
    else:
        raise AssertionError("a failed --once poll must exit non-zero")


async def test_scheduled_reconciliation_retried_after_a_failure() -> None:
    settings = ReconcileSettings(shops=[ShopConfig("r.myshopify.com", "http://127.0.0.1:1",
                                                   token_inline="x")])
    scheduler = Scheduler(settings, "02:00")
    scheduler.retry_delays_s = (0.0, 0.0, 0.0)
    calls: list[str] = []

    async def run(shop: str, fix: bool, threshold: int) -> dict:
        calls.append(shop)
        if len(calls) < 3:
            raise ConnectionError("Kafka unreachable")
        return {}

    scheduler.run = run  # type: ignore[method-assign]
    assert await scheduler.run_with_retries("r.myshopify.com", False, 0) is True
    assert calls == ["r.myshopify.com"] * 3
    calls.clear()
    scheduler.retry_delays_s = (0.0,)

    async def never(shop: str, fix: bool, threshold: int) -> dict:
        calls.append(shop)
        raise ConnectionError("still down")

    scheduler.run = never  # type: ignore[method-assign]
    assert await scheduler.run_with_retries("r.myshopify.com", False, 0) is False
    assert len(calls) == 2


async def test_reconcile_readyz_names_kafka_until_it_answers() -> None:
    settings = ReconcileSettings(shops=[ShopConfig("r.myshopify.com", "http://127.0.0.1:1",
                                                   token_inline="x")])
    scheduler = Scheduler(settings, "02:00")
    async with TestClient(TestServer(build_web(scheduler))) as client:
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 503 and list(body["failing"]) == ["kafka"]
        assert (await client.get("/healthz")).status == 200
        scheduler.readiness.set("kafka", True)
        r = await client.get("/readyz")
        assert r.status == 200 and (await r.json())["checks"] == {"kafka": True, "shops": True}
