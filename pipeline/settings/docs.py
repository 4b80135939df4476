"""``tally config docs|show``: docs/configuration.md generated from the settings' metadata, and
the settings a service would start with, with where each value came from.

The document is ``doc_template.md`` (the prose) with each ``<!-- settings: NAME -->`` marker
replaced by the table of the settings classes ``TABLES[NAME]`` lists. A variable appears once, in
the first table that lists it (shared parts are listed first).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.settings import WorkerSettings
from pipeline.delta_pull.config import DeltaPullSettings
from pipeline.infra.local_kafka import LocalKafkaSettings
from pipeline.ledger.decode import SchemaSettings
from pipeline.operations.config import OperatorSettings
from pipeline.reconcile.config import ReconcileSettings
from pipeline.settings import default_text, resolve, settings_fields
from pipeline.settings.parts import KafkaSettings, LedgerSettings, LoggingSettings
from pipeline.shopify_sim.cli import SimFlags
from pipeline.sink.config import SinkSettings
from pipeline.webhooks.config import WebhookSettings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).with_name("doc_template.md")
DOC = ROOT / "docs" / "configuration.md"
MARKER = "<!-- settings: "

# Marker name → the settings classes whose variables its table lists.
TABLES: dict[str, tuple[type, ...]] = {
    "kafka": (KafkaSettings,),
    "worker": (LedgerSettings, WorkerSettings, SchemaSettings),
    "sink": (SinkSettings,),
    "tools": (LoggingSettings, OperatorSettings),
    "local_kafka": (LocalKafkaSettings,),
    "simulator": (SimFlags,),
    "reconcile": (ReconcileSettings, DeltaPullSettings),
    "webhooks": (WebhookSettings,),
}
# ``tally config show SERVICE``: each service's settings class.
SERVICES: dict[str, type] = {
    "worker": WorkerSettings, "sink": SinkSettings, "webhooks": WebhookSettings,
    "reconcile": ReconcileSettings, "delta-pull": DeltaPullSettings,
    "tools": OperatorSettings, "kafka": LocalKafkaSettings,
}


@dataclass(frozen=True)
class Row:
    """One documented setting: a variable (or a flag, for flag-only settings)."""

    name: str
    default: str | None
    meaning: str


def rows(cls: type) -> Iterator[Row]:
    """The rows of one settings class: each variable (and its fallbacks), or its flag."""
    for _, f, meta in settings_fields(cls):
        default = default_text(f, meta)
        if not meta.env:
            if meta.flag:
                yield Row(meta.flag, default, meta.help)
            continue
        flag = f" (flag `{meta.flag}`)" if meta.flag else ""
        yield Row(meta.env[0], default, meta.help + flag)
        for other in meta.env[1:]:
            yield Row(other, None, f"fallback for `{meta.env[0]}` when that is unset")


def _cell(default: str | None) -> str:
    if default is None:
        return "—"
    return default if default.startswith("—") else f"`{default}`"


# The shared parts: their variables are documented where TABLES lists the part itself, not
# under every service that inherits it.
PARTS: tuple[type, ...] = (KafkaSettings, LedgerSettings, LoggingSettings)


def table(classes: Sequence[type], seen: set[str]) -> str:
    """A Markdown table of the classes' settings not in ``seen`` (which it extends)."""
    flags_only = all(not meta.env for cls in classes for _, _, meta in settings_fields(cls))
    head = "| flag | default | meaning |" if flags_only else "| variable | default | meaning |"
    lines = [head, "| --- | --- | --- |"]
    shared = {row.name for part in PARTS for row in rows(part)}
    for cls in classes:
        for row in rows(cls):
            if row.name in seen or (cls not in PARTS and row.name in shared):
                continue
            seen.add(row.name)
            lines.append(f"| `{row.name}` | {_cell(row.default)} | {row.meaning} |")
    return "\n".join(lines)


def generate(template: str | None = None) -> str:
    """docs/configuration.md as the code describes it."""
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    seen: set[str] = set()
    out = []
    for line in text.splitlines():
        if line.startswith(MARKER):
            name = line.removeprefix(MARKER).removesuffix(" -->").strip()
            out.append(table(TABLES[name], seen))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def declared() -> dict[str, list[tuple[str, str | None]]]:
    """Every variable of every settings class → [(class, default text)], to check that a
    variable shared by several services means the same everywhere."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    for classes in TABLES.values():
        for cls in classes:
            for _, f, meta in settings_fields(cls):
                for name in meta.env[:1]:
                    out.setdefault(name, []).append((cls.__name__, default_text(f, meta)))
    return out


def show(cls: type) -> dict[str, Any]:
    """The settings ``cls`` would load now: each field's value and origin."""
    settings: Any
    settings, origins = resolve(cls)
    out: dict[str, Any] = {}
    for name, _, meta in settings_fields(cls):
        value: Any = settings
        for part in name.split("."):
            value = getattr(value, part)
        if isinstance(value, list):  # parsed files (shops): say how many, never their secrets
            value = f"{len(value)} entries"
        out[name] = {"value": str(value) if isinstance(value, Path) else value,
                     "from": origins.get(name, "default"),
                     "variable": meta.env[0] if meta.env else None}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``tally config docs [--check] [--output FILE]`` / ``tally config show SERVICE``."""
    parser = argparse.ArgumentParser(prog="tally config", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    docs = sub.add_parser("docs", help="write docs/configuration.md from the settings")
    docs.add_argument("--output", type=Path, default=DOC, help="where to write ('-': stdout)")
    docs.add_argument("--check", action="store_true",
                      help="only say whether the file is current (exit 1 when not)")
    show_p = sub.add_parser("show", help="a service's settings now, and where each came from")
    show_p.add_argument("service", choices=sorted(SERVICES))
    args = parser.parse_args(list(argv or []))
    if args.action == "show":
        print(json.dumps(show(SERVICES[args.service]), indent=2, default=str))
        return 0
    text = generate()
    if str(args.output) == "-":
        sys.stdout.write(text)
        return 0
    if args.check:
        current = args.output.exists() and args.output.read_text(encoding="utf-8") == text
        print(f"{args.output}: {'current' if current else 'out of date: run tally config docs'}")
        return 0 if current else 1
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
