"""The sink's state and decisions, without Kafka, HTTP or a clock: one small state machine.

``SinkCore`` holds what the sink knows (the coalescer's pending and in-flight entries, the offsets
tracker, every key's compare-and-set state, each shop's read state and budget) and changes it only
through methods that take an event (a record read, a round planned, a batch answered, levels read)
and return what the shell must do: the records to produce, the call to make, how long to wait.
``now`` is always an argument. The shell (``pipeline.sink.service``) executes those effects and
nothing else; ``tests/unit/test_sink_core.py`` drives this class directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pipeline.messages import ShopifyPush
from pipeline.shopify.budget import BudgetConfig, ShopBudget
from pipeline.sink.batching import BatchItem
from pipeline.sink.coalescing import Coalescer, Entry, Offer, dirty_age
from pipeline.sink.compare_and_set import (
    CasPolicy,
    Decision,
    KeyState,
    Push,
    ReadLevel,
    UpToDate,
    Wait,
    decide,
    observe_ledger,
    on_level,
    on_stale,
    on_success,
)
from pipeline.sink.offsets import OffsetTracker, SourceRef
from pipeline.sink.responses import ItemError, Rejected

TopicPartition = tuple[str, int]
Pushes = dict[str, tuple[Push, Entry]]  # key -> the push decided and the entry it is for


@dataclass
class ShopState:
    """What the sink knows of one shop beyond its keys."""

    domain: str
    budget: ShopBudget
    unreadable: set[str] = field(default_factory=set)  # read found no level: push to learn why
    stale: set[str] = field(default_factory=set)  # keys read because of a stale answer
    read_cost_per_item: float = 4.0  # learned from the first read's requestedQueryCost
    halted: str | None = None


@dataclass(frozen=True)
class FlushPolicy:
    window_s: float = 1.0  # bounded staleness: flush a dirty key at the latest after this
    max_reads_per_call: int = 50
    # Calls in flight per shop. One call of 250 items takes ~0.4-1 s, so a single call in flight
    # caps a shop near 400 items/s while the Standard plan's budget allows ~2,500: a backlog (a
    # nightly full count) is drained by up to this many calls at once, each a full batch the
    # budget can pay for now (see ``plan_round``'s ``busy``).
    max_calls_in_flight: int = 1
    # While the shop's bucket is at least ``spare_fraction`` full, a dirty key waits only
    # ``quick_window_s``: budget nobody is using buys latency (a call of any size costs Shopify
    # ~10 points, so a call every 0.2 s spends half the Standard plan's 100 points/s and the
    # bucket stays full). A contended bucket (a backlog, reconciliation reads, other apps)
    # drains below it and the sink batches for the whole window again. None: always the window.
    quick_window_s: float | None = None
    spare_fraction: float = 0.5

    def window(self, budget: ShopBudget, now: float) -> float:
        """How long a dirty key waits for company before it is sent."""
        if self.quick_window_s is None or budget.fill(now) < self.spare_fraction:
            return self.window_s
        return min(self.window_s, self.quick_window_s)


# -- what a shop round does ------------------------------------------------------------------


@dataclass(frozen=True)
class Idle:
    """Nothing to send yet: wait for a wake-up, at most ``timeout`` seconds."""

    timeout: float


@dataclass(frozen=True)
class Pace:
    """A batch is ready but the budget is short: sleep ``seconds``, then decide again."""

    seconds: float


@dataclass(frozen=True)
class ReadLevels:
    """Read Shopify's level of these keys, then decide again."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Send:
    """Send these items (already taken in flight); ``pushes`` per key for the answer."""

    items: tuple[BatchItem, ...]
    pushes: Mapping[str, Push]


@dataclass(frozen=True)
class Again:
    """Decisions were made without a call: decide again at once."""


RoundAction = Idle | Pace | ReadLevels | Send | Again


@dataclass(frozen=True)
class UpToDateAck:
    """Shopify already holds the ledger value: acknowledge it without a push."""

    entry: Entry
    state: KeyState


@dataclass(frozen=True)
class Round:
    action: RoundAction
    acks: tuple[UpToDateAck, ...] = ()


# -- what an answer resolves -----------------------------------------------------------------


