"""One configuration mechanism for every Tally service and tool.

Settings are frozen dataclasses whose fields carry their own description in metadata
(``setting(...)``: environment variable(s), default, one-line meaning, optional flag). A service
builds its settings ONCE, in ``main()``, with ``load(cls, flags=args)``; each field takes the first
value found in this order:

1. its command-line flag (``add_flags`` declares the flags of a settings class),
2. its environment variable (the first non-empty one when a field has fallbacks),
3. the optional TOML file named by ``--config FILE`` or ``TALLY_CONFIG_FILE``, whose keys are the
   environment variable names (``TALLY_KAFKA_BOOTSTRAP = "kafka:9092"``), so one file can serve
   every service,
4. its default.

Constructing a settings class directly (``WorkerSettings()``, ``SinkSettings(bootstrap=...)``)
gives the defaults and whatever is passed: nothing is read from the environment then. Shared
parts (Kafka, Logging, web fields) live in ``pipeline.settings.parts``; docs/configuration.md is
generated from the metadata by ``tally config docs`` (``pipeline.settings.docs``).
"""

from __future__ import annotations

import argparse
import os
import tomllib
import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

CONFIG_FILE_ENV = "TALLY_CONFIG_FILE"
_META = "tally.setting"
_PART = "tally.part"

T = TypeVar("T")


@dataclass(frozen=True)
class Meta:
    """What a settings field says about itself (the source of docs/configuration.md)."""

    env: tuple[str, ...]  # the variable, then fallbacks read when it is unset
    help: str  # one line: what the setting means
    flag: str | None = None
    parse: Callable[[str], Any] | None = None  # text → value, when the type alone cannot say
    choices: tuple[str, ...] | None = None  # the flag's allowed values
    fallback: str | None = None  # text the loader parses when no source gives a value
    doc_default: str | None = None  # the default as the docs show it, when not the value's text


