"""Kits/bundles and per-SKU channel rules (pure: no clock, no I/O besides reading the file).

A kit has no stock of its own: its ATS at a branch is the minimum over its components of
``component ATS // quantity per kit`` (a component not yet seen counts as 0). The ledger is one
writer per ``sku@branch`` and a kit's components live on other keys, so the ledger sends each
change of a component's ATS as a ``ComponentUpdate`` keyed ``kit@branch`` (one per kit the SKU
belongs to) to ``tally.kit-components.v1``; the ``kits`` agent is the one writer of ``kit@branch``,
keeps the latest ATS per component in a ``KitState`` (ignoring lower ledger versions), and
``apply_component`` decides what to publish for the kit's own inventory item.

The same file carries per-SKU minimum publish thresholds (``[[sku]]``), optionally per branch,
overriding the branch's ``min_publish_threshold``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeline.ledger.identifiers import sku_problem
from pipeline.ledger.outputs import Output, PublishAvailable, ReportUnmapped
from pipeline.ledger.rules import LocationRules, ShopifyMapping, publish_value


class ChannelRulesError(ValueError):
    """The kits/channel-rules file is unreadable or invalid."""


@dataclass(frozen=True, slots=True)
class KitComponent:
    sku: str
    quantity: int  # units of this component in one kit, >= 1


@dataclass(frozen=True, slots=True)
class Kit:
    sku: str
    components: tuple[KitComponent, ...]


@dataclass(frozen=True)
class ChannelRules:
    """Kits by SKU, the kits each component belongs to, and per-SKU publish thresholds."""

    kits: Mapping[str, Kit] = field(default_factory=lambda: MappingProxyType({}))
    # (sku, branch or None for every branch) → minimum publish threshold
    thresholds: Mapping[tuple[str, str | None], int] = field(
        default_factory=lambda: MappingProxyType({}))
    kits_of: Mapping[str, tuple[Kit, ...]] = field(init=False)

    def __post_init__(self) -> None:
        index: dict[str, list[Kit]] = {}
        for kit in self.kits.values():
            for c in kit.components:
                index.setdefault(c.sku, []).append(kit)
        object.__setattr__(self, "kits_of", MappingProxyType(
            {sku: tuple(kits) for sku, kits in index.items()}))

    def kits_containing(self, sku: str) -> tuple[Kit, ...]:
        return self.kits_of.get(sku, ())

    def min_publish_threshold(self, sku: str, branch: str) -> int | None:
        """The SKU's own threshold at this branch (per-branch entry first), or None."""
        if not self.thresholds:
            return None
        value = self.thresholds.get((sku, branch))
        return value if value is not None else self.thresholds.get((sku, None))

    def branches(self) -> set[str]:
        return {b for _, b in self.thresholds if b is not None}


def load_channel_rules(path: str | Path | None) -> ChannelRules:
    """Read the kits/channel-rules TOML file; ``None`` → no kits, no per-SKU thresholds."""
    if path is None:
        return ChannelRules()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ChannelRulesError(f"{path}: {exc}") from exc
    return parse_channel_rules(data, origin=str(path))


