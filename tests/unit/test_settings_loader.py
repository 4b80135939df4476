"""``pipeline.settings``: the loader's precedence and conversions, on a settings class of its
own."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.settings import add_flags, load, part, resolve, setting, settings_fields


@dataclass(frozen=True, kw_only=True)
class Inner:
    name: str = setting("inner.v1", "a nested name", env="T_INNER")


@dataclass(frozen=True, kw_only=True)
class Toy:
    address: str = setting("127.0.0.1:1", "where", env=("T_ADDRESS", "ADDRESS"), flag="--address")
    count: int = setting(3, "how many", env="T_COUNT", flag="--count")
    ratio: float = setting(0.5, "how much", env="T_RATIO")
    on: bool = setting(False, "whether", env="T_ON", flag="--on")
    path: Path | None = setting(None, "a file", env="T_PATH")
    words: list[str] = setting(help="comma list", env="T_WORDS", parse=lambda s: s.split(","),
                               fallback="a,b", factory=list)
    kind: str = setting("x", "one of x, y", flag="--kind", choices=("x", "y"))
    inner: Inner = part(Inner)
    tuning: int = 7  # no metadata: not configurable


def test_defaults_when_nothing_is_given() -> None:
    toy, origin = resolve(Toy, environ={})
    assert toy == Toy(words=["a", "b"])  # the fallback text is parsed like a variable
    assert set(origin.values()) == {"default"}


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    file = tmp_path / "s.toml"
    file.write_text('T_COUNT = 10\nT_RATIO = 0.25\nT_INNER = "file.v1"\nT_ON = true\n')
    env = {"T_COUNT": "20", "T_CONFIG_UNUSED": "1", "TALLY_CONFIG_FILE": str(file)}
    toy, origin = resolve(Toy, flags={"count": 30}, environ=env)
    assert (toy.count, origin["count"]) == (30, "flag")
    toy, origin = resolve(Toy, environ=env)
    assert (toy.count, origin["count"]) == (20, "env")
    assert (toy.ratio, toy.inner.name, toy.on) == (0.25, "file.v1", True)
    assert origin["inner.name"] == "file"
    assert load(Toy, environ={}, config_file=file).count == 10
    assert toy.tuning == 7


def test_fallback_variable_and_empty_values() -> None:
    assert load(Toy, environ={"ADDRESS": "b:2"}).address == "b:2"
    assert load(Toy, environ={"ADDRESS": "b:2", "T_ADDRESS": "a:1"}).address == "a:1"
    assert load(Toy, environ={"ADDRESS": "b:2", "T_ADDRESS": ""}).address == "b:2"
    assert load(Toy, environ={"T_PATH": ""}).path is None
    assert load(Toy, environ={"T_PATH": "p"}).path == Path("p")
    assert load(Toy, environ={"T_ON": "yes"}).on is True


def test_flags_from_argparse() -> None:
    parser = add_flags(argparse.ArgumentParser(), Toy)
    toy = load(Toy, flags=parser.parse_args(["--count", "4", "--on", "--kind", "y"]), environ={})
    assert (toy.count, toy.on, toy.kind) == (4, True, "y")
    assert load(Toy, flags=parser.parse_args([]), environ={}) == load(Toy, environ={})
    with pytest.raises(SystemExit):
        parser.parse_args(["--count", "many"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--kind", "z"])
    only = add_flags(argparse.ArgumentParser(), Toy, only={"count"}, config_file=False)
    with pytest.raises(SystemExit):
        only.parse_args(["--address", "x:1"])


def test_bad_values_and_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="T_COUNT"):
        load(Toy, environ={"T_COUNT": "many"})
    nested = tmp_path / "bad.toml"
    nested.write_text("[kafka]\nT_COUNT = 1\n")
    with pytest.raises(ValueError, match="top-level"):
        load(Toy, environ={}, config_file=nested)


def test_every_field_describes_itself() -> None:
    names = [name for name, _, _ in settings_fields(Toy)]
    assert names == ["address", "count", "ratio", "on", "path", "words", "kind", "inner.name"]
    assert all(meta.help for _, _, meta in settings_fields(Toy))
