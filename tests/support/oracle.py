"""Replays raw source records through the pure core: the expected ledger without a broker."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pipeline.ledger.apply import ApplyContext, apply
from pipeline.ledger.catalog import Catalog
from pipeline.ledger.decode import decode_event, load_schemas
from pipeline.ledger.events import Rejection
from pipeline.ledger.locations import Locations
from pipeline.ledger.movements import to_movements
from pipeline.ledger.outputs import ConflictingDuplicate
from pipeline.ledger.position import LedgerPosition


@dataclass
class Oracle:
    locations: Locations
    catalog: Catalog = field(default_factory=Catalog)
    positions: dict[str, LedgerPosition] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    conflicts: list[ConflictingDuplicate] = field(default_factory=list)

    def feed(self, records: Iterable[tuple[str, bytes]], now: float = 1_800_000_000.0) -> None:
        schemas = load_schemas()
        for system, raw in records:
            result = decode_event(raw, source_topic_system=system,
                                  known_locations=self.locations, schemas=schemas)
            if isinstance(result, Rejection):
                self.rejections.append(result)
                continue
            for movement in to_movements(result):
                rules = self.locations.rules(movement.branch)
                ctx = ApplyContext(now=now, rules=rules,
                                   mapping=self.catalog.mapping_for(rules, movement.sku))
                self.positions[movement.key], outputs = apply(
                    self.positions.get(movement.key), movement, ctx
                )
                self.conflicts += [o for o in outputs if isinstance(o, ConflictingDuplicate)]


def comparable(position: LedgerPosition) -> dict:
    """What must match between the worker and the oracle: every component, pending entries,
    snapshot times and the version (a version off by one means a movement applied twice)."""
    return {
        "components": position.components(),
        "pending": sorted(position.pending),
        "on_hand_as_of": position.on_hand_as_of,
        "snapshot_as_of": dict(position.snapshot_as_of),
        "version": position.version,
        "marks": sorted(position.marks),
    }


def diff(actual: Mapping[str, LedgerPosition], expected: Mapping[str, LedgerPosition]) -> list:
    problems = []
    for key in sorted(set(actual) | set(expected)):
        a, e = actual.get(key), expected.get(key)
        if a is None or e is None:
            problems.append((key, "missing in worker" if a is None else "unexpected in worker"))
        elif comparable(a) != comparable(e):
            problems.append((key, comparable(a), comparable(e)))
    return problems
