"""Kits/bundles on faust: the ``kits`` agent and table, and the ledger's hook that feeds them.

The ledger agent owns ``sku@branch``; a kit's components live on other keys (other partitions).
So the ledger sends each change of a component's ATS to ``tally.kit-components.v1`` keyed
``kit@branch`` (``KitsHandle.after_apply``), and the ``kits`` agent, the one writer of
``kit@branch`` in the ``kits`` table, keeps the latest ATS per component (by ledger version) and
pushes the kit's ATS to its own Shopify inventory item. The decisions are pure
(``pipeline/ledger/kits.py``); this module only reads, writes and sends (``handlers``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faust
from faust.types import Message
from faust.web import Request, Response, View
from prometheus_client import Counter

from agents.emitter import Emitter
from agents.handlers import HANDLERS, Applied, Env
from agents.reading import read
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
from pipeline.ledger.outputs import Duplicate, Output
from pipeline.ledger.position import LedgerPosition
from pipeline.ledger.rules import LocationRules

if TYPE_CHECKING:
    from agents.bootstrap import Worker

log = logging.getLogger("tally.kits")

KIT_COMPONENT_UPDATES = Counter(
    "tally_kit_component_updates_total", "Component ATS records sent to the kits agent."
)


def load_rules(kits_file: Path | None, locations: Locations) -> ChannelRules:
    """The kits and per-SKU thresholds of ``kits_file`` (none without one), every branch known."""
    channel_rules = load_channel_rules(kits_file)
    unknown = channel_rules.branches() - set(locations)
    if unknown:
        raise ChannelRulesError(f"{kits_file}: unknown branches {sorted(unknown)}")
    return channel_rules


class KitsHandle:
    """What the ledger agent needs: per-SKU thresholds and the component hook."""

    def __init__(self, channel_rules: ChannelRules, emitter: Emitter) -> None:
        self.channel_rules = channel_rules
        self.emitter = emitter

    def min_publish_threshold(self, sku: str, branch: str) -> int | None:
        return self.channel_rules.min_publish_threshold(sku, branch)

    async def after_apply(self, old: LedgerPosition | None, new: LedgerPosition,
                          rules: LocationRules, outputs: Sequence[Output]) -> None:
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
            await self.emitter.send("kit_components", update.key.encode(), update.to_json())
            KIT_COMPONENT_UPDATES.inc()


class Kits:
    """The kits agent's step for one component record."""

    def __init__(self, env: Env, table: MutableMapping[bytes, bytes],
                 channel_rules: ChannelRules, unmapped_report_interval_s: float) -> None:
        self.env = env
        self.table = table
        self.channel_rules = channel_rules
        self.unmapped_report_interval_s = unmapped_report_interval_s
        self.applied = Applied(kit=True)  # refilled per record (see Applied)

    async def apply_update(self, msg: Message, value: Any) -> None:
        env = self.env
        try:
            update = ComponentUpdate.from_json(value)
            rules = env.locations.rules(update.branch)
        except (ValueError, KeyError, TypeError) as exc:
            await env.emitter.dead_letter("bad_movement", f"kit component record: "
                                          f"{type(exc).__name__}: {exc}", msg)
            return
        key: bytes = msg.key  # type: ignore[assignment]  # raw keys: bytes
        raw = self.table.get(key)
        state = KitState.from_json(raw) if raw is not None else None
        channel_rules = self.channel_rules
        kit = channel_rules.kits.get(update.kit)
        ctx = KitContext(
            now=time.time(), rules=rules,
            mapping=env.catalog.mapping_for(rules, update.kit),
            min_publish_threshold=channel_rules.min_publish_threshold(update.kit,
                                                                      update.branch),
            unmapped_report_interval_s=self.unmapped_report_interval_s,
        )
        new, outputs = apply_component(state, update, kit, ctx)
        # Written even when unchanged: as in the ledger, rewriting lets the changelog catch
        # up with a local store that a crash left ahead of it.
        self.table[key] = new.to_json()
        at = self.applied
        at.msg, at.key, at.correlation_id = msg, key, f"kit:{update.component}:{update.version}"
        for out in outputs:  # PublishAvailable or ReportUnmapped: their handlers go on
            await HANDLERS[type(out)](env, out, at)


def register(w: Worker) -> KitsHandle:
    """The ``kits`` agent on the kit-components topic and ``/kits/{kit@branch}/``. Always
    registered (every worker of the group has the same topology), even when no kits are
    configured."""
    app, table, channel_rules = w.app, w.kits, w.channel_rules
    step = Kits(w.env, table, channel_rules, w.settings.unmapped_report_interval_s).apply_update

    @app.agent(w.kit_components)
    async def kits(stream: faust.StreamT[Any]) -> None:
        # Holds the record while waiting for the catalog (see the ledger agent).
        await read(stream, "kits", step, reader=w.reader, guard=w.guard,
                   ready=w.catalog.ready)

    @app.page("/kits/{key}/")
    @app.table_route(table=table, match_info="key")
    async def kit_lookup(web: View, request: Request, key: str) -> Response:
        raw = table.get(key.encode())
        if raw is None:
            return web.json({"error": f"no kit state for {key}"}, status=404)
        state = KitState.from_json(raw)
        return web.json(state.view(channel_rules.kits.get(state.kit)))

    return KitsHandle(channel_rules, w.emitter)
