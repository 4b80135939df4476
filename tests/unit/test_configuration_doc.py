"""docs/configuration.md is generated from the settings' metadata and is current; it lists every
environment variable the code reads, with the code's default.

Variables are found by reading the source (``pipeline/``, ``agents/``) with ``ast``, independently
of the settings' own metadata: names passed to ``os.environ.get``/``os.getenv``/
``os.environ[...]``/``env.get`` (``env = os.environ``), names in ``in os.environ`` tests, the
``env=`` of ``setting(...)`` fields, and any string constant shaped like ``TALLY_*`` (helpers such
as ``_topic("TALLY_TOPIC_ERP", ...)``).
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("pipeline", "agents")
DOC = ROOT / "docs" / "configuration.md"
TALLY_NAME = re.compile(r"TALLY_[A-Z0-9_]*[A-Z0-9]")
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*[A-Z0-9]")
_ENVIRON_RECEIVERS = {"os.environ", "environ", "env", "self.env"}
_DOC_ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*(.*?)\s*\|", re.M)

# Documented now, read by code that has not landed yet. Remove a name when its code merges; the
# test below then requires the code to read it. (Empty: the webhook intake has landed.)
PENDING: set[str] = set()


@dataclass
class EnvReads:
    names: dict[str, set[str]] = field(default_factory=dict)  # name -> files
    defaults: dict[str, set[str]] = field(default_factory=dict)  # name -> constant defaults

    def add(self, name: str, where: str, default: object = None) -> None:
        self.names.setdefault(name, set()).add(where)
        if isinstance(default, float) and default.is_integer():
            default = int(default)  # documented as an operator writes it: 300, not 300.0
        if isinstance(default, str | int | float) and not isinstance(default, bool):
            self.defaults.setdefault(name, set()).add(str(default))


def _const_str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _setting_env(node: ast.Call, reads: EnvReads, where: str) -> bool:
    """``setting(default, ..., env="NAME" | ("NAME", "FALLBACK"))``: the names it reads; the
    default (first argument) belongs to the first name."""
    env = next((k.value for k in node.keywords if k.arg == "env"), None)
    if env is None:
        return False
    names = [_const_str(e) for e in env.elts] if isinstance(env, ast.Tuple) else [_const_str(env)]
    default = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
    for i, name in enumerate(names):
        if name and ENV_NAME.fullmatch(name):
            reads.add(name, where, default if i == 0 else None)
    return True


def _scan_file(path: Path, reads: EnvReads, root: Path = ROOT) -> None:
    where = str(path.relative_to(root))
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=where)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _setting_env(node, reads, where):
            continue
        if isinstance(node, ast.Call) and node.args:
            name = _const_str(node.args[0])
            if name is None or not ENV_NAME.fullmatch(name):
                continue
            func = node.func
            default = node.args[1].value if (
                len(node.args) > 1 and isinstance(node.args[1], ast.Constant)) else None
            environ_get = (isinstance(func, ast.Attribute) and func.attr in {"get", "pop"}
                           and ast.unparse(func.value) in _ENVIRON_RECEIVERS)
            getenv = isinstance(func, ast.Attribute) and ast.unparse(func) == "os.getenv"
            helper = isinstance(func, ast.Name) and TALLY_NAME.fullmatch(name) is not None
            if environ_get or getenv or helper:
                reads.add(name, where, default)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in _ENVIRON_RECEIVERS:
            name = _const_str(node.slice)
            if name and ENV_NAME.fullmatch(name):
                reads.add(name, where)
        elif (isinstance(node, ast.Compare) and len(node.ops) == 1
              and isinstance(node.ops[0], ast.In | ast.NotIn)
              and ast.unparse(node.comparators[0]) in _ENVIRON_RECEIVERS):
            name = _const_str(node.left)
            if name and ENV_NAME.fullmatch(name):
                reads.add(name, where)
        else:
            name = _const_str(node)
            if name and TALLY_NAME.fullmatch(name) and name not in reads.names:
                reads.add(name, where)


@functools.cache  # the source does not change during a run; the parametrized tests share it
def env_reads() -> EnvReads:
    """Every environment variable read by the code in ``pipeline/`` and ``agents/``."""
    reads = EnvReads()
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            _scan_file(path, reads)
    return reads


def documented() -> dict[str, str]:
    """Variable name → its default cell, from the tables of docs/configuration.md."""
    return {m.group(1): m.group(2) for m in _DOC_ROW.finditer(DOC.read_text(encoding="utf-8"))}


def test_scanner_finds_the_variables_we_know_are_read() -> None:
    reads = env_reads()
    for name in ("TALLY_WEB_PORT", "TALLY_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP", "TALLY_TOPIC_DLQ",
                 "TALLY_LOG_LEVEL", "TALLY_SCHEMAS_DIR", "XDG_CACHE_HOME"):
        assert name in reads.names, name
    assert "6066" in reads.defaults["TALLY_WEB_PORT"]
    assert "tally.dlq.v1" in reads.defaults["TALLY_TOPIC_DLQ"]


def test_scanner_sees_every_read_form(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "import os\n"
        "env = os.environ\n"
        "a = os.environ.get('TALLY_A', '1')\n"
        "b = os.getenv('OTHER_B')\n"
        "c = os.environ['TALLY_C']\n"
        "d = 'TALLY_D' in os.environ\n"
        "e = env.get('TALLY_E', 2.5)\n"
        "f = _f('TALLY_F', 3)\n"
        "NAME = 'TALLY_G'\n"
        "doc = 'see TALLY_H in the docs'\n"
    )
    reads = EnvReads()
    _scan_file(source, reads, root=tmp_path)
    assert set(reads.names) == {"TALLY_A", "OTHER_B", "TALLY_C", "TALLY_D", "TALLY_E", "TALLY_F",
                                "TALLY_G"}
    assert reads.defaults == {"TALLY_A": {"1"}, "TALLY_E": {"2.5"}, "TALLY_F": {"3"}}


def test_scanner_sees_setting_fields(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "a: int = setting(8, 'meaning', env='TALLY_A')\n"
        "b: str = setting('x:1', 'meaning', env=('TALLY_B', 'OTHER_B'), flag='--b')\n"
        "c: float = setting(300.0, 'meaning', env='TALLY_C')\n"
    )
    reads = EnvReads()
    _scan_file(source, reads, root=tmp_path)
    assert set(reads.names) == {"TALLY_A", "TALLY_B", "OTHER_B", "TALLY_C"}
    assert reads.defaults == {"TALLY_A": {"8"}, "TALLY_B": {"x:1"}, "TALLY_C": {"300"}}


def test_the_doc_is_generated_from_the_settings_and_current() -> None:
    from pipeline.settings.docs import generate

    assert DOC.read_text(encoding="utf-8") == generate(), (
        "docs/configuration.md is not what the settings say: run `tally config docs` (and edit "
        "pipeline/settings/doc_template.md, not the generated file, for prose)")


def test_a_variable_shared_by_services_has_one_default() -> None:
    from pipeline.settings.docs import declared

    differing = {name: uses for name, uses in declared().items()
                 if len({default for _, default in uses}) > 1}
    assert differing == {}


def test_every_variable_read_by_the_code_is_documented() -> None:
    reads, docs = env_reads(), documented()
    missing = {name: sorted(files) for name, files in reads.names.items() if name not in docs}
    assert missing == {}, f"add these to docs/configuration.md: {missing}"


def test_every_documented_variable_is_read_by_the_code() -> None:
    reads, docs = env_reads(), documented()
    stale = sorted(n for n in docs if ENV_NAME.fullmatch(n) and "_" in n
                   and n not in reads.names and n not in PENDING)
    assert stale == [], f"documented but no code reads them: {stale}"


@pytest.mark.parametrize("name", sorted(env_reads().defaults))
def test_documented_default_matches_the_code(name: str) -> None:
    docs = documented()
    assert name in docs
    for default in env_reads().defaults[name]:
        assert f"`{default}`" in docs[name], (
            f"{name}: the code's default {default!r} is not in the doc's cell {docs[name]!r}")


def test_every_simulator_flag_is_documented() -> None:
    from pipeline.shopify_sim.cli import build_parser

    text = DOC.read_text(encoding="utf-8")
    flags = [s for a in build_parser()._actions for s in a.option_strings
             if s.startswith("--") and s != "--help"]
    assert flags
    assert [f for f in flags if f"| `{f}` |" not in text] == []
