"""Shopify API efficiency at the Standard plan: Tally's sink against two bench-only baselines.

The same update stream (ledger values for SKU@locations, from the realistic traffic mix's key
distribution) is delivered three ways:

* **tally** — push records on Kafka, consumed by the real ``tally sink`` (coalescing, batches of
  up to 250, budget pacing) against the simulator at the Standard plan (2000 points, 100/s).
* **(a) per_event_graphql** — one ``inventorySetQuantities`` call per update with one quantity
  (the same mutation Tally builds, ``build_request`` with one item), one call in flight, paced
  by the ``throttleStatus`` the simulator returns; no coalescing, no batching.
* **(b) per_event_rest** — ``POST /admin/api/2026-10/inventory_levels/set.json`` per update. The
  simulator has no REST endpoint, so the bench serves a REST-shaped stand-in that enforces
  Shopify's documented REST limit for non-Plus shops: a leaky bucket of 40 requests leaking 2
  requests/s, ``429`` + ``Retry-After`` when full, ``X-Shopify-Shop-Api-Call-Limit`` on every
  answer. REST calls have no cost points: its figure is updates per second (and per request).

"Updates delivered" counts ledger updates whose value reached Shopify (a coalesced update is
delivered when a newer value for its key is acknowledged). Steady-state rates exclude the initial
full bucket: (a) and (b) are measured after their first throttle, and Tally's sustainable rate
is its measured points per update x the plan's restore rate (100 points/s).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import SHOP, SimProcess, SinkProcess, log, median, produce, producer
from pipeline.messages import ShopifyPush, push_key
from pipeline.sink.batching import BatchItem, build_request
from tests.support.sink import seed_acks, sink_topics

STANDARD_RESTORE = 100.0  # points/s
REST_BUCKET, REST_LEAK = 40, 2.0  # requests, requests/s (Shopify REST Admin API, non-Plus)


def update_stream(items: dict[str, str], locations: list[str], n: int, seed: int
                  ) -> list[tuple[str, str, int]]:
    """``n`` (item, location, new available) updates; keys drawn uniformly like the mix."""
    rng = random.Random(seed)
    skus = sorted(items)
    return [(items[rng.choice(skus)], rng.choice(locations), rng.randint(0, 60))
            for _ in range(n)]


# -- tally ---------------------------------------------------------------------------------------


def run_tally(bootstrap: str, workdir: Path, sim: SimProcess, updates: list[tuple[str, str, int]],
              rate: float, timeout: float) -> dict[str, Any]:
    info = sim.info
    topics = sink_topics(bootstrap, "bench-api")
    keys = {(item, loc) for item in info["items"].values() for loc in info["locations"].values()}
    seed_acks(bootstrap, topics.shopify_acks,
              [((SHOP, item, loc), info["available"]) for item, loc in keys])
    sink = SinkProcess(bootstrap, workdir, topics, info["shop_url"], info["token"])
    sink.start()
    try:
        sink.wait_ready()
        cost0 = sim.stats()["cost_spent"]
        p = producer(bootstrap, **{"linger.ms": 1})
        versions: dict[tuple[str, str], int] = {}
        latest: dict[tuple[str, str], int] = {}
        t0 = time.monotonic()
        for i, (item, loc, avail) in enumerate(updates):
            v = versions.get((item, loc), 0) + 1
            versions[(item, loc)] = v
            latest[(item, loc)] = v
            now = time.time()
            push = ShopifyPush(SHOP, item, loc, "bench", "bench", avail, v, now, now)
            produce(p, topics.shopify_push, push.key.encode(), push.to_json())
            due = t0 + (i + 1) / rate
            if due > time.monotonic():
                p.poll(0)
                time.sleep(max(0.0, due - time.monotonic()))
        p.flush(30)
        # Delivered when every key's final version is acknowledged.
        deadline = time.monotonic() + timeout
        target = len(latest)
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            stats = sink.stats()
            if stats["items_acked"] >= target:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        cost = sim.stats()["cost_spent"] - cost0
    finally:
        sink.stop()
    items = stats.get("items_acked", 0)
    delivered = len(updates) if items >= target else None
    per_update = cost / len(updates) if cost else float("nan")
    return {
        "updates": len(updates), "offered_rate": rate, "items_written": items,
        "calls": stats.get("calls"), "throttled": stats.get("throttled"), "cost_points": cost,
        "seconds": elapsed, "all_delivered": delivered is not None,
        "updates_per_1000_points": len(updates) / cost * 1000 if cost else None,
        "items_per_call": items / stats["calls"] if stats.get("calls") else None,
        "updates_per_s_measured": len(updates) / elapsed,
        "updates_per_s_budget_ceiling": STANDARD_RESTORE / per_update if cost else None,
    }


# -- baseline (a): one GraphQL call per update ---------------------------------------------------


async def run_per_event_graphql(sim: SimProcess, updates: list[tuple[str, str, int]],
                                seconds: float) -> dict[str, Any]:
    info = sim.info
    url = f"{info['shop_url']}/admin/api/2026-10/graphql.json"
    known: dict[tuple[str, str], int] = {}
    calls = delivered = throttled = 0
    cost = 0.0
    steady_t0: float | None = None
    steady_n = 0
    steady_cost = 0.0
    t0 = time.monotonic()
    async with aiohttp.ClientSession(headers={"X-Shopify-Access-Token": info["token"]}) as http:
        for item, loc, avail in updates:
            if time.monotonic() - t0 >= seconds:
                break
            change_from = known.get((item, loc), info["available"])
            req = build_request(SHOP, [BatchItem(push_key(SHOP, item, loc), item, loc, avail,
                                                 change_from, 1, delivered)])
            for _ in range(1000):
                async with http.post(url, json=req.body()) as r:
                    body = await r.json()
                calls += 1
                c = body.get("extensions", {}).get("cost", {})
                if c.get("actualQueryCost") is not None:
                    cost += c["actualQueryCost"]
                    if steady_t0 is not None:
                        steady_cost += c["actualQueryCost"]
                if body.get("data"):
                    break
                throttled += 1
                if steady_t0 is None:
                    steady_t0 = time.monotonic()
                status = c.get("throttleStatus", {})
                need = c.get("requestedQueryCost", 10) - status.get("currentlyAvailable", 0)
                await asyncio.sleep(max(0.01, need / status.get("restoreRate", 100.0)))
            known[(item, loc)] = avail
            delivered += 1
            if steady_t0 is not None:
                steady_n += 1
    elapsed = time.monotonic() - t0
    steady_s = time.monotonic() - steady_t0 if steady_t0 else None
    return {
        "updates_delivered": delivered, "calls": calls, "throttled": throttled,
        "cost_points": cost, "seconds": elapsed,
        "updates_per_1000_points": delivered / cost * 1000 if cost else None,
        "updates_per_s_measured": delivered / elapsed,
        "updates_per_s_steady": steady_n / steady_s if steady_s else None,
        "steady_window_s": steady_s,
    }


# -- baseline (b): REST inventory_levels/set.json per update at 2 requests/s --------------------


class RestStandIn:
    """A REST-shaped ``inventory_levels/set.json`` with Shopify's documented REST leaky bucket."""

    def __init__(self) -> None:
        self.level = 0.0
        self.at = time.monotonic()
        self.levels: dict[tuple[int, int], int] = {}
        self.requests = self.limited = 0

    async def handle(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self.at) * REST_LEAK)
        self.at = now
        self.requests += 1
        if self.level + 1 > REST_BUCKET:
            self.limited += 1
            return web.json_response({"errors": "Exceeded 2 calls per second for api client. "
                                      "Reduce request rates to resume uninterrupted service."},
                                     status=429, headers={"Retry-After": "2.0"})
        self.level += 1
        body = await request.json()
        key = (int(body["inventory_item_id"]), int(body["location_id"]))
        self.levels[key] = int(body["available"])
        limit = f"{int(self.level)}/{REST_BUCKET}"
        return web.json_response({"inventory_level": {
            "inventory_item_id": key[0], "location_id": key[1], "available": self.levels[key],
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}},
            headers={"X-Shopify-Shop-Api-Call-Limit": limit})


