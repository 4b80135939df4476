"""What the sink does with each Shopify answer: pure decisions, no I/O, no clock.

``send_step`` takes a classified answer to an ``inventorySetQuantities`` batch and says what comes
next for that batch: acknowledge every item, handle per-item rejections, retry (after a delay, or
paced by the cost budget, with the same or a new idempotency key), split it in halves, dead-letter
it whole, or halt the shop. ``read_step`` does the same for a batched level read. The shell
(``pipeline.sink.service``) only executes the step: sleeps, calls, produces, counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.shopify.backoff import Backoff
from pipeline.shopify.budget import CostReport
from pipeline.shopify.levels import parse_available
from pipeline.sink.responses import (
    Applied,
    BatchBug,
    Halt,
    Outcome,
    Rejected,
    RetryNewKey,
    RetrySameKey,
    Split,
    Throttled,
    Transient,
)

READ_ATTEMPTS = 8  # a level read given up after this many answers without levels


# -- sending a batch -------------------------------------------------------------------------


@dataclass(frozen=True)
class SendAttempt:
    """Where one batch stands: retries so far and the idempotency key's salt."""

    attempt: int = 0
    salt: int = 0


@dataclass(frozen=True)
class AckAll:
    """Shopify applied every item."""


@dataclass(frozen=True)
class HandleRejected:
    """Per-item errors: dead-letter, read the level of (stale) or requeue each item."""

    outcome: Rejected


@dataclass(frozen=True)
class Retry:
    """Send the batch again: after ``delay`` seconds (None: when the budget allows), under the
    salt in the returned ``SendAttempt`` (bumped when Shopify wants a new key)."""

    reason: str  # for the retries metric
    throttled: bool  # Shopify throttled the call (THROTTLED or HTTP 429)
    delay: float | None
    new_key: bool = False


@dataclass(frozen=True)
class SplitHalves:
    """Send each half of the batch on its own."""


@dataclass(frozen=True)
class DeadLetterAll:
    """Dead-letter every item of the batch."""

    reason: str
    detail: str


@dataclass(frozen=True)
class HaltShop:
    """Stop the shop (requeue the batch) and alert: not the data's fault."""

    reason: str
    detail: str


SendStep = AckAll | HandleRejected | Retry | SplitHalves | DeadLetterAll | HaltShop


def outcome_name(outcome: Outcome) -> str:
    """The outcome's metric label (``applied``, ``throttled``, ``retrysamekey``…)."""
    return type(outcome).__name__.lower()


def send_step(state: SendAttempt, outcome: Outcome, n_items: int, backoff: Backoff,
              transport_wait_cap: float) -> tuple[SendAttempt, SendStep]:
    """What to do after ``outcome`` answered a batch of ``n_items`` in ``state``.

    A transport failure (the call may have hung for a whole deadline already) waits at most
    ``transport_wait_cap`` before the same idempotency key is sent again."""
    if isinstance(outcome, Applied):
        return state, AckAll()
    if isinstance(outcome, Rejected):
        return state, HandleRejected(outcome)
    if isinstance(outcome, Throttled | Transient | RetrySameKey | RetryNewKey):
        reason = outcome.reason if isinstance(outcome, Transient) else outcome_name(outcome)
        throttled = isinstance(outcome, Throttled) or reason == "http_429"
        delay: float | None = None  # Throttled: wait_for (re-based on the answer) paces it
        salt = state.salt
        if isinstance(outcome, Transient) and outcome.reason.startswith("transport:"):
            delay = min(backoff.delay(state.attempt), transport_wait_cap)
        elif isinstance(outcome, Transient):
            delay = backoff.delay(state.attempt, outcome.retry_after)
        elif isinstance(outcome, RetrySameKey):
            delay = backoff.delay(state.attempt)
        elif isinstance(outcome, RetryNewKey):
            salt += 1
        step = Retry(reason, throttled, delay, new_key=salt != state.salt)
        return SendAttempt(state.attempt + 1, salt), step
    if isinstance(outcome, Split):
        if n_items == 1:
            return state, DeadLetterAll(outcome.reason, outcome.reason)
        return state, SplitHalves()
    if isinstance(outcome, BatchBug):
        return state, DeadLetterAll(outcome.code, outcome.detail)
    assert isinstance(outcome, Halt)
    return state, HaltShop(outcome.reason, outcome.detail)


# -- reading levels --------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelsRead:
    """``available`` per pair (None: no such item or level)."""

    levels: list[int | None]


@dataclass(frozen=True)
class RetryRead:
    """No levels in the answer: read again after ``delay`` (None: when the budget allows)."""

    reason: str  # for the retries metric
    throttled: bool
    delay: float | None


@dataclass(frozen=True)
class HaltRead:
    """The same as on a push: the token, not the data."""

    reason: str
    detail: str


ReadStep = LevelsRead | RetryRead | HaltRead


def graphql_error_codes(body: dict[str, Any] | None) -> set[Any]:
    """``errors[].extensions.code`` of a GraphQL answer."""
    errors = (body or {}).get("errors") if body else None
    if not isinstance(errors, list):
        return set()
    return {(e.get("extensions") or {}).get("code") for e in errors if isinstance(e, dict)}


def read_step(status: int, body: dict[str, Any] | None, error: str | None, n_pairs: int,
              attempt: int, backoff: Backoff) -> ReadStep:
    """What to do with the answer to a level read of ``n_pairs`` (retry number ``attempt``)."""
    if status in (401, 403):
        return HaltRead("auth", f"HTTP {status} reading levels")
    errors = (body or {}).get("errors") if body else None
    codes = graphql_error_codes(body)
    throttled = bool(errors) and "THROTTLED" in codes
    levels = parse_available(body, n_pairs) if status == 200 else None
    if levels is not None and not throttled:
        return LevelsRead(levels)
    reason = error or ("throttled" if "THROTTLED" in codes else str(status))
    if "THROTTLED" in codes:
        return RetryRead(f"read_{reason}", True, None)  # wait_for paces the retry
    return RetryRead(f"read_{reason}", False, backoff.delay(attempt))


def read_cost_per_item(report: CostReport | None, n_pairs: int, current: float) -> float:
    """The requested cost of one pair, learned from a read's cost report."""
    if report is not None and report.requested:
        return max(1.0, report.requested / n_pairs)
    return current
