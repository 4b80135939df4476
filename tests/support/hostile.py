"""Hostile upstream records: malformed, truncated, oversized and type-confused variants of
valid events, generated deterministically from a seed."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

from pipeline.simulation.traffic import TrafficGenerator

_CONFUSIONS: list[object] = [None, "5", 5.5, -1, 10**12, [], {}, True, "", "💥", float("inf")]


def _mutate(rng: random.Random, source: str, ev: dict) -> tuple[str, bytes]:
    raw = json.dumps(ev).encode()
    choice = rng.randrange(12)
    if choice == 0:  # truncated
        return source, raw[: rng.randrange(len(raw))]
    if choice == 1:  # a field with the wrong type or an absurd value
        bad = dict(ev)
        bad[rng.choice(list(bad))] = rng.choice(_CONFUSIONS)
        return source, json.dumps(bad, allow_nan=True).encode()
    if choice == 2:  # a required field missing
        bad = dict(ev)
        bad.pop(rng.choice(["sku", "location", "quantity", "type", "transaction_id"]))
        return source, json.dumps(bad).encode()
    if choice == 3:  # oversized
        bad = dict(ev, note="x" * rng.randint(70_000, 120_000))
        return source, json.dumps(bad).encode()
    if choice == 4:  # random bytes
        return source, bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    if choice == 5:  # not an object
        return source, json.dumps(rng.choice([[ev], 42, "event", None, True])).encode()
    if choice == 6:  # deeply nested
        return source, b"[" * 5000 + b"]" * 5000
    if choice == 7:  # on the wrong source topic
        other = rng.choice([s for s in ("erp", "wms", "pos", "3pl") if s != source])
        return other, raw
    if choice == 8:  # an unknown location
        return source, json.dumps(dict(ev, location="BRANCH-THAT-DOES-NOT-EXIST")).encode()
    if choice == 9:  # an unknown extra field (contracts are closed)
        return source, json.dumps(dict(ev, surprise=1)).encode()
    if choice == 10:  # invalid UTF-8 inside a string
        return source, raw.replace(b'"sku": "', b'"sku": "\xc3\x28', 1)
    bad = dict(ev, occurred_at=rng.choice(["yesterday", "2026-13-45T99:99:99Z", 0, ""]))
    return source, json.dumps(bad).encode()


def hostile_stream(n_hostile: int, n_valid: int, *, skus: list[str], branches: list[str],
                   tpl_branches: list[str], seed: int = 11) -> Iterator[tuple[str, bytes]]:
    """``n_hostile`` hostile records with ``n_valid`` valid ones interleaved at random."""
    rng = random.Random(seed)
    valid = TrafficGenerator(skus=skus, branches=branches, tpl_branches=tpl_branches,
                             seed=seed, duplicate_rate=0.0)
    mutants = TrafficGenerator(skus=skus, branches=branches, tpl_branches=tpl_branches,
                               seed=seed + 1, duplicate_rate=0.0)
    remaining_valid, remaining_hostile = n_valid, n_hostile
    while remaining_valid or remaining_hostile:
        total = remaining_valid + remaining_hostile
        if rng.randrange(total) < remaining_valid:
            remaining_valid -= 1
            source, ev = valid.event()
            yield source, json.dumps(ev).encode()
        else:
            remaining_hostile -= 1
            source, ev = mutants.event()
            yield _mutate(rng, source, ev)
