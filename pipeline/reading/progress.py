"""Read every input record once, in offset order, and commit only what was processed.

The worker's agents (intake, ledger, kits) decide for each record the consumer hands them
whether it is the next one to process. The committed offset of a partition is always "one past
the last record processed in order", never a guess, so a crash or a rebalance resumes exactly
where processing stopped, whatever the consumer library prefetched, skipped or replayed.

Pure: no Kafka. Offsets follow Kafka's convention (a committed offset is the next to read).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

TP = TypeVar("TP", bound=Hashable)

# A jump forward means either that the consumer skipped records (faust after a restart or a
# rebalance) or that the broker has none there (compaction or transaction markers upstream,
# retention). Only the broker can tell, and records fetched before a seek can keep draining
# from faust's buffers for seconds, so they are not evidence: every PROBE_EVERY-th seek to the
# same offset asks the broker for the first offset at or after it (PROBE). On topics where holes
# are expected (upstream topics written with transactions: every commit marker is one), the
# first jump to a new offset is probed at once, so a marker costs one probe and no waiting.
PROBE_EVERY = 4
MIN_SEEK_INTERVAL_S = 1.0
# Records waiting in the partition but none processed for this long: read again from the
# next offset (the consumer dropped them silently). Each further re-read at the same offset
# waits twice as long, up to STALL_BACKOFF_MAX_S: under a large backlog a partition can go
# unserved for longer while faust serves the others, and seeking it again every 5 s only
# throws its fetched records away (a 1M-line snapshot re-read one offset four times in 17 s).
STALL_AFTER_S = 5.0
STALL_BACKOFF_MAX_S = 20.0  # a real loss (e.g. during a long outage) waits at most this


class Action(Enum):
    PROCESS = "process"  # the next record: process it, then call ``done``
    ALREADY_READ = "already_read"  # processed before (a replay): drop it
    WAIT = "wait"  # past the next offset while a seek back is under way: drop it
    SEEK = "seek"  # records before it were skipped: seek to ``seek_to``, drop this one
    PROBE = "probe"  # seeks keep landing past ``seek_to``: ask the broker for the first offset
    # at or after it (``hole`` if greater), then seek; drop this one


@dataclass(frozen=True)
class Verdict:
    """What to do with one record."""

    action: Action
    seek_to: int | None = None

    @property
    def process(self) -> bool:
        return self.action is Action.PROCESS


@dataclass
class PartitionProgress:
    """Where processing of one partition stands."""

    next_offset: int  # the record to process next
    committed: int  # the offset last committed (next to read after a restart)
    progressed_at: float  # when ``next_offset`` last moved (or reading started)
    seek_target: int | None = None
    seeks: int = 0  # seeks to ``seek_target`` so far
    last_seek_at: float = float("-inf")
    stall_rereads: int = 0  # watchdog re-reads since the partition last moved


class ReadProgress(Generic[TP]):
    """In-order, exactly-once processing decisions for the partitions of one worker."""

    def __init__(self, *, probe_every: int = PROBE_EVERY,
                 min_seek_interval_s: float = MIN_SEEK_INTERVAL_S,
                 stall_after_s: float = STALL_AFTER_S) -> None:
        self.probe_every = probe_every
        self.min_seek_interval_s = min_seek_interval_s
        self.stall_after_s = stall_after_s
        self.partitions: dict[TP, PartitionProgress] = {}

    def known(self, tp: TP) -> bool:
        return tp in self.partitions

    def start(self, tp: TP, committed: int, now: float) -> None:
        """Begin (again) at the group's committed offset, e.g. after an assignment."""
        self.partitions[tp] = PartitionProgress(next_offset=committed, committed=committed,
                                                progressed_at=now)

    def forget(self, tps: Iterable[TP]) -> None:
        """Drop partitions (revoked or re-assigned): they start again from Kafka's commit."""
        for tp in list(tps):
            self.partitions.pop(tp, None)

    def admit(self, tp: TP, offset: int, now: float, *, holes_expected: bool = False) -> Verdict:
        """Decide about the record at ``offset``; ``tp`` must be known (see ``start``).
        ``holes_expected``: the topic may hold offsets without records (see PROBE_EVERY)."""
        p = self.partitions[tp]
        if offset < p.next_offset:
            return Verdict(Action.ALREADY_READ)
        if offset == p.next_offset:
            p.seek_target, p.seeks = None, 0
            return Verdict(Action.PROCESS)
        # Records between next_offset and offset were not handed to us.
        if p.seek_target != p.next_offset:
            p.seek_target, p.seeks = p.next_offset, 0
        if holes_expected and p.seeks == 0:  # the probe is authoritative: no need to wait
            p.seeks, p.last_seek_at = 1, now
            return Verdict(Action.PROBE, seek_to=p.next_offset)
        if now - p.last_seek_at < self.min_seek_interval_s:
            return Verdict(Action.WAIT)  # records fetched before the seek, still draining
        p.seeks += 1
        p.last_seek_at = now
        if p.seeks % self.probe_every == 0:
            return Verdict(Action.PROBE, seek_to=p.next_offset)
        return Verdict(Action.SEEK, seek_to=p.next_offset)

    def seeked(self, tp: TP, now: float) -> None:
        """A seek was issued now. Records fetched before it drain for a while (WAIT): counted
        from the seek itself, not from the verdict, as a probe before it can take seconds."""
        p = self.partitions.get(tp)
        if p is not None:
            p.last_seek_at = now

    def hole(self, tp: TP, first_offset: int, now: float) -> int:
        """The broker's first record at or after the next offset is ``first_offset``: offsets
        before it hold none (markers, compaction, retention). Returns how many are passed over."""
        p = self.partitions[tp]
        passed = max(0, first_offset - p.next_offset)
        p.next_offset = max(p.next_offset, first_offset)
        p.seek_target, p.seeks, p.progressed_at, p.stall_rereads = None, 0, now, 0
        return passed

    def done(self, tp: TP, offset: int, now: float) -> None:
        """The record at ``offset`` is processed (its outputs are sent or buffered)."""
        p = self.partitions.get(tp)
        if p is None or offset != p.next_offset:
            return  # revoked while processing, or a stale call: the commit stays behind it
        p.next_offset = offset + 1
        p.progressed_at = now
        p.stall_rereads = 0

    def stalled(self, tp: TP, end_offset: int, now: float) -> int | None:
        """The offset to seek to when records wait up to ``end_offset`` (the high watermark)
        but none was processed for a while; None otherwise."""
        p = self.partitions.get(tp)
        if p is None or end_offset <= p.next_offset:
            return None
        wait = min(self.stall_after_s * 2 ** p.stall_rereads, STALL_BACKOFF_MAX_S)
        if now - max(p.progressed_at, p.last_seek_at) < wait:
            return None
        p.last_seek_at = now
        p.stall_rereads += 1
        return p.next_offset

    def to_commit(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """Offsets to commit: partitions (of ``tps``, default all) that moved since the last
        commit. Commit them only after everything their records produced is flushed."""
        chosen = list(self.partitions) if tps is None else [
            tp for tp in tps if tp in self.partitions]
        return {tp: self.partitions[tp].next_offset for tp in chosen
                if self.partitions[tp].next_offset > self.partitions[tp].committed}

    def rewind(self, now: float) -> dict[TP, int]:
        """Process again from the last commit every partition that moved past it (what its
        records produced was not all delivered); returns where to seek each of them."""
        out = {}
        for tp, p in self.partitions.items():
            if p.next_offset > p.committed:
                p.next_offset, p.seek_target, p.seeks = p.committed, None, 0
                p.progressed_at = now
                out[tp] = p.committed
        return out

    def committed(self, offsets: dict[TP, int]) -> None:
        """Record a successful commit."""
        for tp, offset in offsets.items():
            p = self.partitions.get(tp)
            if p is not None:
                p.committed = max(p.committed, offset)