@dataclass(frozen=True)
class AckedItem:
    """One item Shopify applied: produce its ack (and its drift, if the push overrode one)."""

    item: BatchItem
    push: Push
    state: KeyState
    entry: Entry | None


@dataclass(frozen=True)
class DeadItem:
    """An entry to dead-letter; ``refs`` are the records it stands for (now done)."""

    entry: Entry
    refs: tuple[SourceRef, ...]
    error: ItemError | None = None


@dataclass(frozen=True)
class LevelDrift:
    """Shopify above the ledger after a stale answer: an edit or restock the ledger has not seen."""

    entry: Entry
    expected: int
    actual: int


@dataclass(frozen=True)
class Ingested:
    offer: Offer
    reasserted: bool  # a forced re-check accepted: the key is read again


def backpressure(held: Mapping[TopicPartition, int], paused: set[TopicPartition], limit: int
                 ) -> tuple[set[TopicPartition], set[TopicPartition]]:
    """(partitions to pause, partitions to resume) given each partition's unfinished records.
    Pause at ``limit``, resume below half of it (hysteresis); a partition no longer held (revoked)
    is not resumed here. Pure."""
    pause = {tp for tp, n in held.items() if n >= limit and tp not in paused}
    resume = {tp for tp in paused if tp in held and held[tp] < limit // 2}
    return pause, resume


@dataclass
class SinkCore:
    """Everything the sink decides. Mutable, deterministic, clock-free, no I/O."""

    shops: dict[str, ShopState]
    policy: CasPolicy = field(default_factory=CasPolicy)
    flush: FlushPolicy = field(default_factory=FlushPolicy)
    coalescer: Coalescer = field(default_factory=Coalescer)
    offsets: OffsetTracker = field(default_factory=OffsetTracker)
    states: dict[str, KeyState] = field(default_factory=dict)

    @classmethod
    def for_shops(cls, domains: Iterable[str], *, policy: CasPolicy | None = None,
                  flush: FlushPolicy | None = None,
                  budget: BudgetConfig | None = None) -> SinkCore:
        config = budget or BudgetConfig()
        return cls(shops={d: ShopState(d, ShopBudget(config=config)) for d in domains},
                   policy=policy or CasPolicy(), flush=flush or FlushPolicy())

    def state(self, key: str) -> KeyState:
        return self.states.get(key, KeyState())

    # -- reading the push topic --------------------------------------------------------------

    def seed(self, key: str, state: KeyState) -> None:
        """A key's state from the acks topic, before the first record is read."""
        self.states[key] = state
        if state.acked_version is not None:
            self.coalescer.seed_resolved(key, state.acked_version)

    def track(self, ref: SourceRef) -> bool:
        """A record was read; False for a re-delivery of a record already done."""
        return self.offsets.track(ref)

    def done(self, refs: Iterable[SourceRef]) -> None:
        """Records handled outside the coalescer (dead-lettered before being offered)."""
        self.offsets.done(tuple(refs))

    def ingest(self, push: ShopifyPush, ref: SourceRef, now: float,
               reassert: bool = False) -> Ingested:
        """A tracked push record of a configured shop."""
        offer = self.coalescer.offer(push, ref, now, reassert=reassert)
        reasserted = offer is Offer.ACCEPTED and reassert
        if reasserted:
            # Forget what Tally believes Shopify holds: the key is read again and decided by
            # compare-and-set (a raise above Shopify's level still waits the hold).
            state = observe_ledger(self.state(push.key), push.available, push.ledger_version)
            self.states[push.key] = on_stale(state)
            self.shops[push.shop].stale.add(push.key)
        if offer is Offer.ALREADY_DONE:
            self.offsets.done([ref])
        elif offer is Offer.ACCEPTED:
            # A newer value re-opens a held raise: it may now be <= Shopify's level.
            self.coalescer.unpark(push.key)
        self.states[push.key] = observe_ledger(self.state(push.key), push.available,
                                               push.ledger_version)
        return Ingested(offer, reasserted)

    def held(self) -> dict[TopicPartition, int]:
        """Unfinished records per partition (for backpressure)."""
        return {tp: part.in_progress for tp, part in self.offsets.partitions.items()}

    # -- a shop round ------------------------------------------------------------------------

    def plan_round(self, domain: str, now: float, busy: int = 0) -> Round:
        """One flush decision for a shop: what to send next, or how long to wait.

        ``busy``: the shop's other calls in flight (see ``_plan_beside``)."""
        if busy:
            return self._plan_beside(domain, now, busy)
        # Unordered until a batch is decided: most rounds only count and wait.
        entries = self.coalescer.eligible(domain, now, ordered=False)
        if not entries:
            parked = [e.not_before for e in self.coalescer.pending(domain, ordered=False)
                      if e.not_before is not None and e.not_before != float("inf")]
            return Round(Idle(max(0.0, min(parked) - now) if parked else 1.0))
        budget = self.shops[domain].budget
        full = max(1, budget.max_items(now, when_full=True))
        age = dirty_age(entries, now) or 0.0
        window = self.flush.window(budget, now)
        if age < window and len(entries) < full:
            return Round(Idle(window - age))
        entries.sort(key=Entry.sort_key)
        pushes, reads, acks = self._decide_keys(domain, entries, full, now)
        if reads:
            return Round(ReadLevels(tuple(reads)), acks)
        if not pushes:
            return Round(Again(), acks)
        return Round(self._batch(domain, pushes, now), acks)

    def _plan_beside(self, domain: str, now: float, busy: int) -> Round:
        """A round beside ``busy`` calls in flight: a full batch (a backlog drains in
        parallel), or the keys whose window has passed (a trickle goes out once per window
        and does not wait for a slow call to end), paced by the budget like any batch; never a
        level read (reads wait for a round with nothing in flight). Otherwise wait for the
        window, or for a call to end (the shell wakes the shop then)."""
        budget = self.shops[domain].budget
        window = self.flush.window(budget, now)
        if busy >= self.flush.max_calls_in_flight:
            return Round(Idle(window))
        full = max(1, budget.max_items(now, when_full=True))
        entries = self.coalescer.eligible(domain, now, ordered=False)
        if not entries:
            return Round(Idle(window))
        age = dirty_age(entries, now) or 0.0
        if len(entries) < full and age < window:
            return Round(Idle(window - age))
        entries.sort(key=Entry.sort_key)
        pushes, _, acks = self._decide_keys(domain, entries, full, now)
        if not pushes:  # what is left needs a level read first, or nothing
            return Round(Idle(window), acks)
        return Round(self._batch(domain, pushes, now), acks)

    def _decide_keys(self, domain: str, entries: list[Entry], full: int, now: float
                     ) -> tuple[Pushes, list[Entry], tuple[UpToDateAck, ...]]:
        """Compare-and-set for each eligible key, up to a full batch of pushes: the pushes, the
        keys to read first, and the acks of keys already up to date (parked and idle keys are
        settled here)."""
        unreadable = self.shops[domain].unreadable
        pushes: Pushes = {}
        reads: list[Entry] = []
        acks: list[UpToDateAck] = []
        for entry in entries:
            if len(pushes) >= full:
                break
            d = self._decide_key(entry, entry.key in unreadable, now)
            if isinstance(d, Push):
                pushes[entry.key] = (d, entry)
            elif isinstance(d, ReadLevel):
                if len(reads) < self.flush.max_reads_per_call:
                    reads.append(entry)
            elif (ack := self._settle(entry, d)) is not None:
                acks.append(ack)
        return pushes, reads, tuple(acks)

    def _decide_key(self, entry: Entry, unreadable: bool, now: float) -> Decision:
        key = entry.key
        state = self.state(key)
        if state.acked is None and unreadable and state.target is not None:
            # No level readable: send it anyway (changeFromQuantity 0 still guards), so
            # Shopify's own error can be dead-lettered with the item.
            assert state.target_version is not None
            return Push(state.target, 0, state.target_version, state.round)
        state, d = decide(state, now)
        self.states[key] = state
        return d

    def _settle(self, entry: Entry, d: Decision) -> UpToDateAck | None:
        """A decision needing no call: park a held raise, or resolve the entry (with an ack when
        Shopify is known to hold the ledger's value)."""
        key = entry.key
        if isinstance(d, Wait):
            self.coalescer.park(key, d.until)
            return None
        refs = self.coalescer.resolve_pending(key)
        self.offsets.done(refs)
        state = self.state(key)
        if (isinstance(d, UpToDate) and state.acked is not None
                and state.acked_version is not None):
            return UpToDateAck(entry, state)
        return None  # Idle: nothing known to push

    def _batch(self, domain: str, pushes: Pushes, now: float) -> Pace | Send:
        """The batch of ``pushes``, taken in flight, or how long the budget needs first."""
        budget = self.shops[domain].budget
        items = tuple(BatchItem(key, e.push.inventory_item_id, e.push.location_id, p.quantity,
                                p.change_from, p.version, p.round)
                      for key, (p, e) in pushes.items())
        wait = budget.wait_for(budget.estimate_cost(len(items)), now)
        if wait > 0:
            # Decide again after it: more keys may be dirty, the budget model moved.
            return Pace(wait)
        self.coalescer.take([i.key for i in items])
        return Send(items, {k: p for k, (p, _) in pushes.items()})

    # -- answers -----------------------------------------------------------------------------

    def applied(self, items: Iterable[BatchItem], pushes: Mapping[str, Push]) -> list[AckedItem]:
        """Shopify applied every item: each key's level is now what was pushed."""
        out: list[AckedItem] = []
        for item in items:
            push = pushes[item.key]
            state = on_success(self.state(item.key), push)
            self.states[item.key] = state
            entry = self.coalescer.slots[item.key].in_flight
            out.append(AckedItem(item, push, state, entry))
            self.offsets.done(self.coalescer.resolve(item.key))
        return out

    def rejected(self, domain: str, items: tuple[BatchItem, ...], outcome: Rejected
                 ) -> list[DeadItem]:
        """Per-item errors, nothing applied: the dead items (to dead-letter) are done, stale ones
        are read again, the others go back to pending for a new batch."""
        dead: list[DeadItem] = []
        for err in outcome.dead:
            item = self.dead_letter(items[err.index].key, err)
            if item is not None:
                dead.append(item)
        for idx in outcome.stale:
            key = items[idx].key
            self.states[key] = on_stale(self.state(key))
            self.shops[domain].stale.add(key)
            self.coalescer.requeue(key)
        for idx in outcome.retry:
            self.coalescer.requeue(items[idx].key)
        return dead

    def dead_letter(self, key: str, error: ItemError | None = None) -> DeadItem | None:
        """The key's in-flight (else pending) entry is dead-lettered: its records are done."""
        entry = self.coalescer.slots[key].in_flight
        if entry is None:
            return None
        refs = self.coalescer.resolve(key) or self.coalescer.resolve_pending(key)
        self.offsets.done(refs)
        return DeadItem(entry, tuple(refs), error)

    def dead_letter_all(self, items: Iterable[BatchItem]) -> list[DeadItem]:
        return [d for i in items if (d := self.dead_letter(i.key)) is not None]

    def halt(self, domain: str, reason: str, items: Iterable[BatchItem] = ()) -> None:
        """Stop the shop; what was in flight goes back to pending (resent after a restart)."""
        self.shops[domain].halted = reason
        for item in items:
            self.coalescer.requeue(item.key)

    def levels_read(self, domain: str, entries: Iterable[Entry], levels: list[int | None],
                    now: float) -> list[LevelDrift]:
        """Shopify's levels of ``entries`` were read: compare-and-set from them."""
        shop = self.shops[domain]
        drifts: list[LevelDrift] = []
        for entry, level in zip(entries, levels, strict=True):
            key = entry.key
            if level is None:
                shop.unreadable.add(key)
                continue
            shop.unreadable.discard(key)
            state = self.state(key)
            if key in shop.stale and state.target is not None and state.target < level:
                # Pushing the lower ledger value repairs it at once.
                drifts.append(LevelDrift(entry, state.target, level))
            shop.stale.discard(key)
            self.states[key] = on_level(state, level, now, self.policy)
        return drifts

    # -- Kafka side --------------------------------------------------------------------------

    def backpressure(self, paused: set[TopicPartition], limit: int
                     ) -> tuple[set[TopicPartition], set[TopicPartition]]:
        return backpressure(self.held(), paused, limit)

    def revoke(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Partitions lost in a rebalance: their commit positions, then forgotten."""
        pos = {tp: o for tp, o in self.offsets.committable().items() if tp in tps}
        self.offsets.revoke(tps)
        return pos

