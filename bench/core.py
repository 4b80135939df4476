"""Tally's pure core per event, no Kafka: what the worker's own code costs.

``Core`` runs exactly the calls the worker's agents make for one source record, in the same
order, with the same encodings: decode with validation, split into movements (``rekey``; each
encoded for the movements topic and decoded again when it is re-keyed, not when it is applied
where it is read), then the ledger step (stored position decoded, ``apply``, position encoded for
the table) and the push and audit records encoded. The state is a dict
here and a RocksDB write batch in ``bench.reference``'s raw loop.

``python -m bench.core [--events N] [--profile out.prof]`` prints the split; ``make bench`` runs
it as the ``core`` benchmark (medians of the repetitions, µs per source event).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    SHOP,
    fake_catalog,
    log,
    median,
    traffic,
    write_locations,
)
from pipeline.ledger.apply import ApplyContext, apply
from pipeline.ledger.catalog import Catalog
from pipeline.ledger.decode import SchemaSet, decode_event, load_schemas
from pipeline.ledger.events import Rejection
from pipeline.ledger.locations import Locations, load_locations
from pipeline.ledger.movements import Movement, to_movements
from pipeline.ledger.outputs import Duplicate, PublishAvailable
from pipeline.ledger.position import LedgerPosition
from pipeline.ledger.records import history_record

PHASES = ("decode", "rekey", "ledger", "encode")


@dataclass
class Core:
    """The worker's per-record calls into the core, without faust (``timings`` per phase, s).
    ``in_place``: each movement is applied where its source record is read (the worker on
    records keyed as the contract recommends); else it goes through the movements topic's
    encoding and decoding first (re-keyed: counted in the ``rekey`` phase)."""

    locations: Locations
    catalog: Catalog
    schemas: SchemaSet = field(default_factory=load_schemas)
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    in_place: bool = True

    def intake(self, system: str, raw: bytes, timestamp: float) -> list[Movement]:
        """A source record → its movements ([] if rejected)."""
        t0 = time.perf_counter()
        event = decode_event(raw, source_topic_system=system, known_locations=self.locations,
                             schemas=self.schemas)
        t1 = time.perf_counter()
        self.timings["decode"] += t1 - t0
        if isinstance(event, Rejection):
            return []
        movements = to_movements(event, observed_at=timestamp)
        self.timings["rekey"] += time.perf_counter() - t1
        return movements

    def through_topic(self, movement: Movement) -> Movement:
        """The re-keying hop's share of the core: the movement encoded, and decoded again."""
        t0 = time.perf_counter()
        again = Movement.from_json(movement.to_json())
        self.timings["rekey"] += time.perf_counter() - t0
        return again

    def ledger(self, key: bytes, movement: Movement, table: MutableMapping[bytes, bytes],
               now: float) -> list[tuple[str, bytes, bytes]]:
        """One movement applied to ``table``; returns the records the worker would send
        besides the changelog: ("push" | "history", key, value)."""
        t0 = time.perf_counter()
        raw = table.get(key)
        position = LedgerPosition.from_json(raw) if raw is not None else None
        rules = self.locations.rules(movement.branch)
        ctx = ApplyContext(now=now, rules=rules,
                           mapping=self.catalog.mapping_for(rules, movement.sku))
        new, outputs = apply(position, movement, ctx)
        table[key] = new.to_json()
        t1 = time.perf_counter()
        self.timings["ledger"] += t1 - t0
        sends: list[tuple[str, bytes, bytes]] = []
        duplicate = False
        for out in outputs:
            if isinstance(out, PublishAvailable):
                sends.append(("push", *out.push_record(emitted_at=now,
                                                       correlation_id=movement.mark)))
            elif isinstance(out, Duplicate):
                duplicate = True
        if not duplicate:
            sends.append(("history", key, history_record(movement, new, outputs, now)))
        self.timings["encode"] += time.perf_counter() - t1
        return sends

    def sends(self, system: str, raw: bytes, table: MutableMapping[bytes, bytes],
              now: float) -> list[tuple[str, bytes, bytes]]:
        """Everything the worker does for one source record; the records it sends besides
        the changelog and movements."""
        out: list[tuple[str, bytes, bytes]] = []
        for movement in self.intake(system, raw, now):
            if not self.in_place:
                movement = self.through_topic(movement)
            out += self.ledger(movement.key.encode(), movement, table, now)
        return out

    def event(self, system: str, raw: bytes, table: MutableMapping[bytes, bytes],
              now: float) -> int:
        """``sends`` for one source record; returns how many records it sends."""
        return len(self.sends(system, raw, table, now))


