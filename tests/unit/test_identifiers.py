"""The identifier rule (pipeline/ledger/identifiers.py): what Shopify's catalog holds is admitted,
what nobody can see or type is refused, the schema agrees with the code, and ledger keys are
unambiguous for any admitted SKU."""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ledger.decode import decode_event
from pipeline.ledger.events import Rejection, SourceEvent
from pipeline.ledger.identifiers import (
    FORBIDDEN_CATEGORIES,
    location_problem,
    schema_pattern,
    sku_problem,
    transaction_id_problem,
)
from pipeline.ledger.movements import ledger_key, split_key, to_movements

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "v1"
LOCATIONS = frozenset({"BKN-RETAIL"})


def _sale(**fields: Any) -> bytes:
    obj = json.loads((SCHEMAS / "examples" / "pos.sale.json").read_text())
    obj.update(fields)
    return json.dumps(obj).encode()


@pytest.mark.parametrize("sku", [
    "TEE BLUE M",  # inner space: legal in Shopify
    "BUNDLE@2|A/B",  # the old separators
    "ÉTÉ-Ζ-日本-منتج",  # letters of any script  # noqa: RUF001
    "SKU 😀 ™",  # symbols are visible characters
    "x" * 255,  # Shopify's longest SKU
])
def test_skus_shopify_accepts_are_admitted_end_to_end(sku: str) -> None:
    result = decode_event(_sale(sku=sku), source_topic_system="pos", known_locations=LOCATIONS)
    assert isinstance(result, SourceEvent), result
    (movement,) = to_movements(result)
    assert split_key(movement.key) == (sku, "BKN-RETAIL")
    movement.key.encode()  # a Kafka key: must be encodable


@pytest.mark.parametrize("field,value,named", [
    ("sku", "SKU-NUL\x00", "U+0000"),
    ("sku", "SKU-ESC\x1b", "U+001B"),
    ("sku", "SKU-DEL\x7f", "U+007F"),
    ("sku", "SKU-ZWSP\u200b", "U+200B (ZERO WIDTH SPACE)"),
    ("sku", "SKU-\u202eBIDI", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("sku", "SKU-\ud800", "U+D800, a surrogate"),
    ("sku", "SKU-PRIVATE\ue000", "private-use"),
    ("sku", "SKU-UNASSIGNED\u0378", "unassigned"),
    ("sku", "SKU-TAG\U000e0041", "U+E0041"),
    ("sku", "SKU-LINE\u2028", "line separator"),
    ("sku", " SKU-LEADING", "at either end"),
    ("sku", "x" * 256, "at most 255"),
    ("transaction_id", "TX 1", "whitespace U+0020"),
    ("transaction_id", "TX\u200d1", "U+200D"),
    ("location", "BKN-RETAIL\u200b", "U+200B"),
])
def test_invisible_or_unassigned_code_points_are_refused_by_name(
        field: str, value: str, named: str) -> None:
    result = decode_event(_sale(**{field: value}), source_topic_system="pos",
                          known_locations=LOCATIONS)
    assert isinstance(result, Rejection)
    assert result.code == "invalid_identifier", result
    assert result.detail.startswith(f"{field}: ") and named in result.detail, result.detail


def test_schema_pattern_and_code_agree_on_every_bmp_code_point() -> None:
    """The schemas enforce the rule for the BMP; the code adds unassigned code points."""
    sku = re.compile(schema_pattern(allow_inner_space=True))
    txn = re.compile(schema_pattern(allow_inner_space=False))
    envelope = json.loads((SCHEMAS / "envelope.schema.json").read_text())["properties"]
    assert envelope["sku"]["pattern"] == sku.pattern
    assert envelope["transaction_id"]["pattern"] == txn.pattern
    for cp in range(0x10000):
        ch = chr(cp)
        unassigned = unicodedata.category(ch) == "Cn"
        for pattern, check in ((sku, sku_problem), (txn, transaction_id_problem)):
            value = f"A{ch}B"
            by_schema = pattern.search(value) is not None
            by_code = check(value) is None
            assert by_schema == by_code or (unassigned and by_schema and not by_code), hex(cp)


_ANY_TEXT = st.text(st.characters(codec=None, max_codepoint=sys.maxunicode), min_size=1,
                    max_size=40)
_LOCATION = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


@settings(max_examples=600, deadline=None)
@given(_ANY_TEXT, _LOCATION, _ANY_TEXT, _LOCATION)
def test_ledger_keys_round_trip_and_never_collide(sku_a: str, loc_a: str, sku_b: str,
                                                  loc_b: str) -> None:
    for sku, loc in ((sku_a, loc_a), (sku_b, loc_b)):
        if sku_problem(sku) is None:
            assert location_problem(loc) is None
            assert split_key(ledger_key(sku, loc)) == (sku, loc)
    if sku_problem(sku_a) is None and sku_problem(sku_b) is None and (sku_a, loc_a) != (
            sku_b, loc_b):
        assert ledger_key(sku_a, loc_a) != ledger_key(sku_b, loc_b)


@settings(max_examples=600, deadline=None)
@given(_ANY_TEXT, _ANY_TEXT)
def test_decode_never_raises_and_admits_only_encodable_identifiers(sku: str, txn: str) -> None:
    result = decode_event(_sale(sku=sku, transaction_id=txn), source_topic_system="pos",
                          known_locations=LOCATIONS)
    assert isinstance(result, SourceEvent | Rejection)
    if isinstance(result, Rejection):
        assert result.code in {"invalid_identifier", "schema_violation"}, result
        return
    for movement in to_movements(result):
        movement.key.encode("utf-8")
        movement.mark.encode("utf-8")
        assert not any(unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in movement.key)