def parse_channel_rules(data: Mapping[str, Any], *, origin: str = "<kits>") -> ChannelRules:
    """``[[kit]] sku, components = [{sku, quantity}]`` and
    ``[[sku]] sku, min_publish_threshold[, branch]``. Reports every problem at once."""
    problems: list[str] = []
    unknown = set(data) - {"kit", "sku"}
    if unknown:
        problems.append(f"unknown top-level keys {sorted(unknown)}")
    kits: dict[str, Kit] = {}
    for i, entry in enumerate(_tables(data.get("kit", []), "kit", problems)):
        where = f"kit #{i + 1}"
        sku: Any = entry.get("sku")
        if sku_issue := sku_problem(sku):
            problems.append(f"{where}: {sku_issue}")
            continue
        where = f"kit {sku}"
        extra = set(entry) - {"sku", "components", "name"}
        if extra:
            problems.append(f"{where}: unknown keys {sorted(extra)}")
        if sku in kits:
            problems.append(f"{where}: defined twice")
            continue
        components: list[KitComponent] = []
        for c in _tables(entry.get("components", []), f"{where} components", problems):
            csku: Any = c.get("sku")
            qty = c.get("quantity", 1)
            if csku_issue := sku_problem(csku, "component sku"):
                problems.append(f"{where}: {csku_issue}")
            elif not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
                problems.append(f"{where}: quantity of {csku} must be an integer >= 1")
            elif csku == sku:
                problems.append(f"{where}: a kit cannot contain itself")
            elif any(k.sku == csku for k in components):
                problems.append(f"{where}: component {csku} listed twice")
            else:
                components.append(KitComponent(csku, qty))
        if not components:
            problems.append(f"{where}: needs at least one component")
            continue
        kits[sku] = Kit(sku, tuple(components))
    for kit in kits.values():
        nested = [c.sku for c in kit.components if c.sku in kits]
        if nested:
            problems.append(f"kit {kit.sku}: components {nested} are kits (nesting unsupported)")

    thresholds: dict[tuple[str, str | None], int] = {}
    for i, entry in enumerate(_tables(data.get("sku", []), "sku", problems)):
        sku, branch = entry.get("sku"), entry.get("branch")
        value = entry.get("min_publish_threshold")
        where = f"sku #{i + 1}"
        if set(entry) - {"sku", "branch", "min_publish_threshold"}:
            problems.append(f"{where}: unknown keys "
                            f"{sorted(set(entry) - {'sku', 'branch', 'min_publish_threshold'})}")
        if sku_issue := sku_problem(sku):
            problems.append(f"{where}: {sku_issue}")
        elif branch is not None and not isinstance(branch, str):
            problems.append(f"{where}: branch must be a branch id")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"{where}: min_publish_threshold must be an integer >= 0")
        elif (sku, branch) in thresholds:
            problems.append(f"{where}: {sku} at {branch or 'every branch'} defined twice")
        else:
            thresholds[(sku, branch)] = value
    if problems:
        raise ChannelRulesError(f"{origin}: " + "; ".join(problems))
    return ChannelRules(MappingProxyType(kits), MappingProxyType(thresholds))


