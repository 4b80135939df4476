"""Per-key compare-and-set state machine (docs/sink.md, "Compare-and-set and drift"): never
re-inflate sold stock.

``acked`` is the level Tally last saw Shopify hold for (shop, item, location). Every push sends the
ledger value X with ``changeFromQuantity = acked``, so Shopify refuses it if anything (an online
order, an admin edit) moved the level since. On ``CHANGE_FROM_QUANTITY_STALE`` the adapter reads
Shopify's level S and feeds it back here:

- X <= S: push X with ``changeFromQuantity = S`` (lowering never oversells).
- X > S: Shopify knows of decrements the ledger has not seen yet. ``acked := S`` and the raise is
  *held* until a deadline (default 30 s, longer than normal webhook latency). A newer ledger value
  X' <= S is pushed at once; past the deadline the ledger wins: push the latest X with
  ``changeFromQuantity = S`` and report the difference as drift.

Unknown ``acked`` (first push ever, nothing durable in the acks topic) is treated exactly like a
stale answer: the adapter reads S first. An explicit ``changeFromQuantity: null`` is never sent: it
would overwrite Shopify blindly, which is precisely the sync-caused oversell this module prevents,
and a read costs far less than an oversold order.

Functions are pure, ``(state, input) -> state`` or ``(state, decision)``; ``now`` is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class CasPolicy:
    hold_for: float = 30.0  # seconds a raise above Shopify's level waits for the ledger to catch up


@dataclass(frozen=True)
class Hold:
    """A raise held back because Shopify's level is below the ledger's."""

    since: float
    deadline: float


@dataclass(frozen=True)
class KeyState:
    """Durable per-key state; persist ``to_dict()`` in the compacted acks topic."""

    acked: int | None = None  # Shopify's level as last seen by Tally (None = unknown)
    acked_version: int | None = None  # ledger version Shopify acknowledged (None after a read)
    target: int | None = None  # newest ledger value (clamped at 0)
    target_version: int | None = None
    hold: Hold | None = None
    round: int = 0  # bumped on every level read; part of idempotency keys (see batching)

    def to_dict(self) -> dict[str, Any]:
        return {
            "acked": self.acked,
            "acked_version": self.acked_version,
            "target": self.target,
            "target_version": self.target_version,
            "hold": None if self.hold is None else [self.hold.since, self.hold.deadline],
            "round": self.round,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyState:
        hold = data.get("hold")
        return cls(
            acked=data.get("acked"),
            acked_version=data.get("acked_version"),
            target=data.get("target"),
            target_version=data.get("target_version"),
            hold=None if hold is None else Hold(float(hold[0]), float(hold[1])),
            round=int(data.get("round", 0)),
        )


# -- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """The ledger overrode a Shopify level it could not explain within the hold deadline."""

    expected: int  # ledger value pushed
    actual: int  # Shopify's level it replaced
    difference: int  # expected - actual
    held_since: float


@dataclass(frozen=True)
class Push:
    quantity: int
    change_from: int
    version: int
    round: int
    drift: Drift | None = None


@dataclass(frozen=True)
class Wait:
    """Hold the raise; decide again at ``until`` or when a newer ledger value arrives."""

    until: float


@dataclass(frozen=True)
class ReadLevel:
    """``acked`` is unknown: read Shopify's level and call ``on_level``."""


@dataclass(frozen=True)
class UpToDate:
    """Shopify holds (or acknowledged) the ledger value: nothing to push, the record is done."""

    version: int


@dataclass(frozen=True)
class Idle:
    """No ledger value known for this key."""


Decision = Push | Wait | ReadLevel | UpToDate | Idle


# -- transitions -----------------------------------------------------------------------------


def observe_ledger(state: KeyState, quantity: int, version: int) -> KeyState:
    """A ledger value arrived; only a newer version replaces the target."""
    if state.target_version is not None and version <= state.target_version:
        return state
    # Shopify rejects negative set quantities; 0 is the safe equivalent (nothing to sell).
    return replace(state, target=max(0, quantity), target_version=version)


def decide(state: KeyState, now: float) -> tuple[KeyState, Decision]:
    """What to do for this key now."""
    if state.target is None or state.target_version is None:
        return state, Idle()
    if state.acked is None:
        return state, ReadLevel()
    x, s = state.target, state.acked
    already_acked = state.acked_version is not None and state.target_version <= state.acked_version
    # Equal to a level just *read* from Shopify: nothing to do. Equal to a level Tally merely
    # believes (acked by an earlier push) is still pushed: a re-asserted ledger value must be able
    # to expose drift, and the changeFromQuantity guard makes the push a cheap check.
    if already_acked or (x == s and state.acked_version is None):
        return (
            replace(state, acked_version=state.target_version, hold=None),
            UpToDate(state.target_version),
        )
    if state.hold is not None and x > s:
        if now < state.hold.deadline:
            return state, Wait(state.hold.deadline)
        drift = Drift(expected=x, actual=s, difference=x - s, held_since=state.hold.since)
        return state, Push(x, s, state.target_version, state.round, drift)
    # No hold, or a lowering while held: lowering never oversells, and a raise from a level Tally
    # itself set is guarded by changeFromQuantity.
    return state, Push(x, s, state.target_version, state.round)


def on_success(state: KeyState, pushed: Push) -> KeyState:
    """Shopify applied ``pushed``: its level is now ``pushed.quantity``."""
    hold = state.hold
    target_done = state.target_version is None or pushed.version >= state.target_version
    if (
        pushed.drift is not None
        or target_done
        or (state.target is not None and state.target <= pushed.quantity)
    ):
        hold = None
    return replace(state, acked=pushed.quantity, acked_version=pushed.version, hold=hold)


def on_stale(state: KeyState) -> KeyState:
    """``CHANGE_FROM_QUANTITY_STALE``: Tally's view of Shopify's level is wrong; read it."""
    return replace(state, acked=None, acked_version=None)


def on_level(state: KeyState, level: int, now: float, policy: CasPolicy) -> KeyState:
    """Shopify's current level ``level`` was read (after a stale answer or for a new key)."""
    hold = state.hold
    if state.target is not None and state.target > level and hold is None:
        # The deadline is set once; later ledger values never extend it, so drift stays bounded.
        hold = Hold(since=now, deadline=now + policy.hold_for)
    return replace(state, acked=level, acked_version=None, hold=hold, round=state.round + 1)