async def run_per_event_rest(updates: list[tuple[str, str, int]], seconds: float
                             ) -> dict[str, Any]:
    stand_in = RestStandIn()
    app = web.Application()
    app.router.add_post("/admin/api/2026-10/inventory_levels/set.json", stand_in.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/admin/api/2026-10/inventory_levels/set.json"
    delivered = 0
    steady_t0: float | None = None
    steady_n = 0
    t0 = next_at = time.monotonic()
    try:
        async with aiohttp.ClientSession(headers={"X-Shopify-Access-Token": "bench"}) as http:
            for item, loc, avail in updates:
                if time.monotonic() - t0 >= seconds:
                    break
                body = {"location_id": int(loc.rsplit("/", 1)[1]),
                        "inventory_item_id": int(item.rsplit("/", 1)[1]), "available": avail}
                for _ in range(1000):
                    if steady_t0 is not None:  # bucket full: pace at the leak rate (2/s)
                        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                        next_at = max(next_at, time.monotonic()) + 1 / REST_LEAK
                    async with http.post(url, json=body) as r:
                        if r.status == 200:
                            await r.read()
                            break
                        retry = float(r.headers.get("Retry-After", "2.0"))
                    if steady_t0 is None:
                        steady_t0 = time.monotonic()
                    await asyncio.sleep(retry)
                delivered += 1
                if steady_t0 is not None:
                    steady_n += 1
    finally:
        await runner.cleanup()
    elapsed = time.monotonic() - t0
    steady_s = time.monotonic() - steady_t0 if steady_t0 else None
    return {
        "updates_delivered": delivered, "requests": stand_in.requests,
        "rate_limited_429": stand_in.limited, "seconds": elapsed,
        "updates_per_s_measured": delivered / elapsed,
        "updates_per_s_steady": steady_n / steady_s if steady_s else None,
        "steady_window_s": steady_s, "updates_per_request": delivered / stand_in.requests,
    }


def run(bootstrap: str, workdir: Path, *, quick: bool, reps: int) -> dict[str, Any]:
    skus = 2_000 if quick else 20_000
    n, rate = (2_000, 500.0) if quick else (20_000, 1_000.0)
    baseline_s = 8.0 if quick else 30.0
    tally_runs, a_runs, b_runs = [], [], []
    for rep in range(reps):
        sim = SimProcess(skus, workdir / f"rep{rep}" / "sim", locations=4)
        sim.start()
        try:
            updates = update_stream(sim.info["items"], list(sim.info["locations"].values()), n,
                                    seed=rep)
            tally_runs.append(run_tally(bootstrap, workdir / f"rep{rep}" / "sink", sim, updates,
                                        rate, timeout=60.0 if quick else 120.0))
            a_runs.append(asyncio.run(run_per_event_graphql(sim, updates, baseline_s)))
        finally:
            sim.stop()
        b_runs.append(asyncio.run(run_per_event_rest(updates, baseline_s)))
        log(f"api rep {rep + 1}: tally {tally_runs[-1]['updates_per_1000_points']:.0f} upd/1000 "
            f"pts, (a) {a_runs[-1]['updates_per_1000_points']:.0f}; steady/s: tally ceiling "
            f"{tally_runs[-1]['updates_per_s_budget_ceiling']:.0f}, (a) "
            f"{a_runs[-1]['updates_per_s_steady']}, (b) {b_runs[-1]['updates_per_s_steady']}")
    t_pts = median(r["updates_per_1000_points"] for r in tally_runs)
    t_ceiling = median(r["updates_per_s_budget_ceiling"] for r in tally_runs)
    t_measured = median(r["updates_per_s_measured"] for r in tally_runs)
    a_pts = median(r["updates_per_1000_points"] for r in a_runs)
    a_s = median(r["updates_per_s_steady"] for r in a_runs)
    b_s = median(r["updates_per_s_steady"] for r in b_runs)
    return {
        "plan": "standard (2000 points, 100 points/s)", "keys": skus * 4,
        "updates_per_run": n, "offered_rate": rate, "repetitions": reps,
        "tally_updates_per_1000_points": t_pts,
        "tally_items_per_call": median(r["items_per_call"] for r in tally_runs),
        "tally_updates_per_s_measured": t_measured,
        "tally_updates_per_s_budget_ceiling": t_ceiling,
        "a_updates_per_1000_points": a_pts, "a_updates_per_s_steady": a_s,
        "b_updates_per_s_steady": b_s, "b_updates_per_1000_points": None,
        "ratio_per_1000_points_tally_to_a": t_pts / a_pts,
        "ratio_per_s_tally_ceiling_to_a": t_ceiling / a_s,
        "ratio_per_s_tally_ceiling_to_b": t_ceiling / b_s,
        "runs": {"tally": tally_runs, "a_per_event_graphql": a_runs, "b_per_event_rest": b_runs},
        "notes": json.dumps({"b": "REST stand-in in bench/api_efficiency.py: bucket 40 requests, "
                             "leak 2/s, 429 + Retry-After; no cost points in REST"}),
    }
