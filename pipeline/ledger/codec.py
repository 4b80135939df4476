"""JSON on the hot path: the records Tally writes and reads itself (movements, positions,
pushes, history) and the parse of source records.

``orjson`` (C, ~15x faster than ``json.dumps`` and ~5x faster than ``json.loads`` on these small
records), with the standard library wherever the two could differ:

* Reading: a document with integers of 19 digits or more (orjson turns integers past 64 bits
  into floats; Python keeps them exact), unless orjson's parse is a flat object without floats
  (then nothing was widened), and anything orjson refuses (a lone surrogate escape, nesting past
  1,024, 1e999) are parsed by ``json`` as before, so every document reads to the same Python
  values.
* Writing: the same compact JSON document; non-ASCII text is written as UTF-8 instead of
  ``\\uXXXX`` escapes (both read back the same with either library, so records written before
  and after an upgrade read alike). What orjson cannot write (an integer past 64 bits, a
  non-string key) is written by ``json``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_COMPACT = json.JSONEncoder(separators=(",", ":"))
_SORTED = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
_LONG_NUMBER = re.compile(rb"[0-9]{19}")  # orjson's integers end at 64 bits


def dumps(obj: Any) -> bytes:
    """Compact JSON (what ``json.dumps(obj, separators=(",", ":"))`` writes)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return _COMPACT.encode(obj).encode()


def dumps_sorted(obj: Any) -> bytes:
    """Compact JSON with sorted keys (``json.dumps(..., sort_keys=True)``)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _SORTED.encode(obj).encode()


_MISS = object()


_FLAT = frozenset({str, int, bool, type(None)})


def _fast(data: bytes) -> Any:
    """orjson's parse of ``data`` when it is the one ``json`` gives, else ``_MISS``."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _MISS
    # An integer orjson cannot hold comes back a float: an object of strings, integers,
    # booleans and nulls (a source line) has none, and skips the scan of the text.
    if type(value) is dict and _FLAT.issuperset(map(type, value.values())):
        return value
    return value if _LONG_NUMBER.search(data) is None else _MISS


def loads(raw: bytes | bytearray | str) -> Any:
    """``json.loads(raw)``: the same values, faster."""
    value = _fast(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw))
    return json.loads(raw) if value is _MISS else value


def loads_text(text: str, raw: bytes, decoder: json.JSONDecoder) -> Any:
    """``decoder.decode(text)`` for ``text`` = ``raw`` decoded as UTF-8 (a source record):
    orjson where it gives the same values, ``decoder`` (its errors, its hooks) otherwise."""
    value = _fast(raw)
    return decoder.decode(text) if value is _MISS else value
