"""The expiry timer's index of positions with holds (``agents.ledger.HeldKeys``): it follows the
ledger's writes, asks for a full scan after partitions move and every ``full_scan_s``."""

from __future__ import annotations

from agents.ledger import HeldKeys
from pipeline.ledger.position import Hold, LedgerPosition


def test_follows_writes_and_rescans_after_partitions_move() -> None:
    held = HeldKeys(full_scan_s=300)
    assert held.needs_full_scan(0.0)  # nothing known at start
    held.rebuilt({b"A@S"}, now=10.0)
    assert not held.needs_full_scan(11.0)
    with_hold = LedgerPosition("B", "S", holds={"r:1": Hold("reservation", 1)})
    held.written(b"B@S", with_hold)
    assert held.keys == {b"A@S", b"B@S"}
    held.written(b"A@S", LedgerPosition("A", "S"))  # its last hold released
    assert held.keys == {b"B@S"}
    assert held.needs_full_scan(310.0)  # the safety net
    held.reset()  # a rebalance
    assert held.keys == set() and held.needs_full_scan(11.0)