def setting(default: Any = None, help: str = "", *, env: str | tuple[str, ...] = (),
            flag: str | None = None, parse: Callable[[str], Any] | None = None,
            choices: tuple[str, ...] | None = None, fallback: str | None = None,
            doc_default: str | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A settings field: its default (or ``factory``), meaning, variable(s) and flag."""
    names = (env,) if isinstance(env, str) else tuple(env)
    meta = {_META: Meta(names, help, flag, parse, choices, fallback, doc_default)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def part(cls: Callable[[], Any]) -> Any:
    """A nested settings object (e.g. ``Topics``), loaded by the same rules, field by field."""
    return field(default_factory=cls, metadata={_PART: True})


def meta_of(f: Field[Any]) -> Meta | None:
    value = f.metadata.get(_META)
    return value if isinstance(value, Meta) else None


def is_part(f: Field[Any]) -> bool:
    return bool(f.metadata.get(_PART))


def settings_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, Field[Any], Meta]]:
    """Every described field of ``cls`` and its parts: (dotted name, field, metadata)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if is_part(f):
            yield from settings_fields(hints[f.name], f"{prefix}{f.name}.")
        elif (meta := meta_of(f)) is not None:
            yield f"{prefix}{f.name}", f, meta


def default_text(f: Field[Any], meta: Meta) -> str | None:
    """The default as text (None: no default), as docs and ``--help`` show it."""
    if meta.doc_default is not None:
        return meta.doc_default
    if meta.fallback is not None:
        return meta.fallback
    if f.default is MISSING or f.default is None:
        return None
    if isinstance(f.default, bool):
        return "true" if f.default else "false"
    if isinstance(f.default, float) and f.default.is_integer():
        return str(int(f.default))  # 300, not 300.0: what an operator would write
    return str(f.default)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A settings file: TOML whose top-level keys are environment variable names."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    bad = [k for k, v in data.items() if isinstance(v, dict | list)]
    if bad:
        raise ValueError(f"{path}: settings are top-level KEY = value pairs; not {bad}")
    return data


def add_flags(parser: argparse.ArgumentParser, cls: type, only: Collection[str] | None = None,
              *, config_file: bool = True) -> argparse.ArgumentParser:
    """Declare ``--config`` (unless ``config_file`` is False: settings without variables) and
    the flags of ``cls``'s fields (``only`` these field names, when a command needs a few); each
    flag defaults to None, i.e. not given."""
    if config_file:
        parser.add_argument(
            "--config", metavar="FILE",
            help=f"TOML settings file, keys are variable names (${CONFIG_FILE_ENV})")
    hints = _hints_of(cls)
    for name, f, meta in settings_fields(cls):
        if meta.flag is None or (only is not None and name not in only):
            continue
        where = ", ".join(f"${e}" for e in meta.env)
        default = default_text(f, meta)
        shown = f"default {default}" if default and default != "—" else None
        text = "; ".join(x for x in (where, shown) if x)
        helptext = f"{meta.help} ({text})" if text else meta.help
        base = _base_type(hints[name])
        if base is bool:
            parser.add_argument(meta.flag, dest=name, action="store_true", default=None,
                                help=helptext)
        else:  # numbers checked by argparse (a usage error); the rest converted by load()
            checked: Callable[[str], Any] = (
                base if base in (int, float) and not meta.parse else str)
            parser.add_argument(meta.flag, dest=name, default=None, help=helptext,
                                type=checked, choices=meta.choices,
                                metavar=None if meta.choices else
                                meta.flag.lstrip("-").upper().replace("-", "_"))
    return parser


def load(cls: type[T], *, flags: argparse.Namespace | Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None, config_file: str | Path | None = None) -> T:
    """Build ``cls`` from flags > environment > settings file > defaults (see module doc)."""
    return resolve(cls, flags=flags, environ=environ, config_file=config_file)[0]


def resolve(cls: type[T], *, flags: argparse.Namespace | Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None, config_file: str | Path | None = None,
            ) -> tuple[T, dict[str, str]]:
    """``load``, plus where each field's value came from: flag, env, file or default."""
    env = os.environ if environ is None else environ
    given = dict(vars(flags) if isinstance(flags, argparse.Namespace) else (flags or {}))
    path = config_file or given.get("config") or env.get(CONFIG_FILE_ENV) or None
    file = read_config_file(path) if path else {}
    origins: dict[str, str] = {}
    return _build(cls, given, env, file, "", origins), origins


def _build(cls: type[T], flags: Mapping[str, Any], env: Mapping[str, str],
           file: Mapping[str, Any], prefix: str, origins: dict[str, str]) -> T:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        name = f"{prefix}{f.name}"
        if is_part(f):
            values[f.name] = _build(hints[f.name], flags, env, file, f"{name}.", origins)
            continue
        meta = meta_of(f)
        if meta is None:  # internal tuning, not configurable: its default
            continue
        flag = flags.get(name)
        if flag is not None:
            values[f.name] = _convert(flag, hints[f.name], meta) if isinstance(flag, str) else flag
            origins[name] = "flag"
            continue
        raw, origin = _first(meta.env, env), "env"
        if raw is None:
            raw, origin = _first(meta.env, file), "file"
        if raw is None and meta.fallback is not None:
            raw, origin = meta.fallback, "default"
        if raw is None:
            origins[name] = "default"
            continue
        try:
            values[f.name] = _convert(raw, hints[f.name], meta)
        except ValueError as exc:
            raise ValueError(f"{'/'.join(meta.env) or name}={raw!r}: {exc}") from exc
        origins[name] = origin
    return cls(**values)


def _first(names: tuple[str, ...], source: Mapping[str, Any]) -> Any:
    # An empty variable counts as unset (TALLY_KAFKA_BOOTSTRAP= falls back to KAFKA_BOOTSTRAP).
    for name in names:
        value = source.get(name)
        if value is not None and value != "":
            return value
    return None


def _base_type(tp: Any) -> Any:
    """``X | None`` → X."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _convert(raw: Any, tp: Any, meta: Meta) -> Any:
    if meta.parse is not None:
        return meta.parse(str(raw))
    base = _base_type(tp)
    if base is bool:
        return raw if isinstance(raw, bool) else str(raw).strip().lower() in {
            "1", "true", "yes", "on"}
    if base in (int, float, str, Path):
        return base(raw)
    raise TypeError(f"no conversion to {tp!r}: give the setting a parse function")


def _hints_of(cls: type) -> dict[str, Any]:
    """Dotted field name → type hint, parts included."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if is_part(f):
            out.update({f"{f.name}.{k}": v for k, v in _hints_of(hints[f.name]).items()})
        else:
            out[f.name] = hints[f.name]
    return out