def scenario(workdir: Path, skus: int) -> tuple[Locations, Catalog]:
    """The throughput benchmark's branches and catalog (``bench.common``)."""
    locations = load_locations(write_locations(workdir / "locations.toml"))
    catalog = Catalog({(SHOP, sku): item for sku, item in fake_catalog(skus).items()})
    return locations, catalog


def events(n: int, skus: int, seed: int) -> list[tuple[str, bytes]]:
    return list(traffic(skus, seed=seed).encoded(n))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def measure(core: Core, evs: list[tuple[str, bytes]], table: MutableMapping[bytes, bytes]
            ) -> dict[str, Any]:
    """Run ``evs`` through the core once; CPU µs per source event, total and per phase."""
    core.timings = dict.fromkeys(PHASES, 0.0)
    now = time.time()
    t0, cpu0 = time.perf_counter(), time.process_time()
    records = sum(core.event(system, raw, table, now) for system, raw in evs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    n = len(evs)
    # CPU time is the figure (other load on the machine stretches wall time, not CPU time);
    # the phases split it in the proportions of their wall time.
    scale = cpu / wall if wall > 0 else 1.0
    return {"events": n, "records_out": records, "us_per_event": cpu / n * 1e6,
            "wall_us_per_event": wall / n * 1e6,
            **{f"{p}_us": core.timings[p] * scale / n * 1e6 for p in PHASES}}


def run(bootstrap: str | None, workdir: Path, *, quick: bool, reps: int) -> dict[str, Any]:
    """``bootstrap`` is unused (no Kafka): the signature every benchmark has."""
    skus = 2_000 if quick else 20_000
    n = 5_000 if quick else 40_000
    locations, catalog = scenario(workdir, skus)
    runs = []
    for rep in range(reps):
        evs = events(n, skus, seed=500 + rep)
        core = Core(locations, catalog)
        core.event(*evs[0], {}, time.time())  # warm caches (schemas, regexes)
        res = measure(core, evs, {})
        # The same events, every movement re-keyed through the movements topic's encoding.
        res["rekeyed_us_per_event"] = measure(Core(locations, catalog, in_place=False), evs,
                                              {})["us_per_event"]
        runs.append(res)
        log(f"core rep {rep + 1}: {res['us_per_event']:.1f} µs/event ("
            + ", ".join(f"{p} {res[p + '_us']:.1f}" for p in PHASES)
            + f"); re-keyed {res['rekeyed_us_per_event']:.1f}")
    keys = ["us_per_event", *(f"{p}_us" for p in PHASES), "rekeyed_us_per_event"]
    return {"keys": skus * 5, "events_per_run": n, "repetitions": reps,
            **{k: median(r[k] for r in runs) for k in keys}, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=40_000)
    p.add_argument("--skus", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--profile", type=Path, help="write cProfile stats of one run here")
    args = p.parse_args(argv)
    workdir = Path("bench/results/work/core")
    locations, catalog = scenario(workdir, args.skus)
    evs = events(args.events, args.skus, seed=500)
    results = []
    for _ in range(args.reps):
        core = Core(locations, catalog)
        core.event(*evs[0], {}, time.time())
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            results.append(measure(core, evs, {}))
            prof.disable()
            prof.dump_stats(args.profile)
        else:
            results.append(measure(core, evs, {}))
    best = min(results, key=lambda r: r["us_per_event"])
    print(json.dumps({"best": best, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