def _tables(value: Any, name: str, problems: list[str]) -> Iterable[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        problems.append(f"{name}: expected an array of tables")
        return []
    return value


def kit_ats(kit: Kit, component_ats: Mapping[str, int]) -> int:
    """min over components of ``ATS // quantity``; a missing component, or a negative ATS,
    counts as 0."""
    return min(max(0, component_ats.get(c.sku, 0)) // c.quantity for c in kit.components)


# -- the ledger side: what to send when a component's position changed ----------------------


@dataclass(frozen=True, slots=True)
class ComponentUpdate:
    """A component's ATS at a branch, for one kit (record of ``tally.kit-components.v1``)."""

    kit: str
    branch: str
    component: str
    ats: int
    version: int  # the component position's ledger version: higher wins
    at: float  # when the ledger applied the change (epoch seconds)

    @property
    def key(self) -> str:
        return f"{self.kit}@{self.branch}"

    def to_json(self) -> bytes:
        return json.dumps({"kit": self.kit, "branch": self.branch, "component": self.component,
                           "ats": self.ats, "version": self.version, "at": self.at},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> ComponentUpdate:
        d = json.loads(raw)
        return cls(str(d["kit"]), str(d["branch"]), str(d["component"]), int(d["ats"]),
                   int(d["version"]), float(d["at"]))


def component_updates(kits: Iterable[Kit], sku: str, branch: str, ats: int, version: int,
                      at: float) -> list[ComponentUpdate]:
    """One record per kit ``sku`` belongs to."""
    return [ComponentUpdate(k.sku, branch, sku, max(0, ats), version, at) for k in kits]


def should_send(old_ats: int | None, new_ats: int, *, duplicate: bool) -> bool:
    """Send when the component's ATS changed (no position before = 0), and again after a
    redelivered movement: the first send may have been lost in a crash; the kits agent treats an
    equal version as a repeat."""
    return duplicate or (old_ats or 0) != new_ats


# -- the kits agent side: one writer of kit@branch --------------------------------------------


@dataclass(frozen=True)
class KitState:
    """The ``kits`` table value for ``kit@branch``."""

    kit: str
    branch: str
    components: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # sku → (ats, ver)
    version: int = 0  # bumped on every accepted component update; the push's ledger_version
    last_published: int | None = None
    unmapped_reported_at: float | None = None

    def component_ats(self) -> dict[str, int]:
        return {sku: ats for sku, (ats, _) in self.components.items()}

    def to_json(self) -> bytes:
        return json.dumps({
            "kit": self.kit, "branch": self.branch,
            "c": {sku: [ats, ver] for sku, (ats, ver) in sorted(self.components.items())},
            "v": self.version, "p": self.last_published, "u": self.unmapped_reported_at,
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> KitState:
        d = json.loads(raw)
        return cls(d["kit"], d["branch"], {s: (int(a), int(v)) for s, (a, v) in d["c"].items()},
                   int(d["v"]), d["p"], d["u"])

    def view(self, kit: Kit | None) -> dict[str, Any]:
        """The operator's view: components, kit ATS, versions."""
        return {
            "kit": self.kit, "branch": self.branch,
            "components": {s: {"ats": a, "version": v} for s, (a, v) in self.components.items()},
            "quantities": {c.sku: c.quantity for c in kit.components} if kit else None,
            "available_to_sell": kit_ats(kit, self.component_ats()) if kit else None,
            "version": self.version, "last_published": self.last_published,
        }


@dataclass(frozen=True, slots=True)
class KitContext:
    now: float
    rules: LocationRules
    mapping: ShopifyMapping | None  # the kit SKU's own inventory item at this branch
    min_publish_threshold: int | None = None  # the kit SKU's per-SKU override
    unmapped_report_interval_s: float = 3600.0


def apply_component(state: KitState | None, update: ComponentUpdate, kit: Kit | None,
                    ctx: KitContext) -> tuple[KitState, list[Output]]:
    """Record one component's ATS and decide the kit's push.

    A lower version than the one held is ignored; an equal one is a repeat: the current value is
    published again (the sink drops it unless the first push was lost). A component that is not
    (or no longer) in the kit definition is ignored.
    """
    st = state if state is not None else KitState(update.kit, update.branch)
    if kit is None or all(c.sku != update.component for c in kit.components):
        return st, []
    held = st.components.get(update.component)
    if held is not None and update.version < held[1]:
        return st, []
    if held is not None and update.version == held[1]:
        return st, _publish(st, kit, ctx, update.at, repeat=True)[1]
    components = {**st.components, update.component: (max(0, update.ats), update.version)}
    new = replace(st, components=components, version=st.version + 1)
    return _publish(new, kit, ctx, update.at, repeat=False)


def _publish(st: KitState, kit: Kit, ctx: KitContext, observed: float, *,
             repeat: bool) -> tuple[KitState, list[Output]]:
    rules = ctx.rules
    if not (rules.fulfills_online and rules.on_shopify):
        return st, []
    ats = kit_ats(kit, st.component_ats())
    if ctx.mapping is None:
        last = st.unmapped_reported_at
        if repeat or (last is not None and ctx.now - last < ctx.unmapped_report_interval_s):
            return st, []
        return replace(st, unmapped_reported_at=ctx.now), [
            ReportUnmapped(kit.sku, st.branch, rules.shop or "", ats)]
    threshold = ctx.min_publish_threshold
    value = publish_value(ats, rules.min_publish_threshold if threshold is None else threshold)
    if repeat:
        value = st.last_published if st.last_published is not None else -1
        if value < 0:
            return st, []
    elif value == st.last_published:
        return st, []
    breakdown = {f"component:{c.sku}": st.components.get(c.sku, (0, 0))[0]
                 for c in kit.components}
    out = PublishAvailable(
        sku=kit.sku, branch=st.branch, shop=ctx.mapping.shop,
        inventory_item_id=ctx.mapping.inventory_item_id, location_id=ctx.mapping.location_id,
        available=value, ledger_version=st.version, oldest_event_at=observed,
        breakdown=breakdown | {"kit": ats},
    )
    return replace(st, last_published=value), [out]
