"""Kafka offset bookkeeping: commit only what is fully handled.

A record is *done* once Shopify acknowledged it, it was dead-lettered, or a newer record for the
same key that superseded it is itself done. The committable offset of a partition is the lowest
offset that is not done (Kafka commits "the next offset to read"), so a crash re-reads every record
whose effect is not yet durable, and never skips one.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class SourceRef:
    """Where a record came from: (topic, partition, offset)."""

    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class PartitionOffsets:
    """Pending offsets of one partition; ``committable()`` is the lowest not-done offset."""

    _pending: set[int] = field(default_factory=set)
    _heap: list[int] = field(default_factory=list)  # lazily pruned min-heap over _pending
    _next: int | None = None  # one past the highest offset seen

    def track(self, offset: int) -> bool:
        """Register a record as in progress. Returns False for a re-delivery of a done offset."""
        if self._next is not None and offset < self._next and offset not in self._pending:
            # Seen and already done (e.g. re-delivered after a seek): nothing left to do for it.
            return False
        if offset not in self._pending:
            self._pending.add(offset)
            heapq.heappush(self._heap, offset)
        self._next = offset + 1 if self._next is None else max(self._next, offset + 1)
        return True

    def done(self, offset: int) -> None:
        """Mark a tracked record as done (idempotent)."""
        self._pending.discard(offset)
        while self._heap and self._heap[0] not in self._pending:
            heapq.heappop(self._heap)

    def committable(self) -> int | None:
        """The offset to commit (next to read), or None if nothing was ever tracked."""
        if self._heap:
            return self._heap[0]
        return self._next

    @property
    def in_progress(self) -> int:
        return len(self._pending)


@dataclass
class OffsetTracker:
    """``PartitionOffsets`` for every (topic, partition) the sink consumes."""

    partitions: dict[tuple[str, int], PartitionOffsets] = field(default_factory=dict)
    _committed: dict[tuple[str, int], int] = field(default_factory=dict)

    def track(self, ref: SourceRef) -> bool:
        return self.partitions.setdefault(ref.tp, PartitionOffsets()).track(ref.offset)

    def done(self, refs: list[SourceRef] | tuple[SourceRef, ...]) -> None:
        for ref in refs:
            part = self.partitions.get(ref.tp)
            if part is not None:
                part.done(ref.offset)

    def committable(self) -> dict[tuple[str, int], int]:
        """Every partition's commit position (whether or not it moved)."""
        out: dict[tuple[str, int], int] = {}
        for tp, part in self.partitions.items():
            pos = part.committable()
            if pos is not None:
                out[tp] = pos
        return out

    def uncommitted(self) -> dict[tuple[str, int], int]:
        """The positions not committed yet (what the adapter should commit next)."""
        return {tp: pos for tp, pos in self.committable().items() if self._committed.get(tp) != pos}

    def committed(self, positions: dict[tuple[str, int], int]) -> None:
        """``positions`` were committed (or handed to an asynchronous commit)."""
        self._committed.update(positions)

    def commit_failed(self, tp: tuple[str, int], offset: int) -> None:
        """A commit of ``offset`` failed: it is uncommitted again (unless a later one was sent)."""
        if self._committed.get(tp) == offset:
            del self._committed[tp]

    def revoke(self, tps: list[tuple[str, int]]) -> None:
        """Forget partitions lost in a rebalance; their uncommitted records go to the new owner."""
        for tp in tps:
            self.partitions.pop(tp, None)
            self._committed.pop(tp, None)
