"""``tally demo``: broker, simulator, worker and sink on this machine, synthetic multi-source
traffic for a while, then a summary of what happened and whether Shopify equals the ledger."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from pipeline.demo.report import compare_levels, end_to_end_latencies, percentile
from pipeline.demo.services import Service, free_port, http_json, http_text, metric_total
from pipeline.demo.world import DemoWorld
from pipeline.infra.kafka_read import read_to_end
from pipeline.infra.kafka_topics import ensure_topics
from pipeline.infra.kafka_write import new_producer
from pipeline.infra.local_kafka import KafkaStartError, LocalKafka, LocalKafkaSettings
from pipeline.ledger.apply import ApplyContext, apply
from pipeline.ledger.ats import available_to_sell
from pipeline.ledger.catalog import Catalog, CatalogEntry
from pipeline.ledger.decode import decode_event, load_schemas
from pipeline.ledger.events import Rejection
from pipeline.ledger.locations import Locations, load_locations
from pipeline.ledger.movements import ledger_key, to_movements
from pipeline.ledger.position import LedgerPosition
from pipeline.messages import ShopifyAck
from pipeline.operations.catalog import publish_entries
from pipeline.settings import load, resolve
from pipeline.settings.parts import KafkaSettings
from pipeline.simulation.traffic import TrafficGenerator
from pipeline.sink.compare_and_set import KeyState
from pipeline.sink.records import ack_record
from pipeline.topics import Topics, changelog_topic


@dataclass
class DemoOptions:
    duration: float = 60.0
    rate: float = 200.0  # upstream events per second
    shops: int = 2
    skus: int = 2000
    locations: int = 4
    storefront_rate: float = 1.0  # online orders per second per shop (needs the webhooks service)
    partitions: int = 4
    window_s: float = 1.0
    hold_s: float = 10.0
    workdir: Path = field(default_factory=lambda: Path(".tally/demo"))
    json_out: Path | None = None
    quiet: bool = False


class Oracle:
    """The true available-to-sell per key, from every upstream event the demo produced."""

    def __init__(self, locations: Locations, catalog: Catalog) -> None:
        self.locations, self.catalog = locations, catalog
        self.positions: dict[str, LedgerPosition] = {}
        self.schemas = load_schemas()
        self.changed: set[str] = set()

    def feed(self, system: str, raw: bytes) -> None:
        event = decode_event(raw, source_topic_system=system, known_locations=self.locations,
                             schemas=self.schemas)
        if isinstance(event, Rejection):
            return
        for movement in to_movements(event):
            rules = self.locations.rules(movement.branch)
            ctx = ApplyContext(now=time.time(), rules=rules,
                               mapping=self.catalog.mapping_for(rules, movement.sku))
            self.positions[movement.key], _ = apply(self.positions.get(movement.key), movement,
                                                    ctx)
            self.changed.add(movement.key)

    def ats(self, key: str) -> int:
        position = self.positions[key]
        return available_to_sell(position, self.locations.rules(position.branch)).value


class Demo:
    """One demo run; every resource it starts is stopped by ``close()``."""

    def __init__(self, opts: DemoOptions, say: Callable[[str], None]) -> None:
        self.opts, self.say = opts, say
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.dir = opts.workdir / self.run_id
        self.topics = Topics.prefixed(f"demo-{self.run_id}")
        self.app_id = f"tally-demo-{self.run_id}"  # the worker's: names its changelogs
        self.world = DemoWorld(shops=opts.shops, skus=opts.skus, locations=opts.locations)
        self.services: list[Service] = []
        self.broker: LocalKafka | None = None
        self.bootstrap = ""

    # -- set-up ---------------------------------------------------------------------------------

    def start_broker(self) -> None:
        """The configured cluster when a bootstrap is set (flag, environment or settings file),
        else the local broker (started unless it runs)."""
        kafka, origin = resolve(KafkaSettings)
        if origin["bootstrap"] != "default":
            self.bootstrap = kafka.bootstrap
            return
        broker = LocalKafka(port=load(LocalKafkaSettings).port)
        already = broker.pid() is not None
        self.say(f"kafka: {'using the running' if already else 'starting a'} local broker")
        self.bootstrap = broker.up()
        if not already:
            self.broker = broker

    def start(self) -> None:
        o = self.opts
        self.dir.mkdir(parents=True, exist_ok=True)
        self.start_broker()
        ensure_topics(self.bootstrap, self.topics, o.partitions)
        base_env = {"TALLY_KAFKA_BOOTSTRAP": self.bootstrap, **self.topics.env()}

        seed = self.dir / "simulator-seed.json"
        seed.write_text(json.dumps(self.world.simulator_seed()))
        seed.chmod(0o600)
        sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        sim = Service("shopify-sim", ["shopify-sim", "--port", str(sim_port), "--seed",
                                      str(seed)], {}, self.dir,
                      ready_url=f"{self.sim_url}/healthz")
        self._start(sim)
        self.say(f"shopify simulator: {len(self.world.shop_domains)} shops, "
                 f"{o.skus} SKUs x {o.locations} locations at {self.sim_url}")

        levels = http_json(f"{self.sim_url}/_sim/levels", timeout=60)["levels"]
        location_gids = {(r["shop"], r["location"]): r["location_id"] for r in levels}
        items = {(r["shop"], r["sku"]): r["inventory_item_id"] for r in levels}
        locations_file = self.dir / "locations.toml"
        locations_file.write_text(self.world.locations_toml(location_gids))
        self.locations = load_locations(locations_file)
        entries = [CatalogEntry(shop, sku, gid) for (shop, sku), gid in items.items()]
        self.catalog = Catalog().with_entries(entries)
        publish_entries(self.bootstrap, self.topics.catalog, entries)
        self._seed_acks()

        worker_port = free_port()
        self.worker_url = f"http://127.0.0.1:{worker_port}"
        worker = Service("worker", ["worker", "--loglevel=warn"], {
            **base_env, "TALLY_APP_ID": self.app_id,
            "TALLY_INSTANCE_ID": f"tally-demo-{self.run_id}-worker-0",
            "TALLY_PARTITIONS": str(o.partitions), "TALLY_DATA_DIR": str(self.dir / "worker"),
            "TALLY_LOCATIONS_FILE": str(locations_file), "TALLY_WEB_PORT": str(worker_port),
        }, self.dir, ready_url=f"{self.worker_url}/readyz")
        self._start(worker)

        shops_file = self.dir / "shops.toml"
        shops_file.write_text(self.world.shops_toml(self.sim_url))
        sink_port = free_port()
        self.sink_url = f"http://127.0.0.1:{sink_port}"
        tokens = {self.world.token_env(d): t for d, t in self.world.tokens.items()}
        sink = Service("sink", [
            "sink", "--shops-file", str(shops_file), "--web-port", str(sink_port),
            "--window", str(o.window_s), "--hold", str(o.hold_s),
            "--group", f"tally-demo-sink-{self.run_id}",
        ], {**base_env, **tokens}, self.dir, ready_url=f"{self.sink_url}/readyz")
        self._start(sink)

        webhooks_file = self.dir / "webhooks.toml"
        webhooks_file.write_text(self.world.webhooks_toml())
        hooks_port = free_port()
        self.hooks_url = f"http://127.0.0.1:{hooks_port}"
        secrets = {self.world.secret_env(d): s for d, s in self.world.webhook_secrets.items()}
        hooks = Service("webhooks", ["webhooks"], {
            **base_env, **secrets, "TALLY_WEBHOOKS_FILE": str(webhooks_file),
            "TALLY_WEBHOOKS_PORT": str(hooks_port), "TALLY_LOCATIONS_FILE": str(locations_file),
        }, self.dir, ready_url=f"{self.hooks_url}/readyz")
        self._start(hooks)
        # Shopify's webhooks (orders, routing) now reach Tally's intake.
        http_json(f"{self.sim_url}/_sim/config",
                  {"webhook": {"url": f"{self.hooks_url}/webhooks", "routing": True}})
        self.say(f"worker {self.worker_url}, sink {self.sink_url}, webhooks {self.hooks_url}; "
                 f"logs in {self.dir}")
        self.oracle = Oracle(self.locations, self.catalog)

    def _start(self, service: Service) -> None:
        self.services.append(service)
        service.start()
        service.wait_ready()

    def _seed_acks(self) -> None:
        """Shopify starts in sync with the opening stock, as after an earlier run of the sink."""
        producer = self._producer()
        now = time.time()
        for (sku, branch_id), qty in self.world.opening_stock.items():
            rules = self.locations.rules(branch_id)
            mapping = self.catalog.mapping_for(rules, sku)
            assert mapping is not None
            ack = ShopifyAck(mapping.shop, mapping.inventory_item_id, mapping.location_id, qty,
                             ledger_version=1, acknowledged_at=now)
            state = KeyState(acked=qty, acked_version=1, target=qty, target_version=1)
            key = f"{mapping.shop}|{mapping.inventory_item_id}|{mapping.location_id}"
            producer.produce(self.topics.shopify_acks, key=key.encode(),
                             value=ack_record(ack, state))
            producer.poll(0)
        producer.flush(60)

    def _producer(self) -> Producer:
        return new_producer(self.bootstrap, linger_ms=10)

    # -- run ------------------------------------------------------------------------------------

    def worker_counts(self) -> dict[str, float]:
        text = http_text(f"{self.worker_url}/metrics")
        return {name: metric_total(text, f"tally_events_{name}_total")
                for name in ("received", "applied", "duplicate", "rejected")}

    def produce(self, events: Sequence[tuple[str, bytes]], producer: Producer) -> None:
        sources = self.topics.sources()
        for system, raw in events:
            producer.produce(sources[system], value=raw)
            self.oracle.feed(system, raw)
        producer.poll(0)

    def opening_load(self) -> None:
        events = self.world.opening_snapshots()
        producer = self._producer()
        self.produce(events, producer)
        producer.flush(60)
        self.wait_applied(len(events), "opening stock")

    def wait_applied(self, n: int, what: str, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.worker_counts()
            done = counts["applied"] + counts["duplicate"]
            if done >= n:
                return
            time.sleep(1.0)
        raise RuntimeError(f"the worker did not apply the {what} in {timeout:.0f}s")

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def traffic(self, on_tick: Callable[[float], None] | None = None) -> int:
        """Upstream events at ``rate`` for ``duration`` seconds; returns how many.
        ``on_tick(elapsed)`` runs every ~50 ms (the chaos tests inject their faults there)."""
        o = self.opts
        gen = TrafficGenerator(skus=self.world.sku_names,
                               branches=[b.id for b in self.world.branches],
                               seed=int(time.time()), start=time.time(), step=1.0 / o.rate)
        producer = self._producer()
        http_json(f"{self.sim_url}/_sim/config", {"storefront_rate": o.storefront_rate})
        started = time.monotonic()
        sent, last_report = 0, started
        while (elapsed := time.monotonic() - started) < o.duration:
            due = int(elapsed * o.rate) - sent
            if due > 0:
                self.produce(list(gen.encoded(due)), producer)
                sent += due
            self.post_true_stock()
            if on_tick is not None:
                on_tick(elapsed)
            if time.monotonic() - last_report >= 5.0:
                last_report = time.monotonic()
                self.progress(elapsed, sent)
            time.sleep(0.05)
        http_json(f"{self.sim_url}/_sim/config", {"storefront_rate": 0})
        producer.flush(60)
        return sent

    def online_orders(self) -> dict[str, int]:
        """Units of accepted, still open storefront orders per ledger key."""
        branch_of = {(b.shop, b.location_name): b.id for b in self.world.branches}
        held: dict[str, int] = defaultdict(int)
        for order in http_json(f"{self.sim_url}/_sim/orders")["orders"]:
            if order["status"] == "open":
                branch = branch_of[(order["shop"], order["location"])]
                held[ledger_key(order["sku"], branch)] += order["quantity"]
        return held

    def post_true_stock(self) -> None:
        """Tell the simulator the real stock of changed keys, so it can count oversells: what
        the upstream events leave to sell, less what online customers already bought."""
        if not self.oracle.changed:
            return
        orders = self.online_orders() if self.opts.storefront_rate > 0 else {}
        rows = []
        for key in self.oracle.changed:
            position = self.oracle.positions[key]
            rules = self.locations.rules(position.branch)
            mapping = self.catalog.mapping_for(rules, position.sku)
            if mapping is None:
                continue
            rows.append({"shop": mapping.shop, "sku": position.sku,
                         "location": mapping.location_id,
                         "available": self.oracle.ats(key) - orders.get(key, 0)})
        self.oracle.changed.clear()
        for start in range(0, len(rows), 1000):  # the simulator caps request bodies at 1 MiB
            http_json(f"{self.sim_url}/_sim/true-stock", rows[start:start + 1000])

    def progress(self, elapsed: float, sent: int) -> None:
        try:
            counts = self.worker_counts()
            sink = http_json(f"{self.sink_url}/stats")
            sim = http_json(f"{self.sim_url}/_sim/stats")
        except OSError as exc:  # a service restarting (the chaos tests kill them)
            self.say(f"[{elapsed:5.1f}s] events sent {sent}; progress not available: {exc}")
            return
        orders = sim.get("orders", {})
        self.say(f"[{elapsed:5.1f}s] events sent {sent}, applied {counts['applied']:.0f}, "
                 f"items pushed {sink['items_acked']} in {sink['calls']} calls, "
                 f"throttled {sink['throttled']}, orders {orders}")

    def quiesce(self, timeout: float) -> None:
        """Wait until the worker and the sink have nothing left to do."""
        deadline = time.monotonic() + timeout
        last: tuple[Any, ...] = ()
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            counts = self.worker_counts()
            sink = http_json(f"{self.sink_url}/stats")
            now = (counts["received"], counts["applied"], sink["items_acked"], sink["calls"],
                   sink["reads"])
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= self.opts.window_s + 3.0:
                return
            time.sleep(0.5)

    # -- summary --------------------------------------------------------------------------------

    def summary(self, sent: int, seconds: float, since: float) -> dict[str, Any]:
        counts = self.worker_counts()
        sink = http_json(f"{self.sink_url}/stats")
        sim = http_json(f"{self.sim_url}/_sim/stats")
        pushes = [json.loads(v) for _, v in read_to_end(self.bootstrap,
                                                           self.topics.shopify_push) if v]
        acks = [json.loads(v) for _, v in read_to_end(self.bootstrap,
                                                         self.topics.shopify_acks) if v]
        drift = [v for _, v in read_to_end(self.bootstrap, self.topics.drift) if v]
        # Only what the traffic caused: the opening state was in sync before the run.
        latencies = end_to_end_latencies([p for p in pushes if p["emitted_at"] >= since], acks)
        ledger = self.ledger_ats()
        levels = http_json(f"{self.sim_url}/_sim/levels", timeout=60)["levels"]
        branch_of = {(b.shop, loc_id): b_id for b_id, b, loc_id in self._branch_gids()}
        shopify = {ledger_key(r["sku"], branch_of[(r["shop"], r["location_id"])]):
                   r["quantities"]["available"] for r in levels}
        comparison = compare_levels(ledger, shopify)
        calls = max(1, sink["calls"])
        return {
            "duration_s": round(seconds, 1),
            "events_sent": sent,
            "events": {k: int(v) for k, v in counts.items()},
            "pushes": {"items_acknowledged": sink["items_acked"], "calls": sink["calls"],
                       "items_per_call": round(sink["items_acked"] / calls, 1),
                       "throttled": sink["throttled"], "retries": sink["retries"],
                       "level_reads": sink["reads"], "dead_letters": sink["dead_letters"]},
            "api_cost": {"requested": sink["cost_requested"], "actual": sink["cost_actual"],
                         "available_over_run": self.cost_available(seconds)},
            "end_to_end_latency_s": {
                "samples": len(latencies),
                **{f"p{q}": _round(percentile(latencies, q)) for q in (50, 95, 99)},
            },
            "drift": {"reported": len(drift), "sink_drift": sink["drift"]},
            "storefront": sim.get("orders", {}),
            "webhooks": {"delivered": sim.get("webhooks", {}),
                         "received": int(metric_total(http_text(f"{self.hooks_url}/metrics"),
                                                      "tally_webhooks_received_total"))},
            "shopify_equals_ledger": comparison.all_equal,
            "keys_compared": comparison.keys,
            "keys_different": len(comparison.differences),
            "first_differences": comparison.differences[:10],
        }

    def cost_available(self, seconds: float) -> float:
        """What the Standard plan's bucket offered over the run (full bucket + restore)."""
        per_shop = 2000 + 100 * seconds
        return per_shop * len(self.world.shop_domains)

    def _branch_gids(self) -> list[tuple[str, Any, str]]:
        out = []
        for b in self.world.branches:
            rules = self.locations.rules(b.id)
            out.append((b.id, b, rules.shopify_location_id or ""))
        return out

    def ledger_positions(self) -> dict[str, LedgerPosition]:
        """Every key's position from the worker's changelog (what a recovering worker
        restores)."""
        out: dict[str, LedgerPosition] = {}
        for _, value in read_to_end(self.bootstrap, changelog_topic(self.app_id)):
            if value is not None:
                position = LedgerPosition.from_json(value)
                out[position.key] = position
        return out

    def ledger_ats(self) -> dict[str, int]:
        """ATS of every key from the worker's changelog."""
        return {key: available_to_sell(p, self.locations.rules(p.branch)).value
                for key, p in self.ledger_positions().items()}

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop()
        if self.broker is not None:
            self.broker.down()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def run_demo(opts: DemoOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    demo = Demo(opts, say)
    try:
        demo.start()
        say("loading opening stock (ERP snapshots for every SKU@branch)")
        demo.opening_load()
        say(f"traffic: {opts.rate:.0f} upstream events/s for {opts.duration:.0f}s")
        started, since = time.monotonic(), time.time()
        sent = demo.traffic()
        seconds = time.monotonic() - started
        say("traffic stopped; waiting for the worker and the sink to settle")
        demo.quiesce(timeout=opts.hold_s + 60)
        return demo.summary(sent, seconds, since)
    finally:
        demo.close()


def format_summary(s: dict[str, Any]) -> str:
    lat = s["end_to_end_latency_s"]
    p = s["pushes"]
    return "\n".join([
        "== Tally demo summary ==",
        f"events: sent {s['events_sent']} over {s['duration_s']}s; worker received "
        f"{s['events']['received']}, applied {s['events']['applied']}, duplicates "
        f"{s['events']['duplicate']}, rejected {s['events']['rejected']}",
        f"pushes: {p['items_acknowledged']} item updates in {p['calls']} calls "
        f"({p['items_per_call']} per call), throttled {p['throttled']}, retries "
        f"{p['retries']}, level reads {p['level_reads']}, dead letters {p['dead_letters']}",
        f"API cost: {s['api_cost']['actual']:.0f} points used of "
        f"{s['api_cost']['available_over_run']:.0f} available",
        f"end-to-end latency: p50 {lat['p50']}s, p95 {lat['p95']}s, p99 {lat['p99']}s "
        f"({lat['samples']} samples)",
        f"drift: {s['drift']['reported']} reported (and repaired by the sink)",
        f"storefront: {s['storefront']}; webhooks received {s['webhooks']['received']}",
        f"Shopify equals the ledger on every key: {'yes' if s['shopify_equals_ledger'] else 'NO'}"
        f" ({s['keys_compared']} keys, {s['keys_different']} different)",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tally demo", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (60)")
    p.add_argument("--rate", type=float, default=200.0, help="upstream events per second (200)")
    p.add_argument("--shops", type=int, default=2)
    p.add_argument("--skus", type=int, default=2000)
    p.add_argument("--locations", type=int, default=4)
    p.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    p.add_argument("--workdir", type=Path, default=Path(".tally/demo"))
    args = p.parse_args(list(argv or []))
    opts = DemoOptions(duration=args.duration, rate=args.rate, shops=args.shops, skus=args.skus,
                       locations=args.locations, workdir=args.workdir, json_out=args.json)
    try:
        summary = run_demo(opts, say=lambda line: print(line, flush=True))
    except (KafkaStartError, RuntimeError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
        print(f"summary written to {args.json}")
    return 0 if summary["shopify_equals_ledger"] else 2

