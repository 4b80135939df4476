"""A deterministic generator of realistic multi-source inventory events (ERP, WMS, POS, 3PL).

It yields ``(source system, event dict)`` pairs that validate against ``schemas/v1``: periodic
ERP snapshots, receipts and adjustments, WMS allocations and picks, POS sales, returns and voids,
3PL snapshots and shipments, with a configurable share of exact redeliveries (duplicates).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


@dataclass
class TrafficMix:
    """Relative weights of each event type."""

    weights: dict[str, float] = field(default_factory=lambda: {
        "erp.on_hand_snapshot": 3, "erp.goods_receipt": 4, "erp.adjustment": 2,
        "erp.cycle_count": 1, "wms.allocation": 8, "wms.deallocation": 2,
        "wms.pick_confirmation": 6, "wms.receipt": 3, "pos.sale": 30, "pos.return": 4,
        "pos.void": 2, "3pl.on_hand_snapshot": 2, "3pl.shipment": 5,
    })


@dataclass
class TrafficGenerator:
    """Events over every ``sku`` at every branch; 3PL types go to ``tpl_branches`` only."""

    skus: Sequence[str]
    branches: Sequence[str]
    tpl_branches: Sequence[str] = ()
    seed: int = 7
    duplicate_rate: float = 0.02
    start: float = 1_790_000_000.0
    step: float = 0.01  # seconds of event time between consecutive events
    mix: TrafficMix = field(default_factory=TrafficMix)
    _n: int = 0
    _sales: list[tuple[str, str, str]] = field(default_factory=list)  # (txn, sku, branch)
    _recent: list[tuple[str, dict]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        names = [t for t in self.mix.weights if self.tpl_branches or not t.startswith("3pl.")]
        self._types = names
        self._cum = [self.mix.weights[t] for t in names]

    def _base(self, kind: str, source: str, sku: str, branch: str, qty: int) -> dict:
        self._n += 1
        now = self.start + self._n * self.step
        return {
            "schema_version": "1", "type": kind, "source": source,
            "transaction_id": f"{source.upper()}-{self.seed}-{self._n}", "line": 1,
            "occurred_at": rfc3339(now), "sku": sku, "location": branch, "quantity": qty,
        }

    def event(self) -> tuple[str, dict]:
        """The next (source system, event) pair."""
        rng = self.rng
        if self._recent and rng.random() < self.duplicate_rate:
            return rng.choice(self._recent)  # an exact redelivery
        kind = rng.choices(self._types, weights=self._cum)[0]
        source = kind.split(".")[0]
        sku = rng.choice(self.skus)
        branch = rng.choice(self.tpl_branches if source == "3pl" else self.branches)
        qty = rng.randint(1, 3)
        if kind in ("erp.on_hand_snapshot", "erp.cycle_count", "3pl.on_hand_snapshot"):
            ev = self._base(kind, source, sku, branch, rng.randint(0, 200))
            ev["as_of"] = rfc3339(self.start + self._n * self.step - rng.uniform(0, 5))
        elif kind in ("erp.goods_receipt", "wms.receipt"):
            ev = self._base(kind, source, sku, branch, rng.randint(5, 50))
        elif kind == "erp.adjustment":
            delta = rng.choice([-2, -1, 1, 2])
            ev = self._base(kind, source, sku, branch, abs(delta))
            ev.update(delta=delta, reason=rng.choice(["shrinkage", "found", "correction"]))
        elif kind == "pos.sale":
            ev = self._base(kind, source, sku, branch, qty)
            self._sales.append((ev["transaction_id"], sku, branch))
        elif kind == "pos.return":
            ev = self._base(kind, source, sku, branch, 1)
            ev["disposition"] = rng.choice(["restock", "restock", "damaged", "quality_control"])
        elif kind == "pos.void" and self._sales:
            txn, sku, branch = self._sales.pop(rng.randrange(len(self._sales)))
            ev = self._base(kind, source, sku, branch, 1)
            ev.update(voided_transaction_id=txn, voided_line=1)
        else:
            if kind == "pos.void":  # nothing to void yet: make it a sale instead
                kind = "pos.sale"
            ev = self._base(kind, source, sku, branch, qty)
        pair = (source, ev)
        self._recent.append(pair)
        if len(self._recent) > 500:
            del self._recent[:250]
        return pair

    def events(self, n: int) -> Iterator[tuple[str, dict]]:
        for _ in range(n):
            yield self.event()

    def encoded(self, n: int) -> Iterator[tuple[str, bytes]]:
        for source, ev in self.events(n):
            yield source, json.dumps(ev, separators=(",", ":")).encode()
