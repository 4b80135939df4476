"""Audit trail: the applied movements of one ``sku@branch`` from ``tally.ledger-history.v1``.

``history_for`` is pure (records → rows); ``read_history`` reads the topic (keyed by
``sku@branch``, so one key's entries are in order within its partition).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pipeline.ledger.movements import ledger_key


def history_for(records: Iterable[tuple[bytes | None, bytes | None]], sku: str,
                branch: str) -> list[dict[str, Any]]:
    """The key's entries in version order (a redelivered duplicate appears once)."""
    key = ledger_key(sku, branch).encode()
    rows: dict[int, dict[str, Any]] = {}
    for k, v in records:
        if k != key or v is None:
            continue
        try:
            rec = json.loads(v)
        except ValueError:
            continue
        rows.setdefault(int(rec.get("version", 0)), rec)
    return [rows[v] for v in sorted(rows)]


def read_history(bootstrap: str, topic: str, sku: str, branch: str,
                 timeout: float = 60.0) -> list[dict[str, Any]]:
    """Read the history topic to its end and keep one key's entries (a full scan: the topic is
    kept for the audit period; a per-key index is future work)."""
    from pipeline.infra.kafka_read import read_to_end

    out = read_to_end(bootstrap, topic, timeout=timeout)
    return history_for(out, sku, branch)


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table for the terminal: what each movement did and the resulting version."""
    import datetime as dt

    lines = ["applied_at            source  type                    qty  version  on_hand  "
             "mark"]
    for r in rows:
        at = dt.datetime.fromtimestamp(float(r.get("applied_at", 0)), dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S")
        comps = r.get("components") or {}
        lines.append(f"{at}  {r.get('source', ''):6}  {r.get('type', ''):22}  "
                     f"{r.get('quantity', ''):>4}  {r.get('version', ''):>7}  "
                     f"{comps.get('on_hand', ''):>7}  {r.get('mark', '')}")
    return "\n".join(lines)
