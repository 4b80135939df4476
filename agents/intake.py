"""The intake agent: every source topic read as raw bytes (so malformed input never reaches
faust's decoder), validated by the core; rejects are dead-lettered with their reason. Each
movement of a good event is applied right here when the record sits on its ``sku@branch``
key's own ledger partition (``HomePartition``: one hop), else re-keyed to
``tally.movements.v1`` for the ledger agent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import faust
from faust.types import Message

from agents.emitter import Emitter
from agents.ledger import HomePartition, Ledger
from agents.reading import read
from pipeline.ledger.decode import SchemaSet, decode_event
from pipeline.ledger.events import Rejection
from pipeline.ledger.locations import Locations
from pipeline.ledger.movements import to_movements
from pipeline.observability import metrics as m

if TYPE_CHECKING:
    from agents.bootstrap import Worker
    from agents.kits import KitsHandle

IN_PLACE, REKEYED = m.MOVEMENTS_ROUTED.labels("in_place"), m.MOVEMENTS_ROUTED.labels("rekeyed")


class Intake:
    """The intake agent's step for one source record."""

    def __init__(self, emitter: Emitter, locations: Locations, schemas: SchemaSet,
                 system_of_topic: Mapping[str, str],
                 in_place: tuple[HomePartition, Ledger] | None = None) -> None:
        """``in_place``: where movements may be applied as read, and the ledger step that
        applies them (its own ``Ledger``: the ledger agent's runs concurrently)."""
        self.emitter = emitter
        self.locations = locations
        self.schemas = schemas
        self.system_of_topic = system_of_topic
        self.in_place = in_place

    async def take_in(self, msg: Message, value: Any) -> None:
        """Validate one source record: dead-letter it, or send its movements."""
        system = self.system_of_topic.get(msg.topic, "unknown")
        m.EVENTS_RECEIVED.labels(system).inc()
        raw = value if isinstance(value, bytes) else None
        result = (
            decode_event(raw, source_topic_system=system, known_locations=self.locations,
                         schemas=self.schemas)
            if raw is not None
            else Rejection("empty_record", "the record has no value (tombstone)")
        )
        if isinstance(result, Rejection):
            m.EVENTS_REJECTED.labels(system, result.code).inc()
            await self.emitter.dead_letter(result.code, result.detail, msg)
            return
        for movement in to_movements(result, observed_at=msg.timestamp):
            key = movement.key.encode()
            if self.in_place is not None and self.in_place[0].here(key, msg.partition):
                IN_PLACE.inc()
                await self.in_place[1].apply(msg, movement, key)
            else:
                REKEYED.inc()
                await self.emitter.send("movements", key, movement.to_json())


def register(w: Worker, kits: KitsHandle) -> None:
    """The ``intake`` agent on every source topic."""
    settings = w.settings
    in_place = None
    if settings.apply_in_place:
        home = HomePartition(w.app.assignor, w.positions.changelog_topic.get_topic_name(),
                             settings.partitions)
        in_place = (home, Ledger(w.env, w.positions, settings, kits, w.held))
    step = Intake(w.emitter, w.locations, w.schemas, {
        topic: system for system, topic in settings.topics.sources().items()},
        in_place).take_in
    # Applying needs the catalog (as the ledger agent does): wait for it holding a record.
    ready = w.catalog.ready if in_place is not None else None

    @w.app.agent(w.sources, name="agents.worker.intake")  # its name before the split
    async def intake(stream: faust.StreamT[Any]) -> None:
        await read(stream, "intake", step, reader=w.reader, guard=w.guard, ready=ready,
                   processed=w.lag.processed)
