"""The identifier rule: which SKUs, locations and transaction IDs the ledger admits.

One rule, written in ``schemas/README.md``, enforced here (decoder, catalog, kits files) and, for
the Basic Multilingual Plane, by the JSON Schemas' patterns (``schema_pattern``). A SKU may hold
anything Shopify's catalog holds (inner spaces, ``@``, ``|``, ``/``, letters of any script);
what no identifier may hold is a code point a person cannot see or type reliably: control (Cc),
format (Cf: zero-width, bidi overrides), surrogate (Cs), private-use (Co), unassigned (Cn), and
line or paragraph separators (Zl, Zp). Leading or trailing whitespace is refused too: two SKUs that
differ only there would look the same on every screen.

Ledger keys (``sku@location``) stay unambiguous for any SKU because locations are ASCII
``[A-Za-z0-9][A-Za-z0-9._-]*``: the key splits at its last ``@``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

SKU_MAX: Final = 255  # Shopify's limit for a variant's SKU
TRANSACTION_ID_MAX: Final = 128
LOCATION_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_LOCATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

FORBIDDEN_CATEGORIES: Final = {
    "Cc": "control character",
    "Cf": "format character",
    "Cs": "surrogate",
    "Co": "private-use character",
    "Cn": "unassigned code point",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}


def _forbidden_ranges(limit: int) -> list[tuple[int, int]]:
    """Ranges of code points below ``limit`` whose category is forbidden, Cn excepted (the set
    of unassigned code points changes with each Unicode version, so only code can check it)."""
    ranges: list[tuple[int, int]] = []
    for cp in range(limit):
        if unicodedata.category(chr(cp)) in FORBIDDEN_CATEGORIES.keys() - {"Cn"}:
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return ranges


def _char_class(ranges: list[tuple[int, int]]) -> str:
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


def schema_pattern(*, allow_inner_space: bool) -> str:
    """The JSON Schema ``pattern`` for an identifier (``\\uXXXX`` escapes: valid in Python's
    ``re`` and ECMA 262 alike). It covers the BMP; code points above it and unassigned ones are
    checked by ``identifier_problem`` only."""
    bad = _char_class(_forbidden_ranges(0x10000))
    if allow_inner_space:
        return f"^[^\\s{bad}](?:[^{bad}]*[^\\s{bad}])?$"
    return f"^[^\\s{bad}]+$"


def _code_point(ch: str) -> str:
    name = unicodedata.name(ch, "") if unicodedata.category(ch) != "Cs" else ""
    return f"U+{ord(ch):04X}{f' ({name})' if name else ''}"


def identifier_problem(field: str, value: object, *, max_length: int,
                       allow_inner_space: bool) -> str | None:
    """Why ``value`` is not an admissible identifier for ``field`` (None when it is)."""
    if not isinstance(value, str):
        return f"{field}: must be a string"
    if not value:
        return f"{field}: must not be empty"
    if len(value) > max_length:
        return f"{field}: {len(value)} characters, at most {max_length}"
    if (value.isascii() and value.isprintable()  # the common case: only spaces to check
            and value[0] != " " and value[-1] != " " and (allow_inner_space or " " not in value)):
        return None
    last = len(value) - 1
    for i, ch in enumerate(value):
        category = unicodedata.category(ch)
        if category in FORBIDDEN_CATEGORIES:
            return (f"{field}: {_code_point(ch)}, a {FORBIDDEN_CATEGORIES[category]}, "
                    f"at position {i} is not allowed")
        if ch.isspace() and not (allow_inner_space and 0 < i < last):
            where = f"at position {i}" if not allow_inner_space else "at either end"
            return f"{field}: whitespace {_code_point(ch)} {where} is not allowed"
    return None


def sku_problem(value: object, field: str = "sku") -> str | None:
    """Why ``value`` is not an admissible SKU (None when it is)."""
    return identifier_problem(field, value, max_length=SKU_MAX, allow_inner_space=True)


def transaction_id_problem(value: object, field: str = "transaction_id") -> str | None:
    """Why ``value`` is not an admissible transaction or document ID (None when it is)."""
    return identifier_problem(field, value, max_length=TRANSACTION_ID_MAX,
                              allow_inner_space=False)


def location_problem(value: object, field: str = "location") -> str | None:
    """Why ``value`` is not an admissible branch id (None when it is)."""
    if isinstance(value, str) and _LOCATION.fullmatch(value):
        return None
    if isinstance(value, str) and (problem := identifier_problem(
            field, value, max_length=64, allow_inner_space=False)):
        return problem
    return f"{field}: {str(value)[:70]!r} must match {LOCATION_PATTERN}"

