"""Coalescing keeps the newest version per key; offsets never commit past unfinished records."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.messages import ShopifyPush
from pipeline.sink.coalescing import Coalescer, Offer
from pipeline.sink.offsets import OffsetTracker, PartitionOffsets, SourceRef

SHOP = "hot-sneakers.myshopify.com"
TOPIC = "tally.shopify-push.v1"


def push(
    item: str, version: int, available: int, *, at: float = 0.0, shop: str = SHOP
) -> ShopifyPush:
    return ShopifyPush(
        shop=shop,
        inventory_item_id=f"gid://shopify/InventoryItem/{item}",
        location_id="gid://shopify/Location/1",
        sku=f"SKU-{item}",
        branch="main",
        available=available,
        ledger_version=version,
        oldest_event_at=at,
        emitted_at=at,
    )


# -- offsets ---------------------------------------------------------------------------------


@given(st.integers(1, 60).flatmap(lambda n: st.permutations(list(range(n)))))
def test_commit_never_passes_an_unfinished_offset(ack_order: list[int]) -> None:
    part = PartitionOffsets()
    n = len(ack_order)
    for off in range(n):
        part.track(100 + off)
    done: set[int] = set()
    for off in ack_order:
        part.done(100 + off)
        done.add(off)
        unfinished = [o for o in range(n) if o not in done]
        expected = 100 + (min(unfinished) if unfinished else n)
        assert part.committable() == expected


def test_redelivered_done_offset_is_not_tracked_again() -> None:
    part = PartitionOffsets()
    part.track(5)
    part.track(6)
    part.done(5)
    assert part.track(5) is False
    assert part.committable() == 6


def test_to_commit_reports_only_moved_partitions() -> None:
    tracker = OffsetTracker()
    a, b = SourceRef(TOPIC, 0, 10), SourceRef(TOPIC, 1, 3)
    tracker.track(a)
    tracker.track(b)

    def to_commit() -> dict[tuple[str, int], int]:  # what the sink's commit does
        positions = tracker.uncommitted()
        tracker.committed(positions)
        return positions

    assert to_commit() == {(TOPIC, 0): 10, (TOPIC, 1): 3}
    tracker.done([a])
    assert to_commit() == {(TOPIC, 0): 11}
    assert to_commit() == {}


# -- coalescing ------------------------------------------------------------------------------

records = st.lists(
    st.tuples(
        st.sampled_from(["HOT-TEE", "SLOW-MUG", "RARE-HAT"]), st.integers(1, 8), st.integers(0, 50)
    ),
    min_size=1,
    max_size=60,
)


@given(records)
def test_pending_holds_max_version_first_seen_value(recs: list[tuple[str, int, int]]) -> None:
    c = Coalescer()
    for off, (item, version, qty) in enumerate(recs):
        c.offer(push(item, version, qty), SourceRef(TOPIC, 0, off), now=float(off))
    pending = {e.push.inventory_item_id.rsplit("/", 1)[1]: e for e in c.pending(SHOP)}
    for item in {r[0] for r in recs}:
        mine = [(off, r) for off, r in enumerate(recs) if r[0] == item]
        top = max(r[1] for _, r in mine)
        winner = next(r for _, r in mine if r[1] == top)  # equal versions are duplicates
        entry = pending[item]
        assert entry.version == top
        assert entry.push.available == winner[2]
        # every record of the key rides on the entry, so its offset commits with it
        assert sorted(s.offset for s in entry.sources) == [off for off, _ in mine]
        assert entry.dirty_since == float(mine[0][0])
    assert c.superseded == len(recs) - len(pending)


# The same property through the whole core (records, rounds, answers): test_sink_core.py.


def test_hot_key_coalesces_to_one_push_and_old_versions_are_dropped_after_ack() -> None:
    c = Coalescer()
    for v in range(1, 101):
        c.offer(push("HOT-TEE", v, 100 - v), SourceRef(TOPIC, 0, v), now=v / 100)
    (entry,) = c.take([e.key for e in c.eligible(SHOP, now=2.0)])
    assert entry.version == 100 and len(entry.sources) == 100
    assert c.superseded == 99
    assert len(c.resolve(entry.key)) == 100
    # a late duplicate of an acknowledged version is done at once
    assert c.offer(push("HOT-TEE", 99, 1), SourceRef(TOPIC, 0, 101), now=3.0) is Offer.ALREADY_DONE


def test_newer_value_while_in_flight_waits_its_turn_and_requeue_keeps_newest() -> None:
    c = Coalescer()
    c.offer(push("SLOW-MUG", 1, 5), SourceRef(TOPIC, 0, 1), now=0.0)
    (first,) = c.take([e.key for e in c.eligible(SHOP, now=0.0)])
    assert c.offer(push("SLOW-MUG", 2, 4), SourceRef(TOPIC, 0, 2), now=1.0) is Offer.ACCEPTED
    assert c.eligible(SHOP, now=1.0) == []  # one call per key at a time
    c.requeue(first.key)  # first call failed transiently: the newer value replaces it
    (entry,) = c.pending(SHOP)
    assert entry.version == 2 and {s.offset for s in entry.sources} == {1, 2}
    assert entry.dirty_since == 0.0


def test_batch_order_is_by_record_content_not_arrival() -> None:
    a, b = Coalescer(), Coalescer()
    recs = [
        push("RARE-HAT", 1, 1, at=5.0),
        push("HOT-TEE", 1, 1, at=1.0),
        push("SLOW-MUG", 1, 1, at=3.0),
    ]
    for i, r in enumerate(recs):
        a.offer(r, None, now=float(i))
    for i, r in enumerate(reversed(recs)):
        b.offer(r, None, now=100.0 + i)
    assert [e.key for e in a.pending(SHOP)] == [e.key for e in b.pending(SHOP)]
    assert [e.push.sku for e in a.pending(SHOP)] == ["SKU-HOT-TEE", "SKU-SLOW-MUG", "SKU-RARE-HAT"]


def test_shops_are_independent_and_parking_excludes_keys() -> None:
    c = Coalescer()
    c.offer(push("HOT-TEE", 1, 1), None, now=0.0)
    c.offer(push("HOT-TEE", 1, 1, shop="quiet-store.myshopify.com"), None, now=0.0)
    assert c.shops() == ["hot-sneakers.myshopify.com", "quiet-store.myshopify.com"]
    key = c.pending(SHOP)[0].key
    c.park(key, until=30.0)
    assert c.eligible(SHOP, now=10.0) == []
    assert [e.key for e in c.eligible(SHOP, now=30.0)] == [key]
    assert c.oldest_dirty_age(SHOP, now=30.0) == 30.0


@given(st.lists(st.tuples(st.sampled_from(["HOT-TEE", "SLOW-MUG", "RARE-HAT", "NEW-CAP"]),
                          st.integers(1, 5), st.floats(0, 100), st.booleans()),
                max_size=40))
def test_the_counted_and_unordered_views_match_the_ordered_one(
        ops: list[tuple[str, int, float, bool]]) -> None:
    """What a round reads cheaply (a count, an unordered list) is what the batch order sees."""
    c = Coalescer()
    for item, version, at, send in ops:
        c.offer(push(item, version, 1, at=at), None, now=at)
        if send and (ready := c.eligible(SHOP, now=at)):
            c.take([ready[0].key])
        pending = c.pending(SHOP)
        assert c.pending_count(SHOP) == len(pending)
        assert sorted(c.pending(SHOP, ordered=False), key=lambda e: e.sort_key()) == pending
        assert sorted(c.eligible(SHOP, 50.0, ordered=False),
                      key=lambda e: e.sort_key()) == c.eligible(SHOP, 50.0)
        assert all(e.key == e.push.key for e in pending)


def test_backpressure_pauses_at_the_limit_and_resumes_below_half() -> None:
    from pipeline.sink.core import backpressure

    a, b, c = ("push", 0), ("push", 1), ("push", 2)
    assert backpressure({a: 99, b: 100, c: 0}, set(), 100) == ({b}, set())
    assert backpressure({a: 99, b: 120}, {b}, 100) == (set(), set())    # still paused
    assert backpressure({a: 99, b: 50}, {b}, 100) == (set(), set())     # not below half yet
    assert backpressure({a: 99, b: 49}, {b}, 100) == (set(), {b})
    assert backpressure({a: 0}, {b}, 100) == (set(), set())             # b was revoked
