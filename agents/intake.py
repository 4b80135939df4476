"""The intake agent: every source topic read as raw bytes (so malformed input never reaches
faust's decoder), validated by the core; rejects are dead-lettered with their reason, good
events re-keyed to ``tally.movements.v1`` by ``sku@branch``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import faust
from faust.types import Message

from agents.emitter import Emitter
from agents.reading import read
from pipeline.ledger.decode import SchemaSet, decode_event
from pipeline.ledger.events import Rejection
from pipeline.ledger.locations import Locations
from pipeline.ledger.movements import to_movements
from pipeline.observability import metrics as m

if TYPE_CHECKING:
    from agents.bootstrap import Worker


class Intake:
    """The intake agent's step for one source record."""

    def __init__(self, emitter: Emitter, locations: Locations, schemas: SchemaSet,
                 system_of_topic: Mapping[str, str]) -> None:
        self.emitter = emitter
        self.locations = locations
        self.schemas = schemas
        self.system_of_topic = system_of_topic

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
            await self.emitter.send("movements", movement.key.encode(), movement.to_json())


def register(w: Worker) -> None:
    """The ``intake`` agent on every source topic."""
    step = Intake(w.emitter, w.locations, w.schemas, {
        topic: system for system, topic in w.settings.topics.sources().items()}).take_in

    @w.app.agent(w.sources, name="agents.worker.intake")  # its name before the split
    async def intake(stream: faust.StreamT[Any]) -> None:
        await read(stream, "intake", step, reader=w.reader, guard=w.guard,
                   processed=w.lag.processed)
