"""Kits/bundles on faust: the ``kits`` agent and table, and the ledger's hook that feeds them.

The ledger agent owns ``sku@branch``; a kit's components live on other keys (other partitions).
So the ledger sends each change of a component's ATS to ``tally.kit-components.v1`` keyed
``kit@branch`` (``KitsHandle.after_apply``), and the ``kits`` agent, the one writer of
``kit@branch`` in the ``kits`` table, keeps the latest ATS per component (by ledger version) and
pushes the kit's ATS to its own Shopify inventory item. The decisions are pure
(``pipeline/ledger/kits.py``); this module only reads, writes and sends.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import Counter

from agents.catalog_follower import CatalogFollower
from agents.guard import RecordGuard
from agents.reading import InOrderReader
from agents.settings import WorkerSettings
from pipeline.ledger.ats import available_to_sell
from pipeline.ledger.kits import (
    ChannelRules,
    ChannelRulesError,
    ComponentUpdate,
    KitContext,
    KitState,
    apply_component,
    component_updates,
    load_channel_rules,
    should_send,
)
from pipeline.ledger.locations import Locations
from pipeline.ledger.outputs import Duplicate, PublishAvailable, ReportUnmapped
from pipeline.ledger.position import LedgerPosition
from pipeline.ledger.rules import LocationRules
from pipeline.observability import metrics as m

log = logging.getLogger("tally.kits")

KIT_COMPONENT_UPDATES = Counter(
    "tally_kit_component_updates_total", "Component ATS records sent to the kits agent."
)
KIT_PUSHES = Counter("tally_kit_pushes_total", "Kit ATS pushes emitted by the kits agent.")


class KitsHandle:
    """What the ledger agent needs: per-SKU thresholds and the component hook."""

    def __init__(self, channel_rules: ChannelRules, topic: faust.TopicT) -> None:
        self.channel_rules = channel_rules
        self.topic = topic

    def min_publish_threshold(self, sku: str, branch: str) -> int | None:
        return self.channel_rules.min_publish_threshold(sku, branch)

    async def after_apply(self, old: LedgerPosition | None, new: LedgerPosition,
                          rules: LocationRules, outputs: list[Any]) -> None:
        """After the ledger applied a movement to ``new``: if the SKU is a kit component and its
        ATS changed (or the movement was a redelivery), tell each of its kits."""
        kits = self.channel_rules.kits_containing(new.sku)
        if not kits:
            return
        new_ats = available_to_sell(new, rules).value
        old_ats = available_to_sell(old, rules).value if old is not None else None
        duplicate = any(isinstance(o, Duplicate) for o in outputs)
        if not should_send(old_ats, new_ats, duplicate=duplicate):
            return
        for update in component_updates(kits, new.sku, new.branch, new_ats, new.version,
                                        time.time()):
            await self.topic.send(key=update.key.encode(), value=update.to_json())
            KIT_COMPONENT_UPDATES.inc()


def register_kits(app: faust.App, settings: WorkerSettings, *, locations: Locations,
                  catalog: CatalogFollower, reader: InOrderReader, guard: RecordGuard,
                  push_topic: faust.TopicT, unmapped_topic: faust.TopicT) -> KitsHandle:
    """Add the kit-components topic, the ``kits`` table and agent and ``/kits/{kit@branch}/``
    to ``app``. Always registered (every worker of the group has the same topology), even when
    no kits are configured."""
    channel_rules = load_channel_rules(settings.kits_file)
    unknown = channel_rules.branches() - set(locations)
    if unknown:
        raise ChannelRulesError(f"{settings.kits_file}: unknown branches {sorted(unknown)}")
    topic = reader.topic(settings.topics.kit_components, partitions=settings.partitions)
    table = app.Table("kits", partitions=settings.partitions, key_type=bytes, value_type=bytes)

    @app.agent(topic)
    async def kits(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if not catalog.ready.is_set():  # hold the event while waiting (see the ledger agent)
                await catalog.ready.wait()
            msg = event.message
            if not await reader.admit(msg):
                continue
            await guard.run("kits", msg, apply_update, msg, event.value)
            reader.done(msg)

    async def apply_update(msg: Any, value: Any) -> None:
        try:
            update = ComponentUpdate.from_json(value)
            rules = locations.rules(update.branch)
        except (ValueError, KeyError, TypeError) as exc:
            await guard.send("bad_movement", f"kit component record: {type(exc).__name__}: "
                             f"{exc}", msg)
            return
        raw = table.get(msg.key)
        state = KitState.from_json(raw) if raw is not None else None
        kit = channel_rules.kits.get(update.kit)
        ctx = KitContext(
            now=time.time(), rules=rules,
            mapping=catalog.catalog.mapping_for(rules, update.kit),
            min_publish_threshold=channel_rules.min_publish_threshold(update.kit,
                                                                      update.branch),
            unmapped_report_interval_s=settings.unmapped_report_interval_s,
        )
        new, outputs = apply_component(state, update, kit, ctx)
        # Written even when unchanged: as in the ledger, rewriting lets the changelog catch
        # up with a local store that a crash left ahead of it.
        table[msg.key] = new.to_json()
        for out in outputs:
            if isinstance(out, PublishAvailable):
                push = out.to_push(emitted_at=time.time(),
                                   correlation_id=f"kit:{update.component}:{update.version}")
                await push_topic.send(key=push.key.encode(), value=push.to_json())
                m.PUSHES_EMITTED.inc()
                KIT_PUSHES.inc()
            elif isinstance(out, ReportUnmapped):
                m.UNMAPPED.inc()
                await unmapped_topic.send(key=msg.key, value=json.dumps({
                    "sku": out.sku, "branch": out.branch, "shop": out.shop,
                    "available": out.available, "at": time.time(), "kit": True,
                }).encode())

    @app.page("/kits/{key}/")
    @app.table_route(table=table, match_info="key")
    async def kit_lookup(web: View, request: Request, key: str) -> Response:
        raw = table.get(key.encode())
        if raw is None:
            return web.json({"error": f"no kit state for {key}"}, status=404)
        state = KitState.from_json(raw)
        return web.json(state.view(channel_rules.kits.get(state.kit)))

    app.tally_kits = table  # type: ignore[attr-defined]
    return KitsHandle(channel_rules, topic)
