"""The sink's decisions, driven directly: ``SinkCore`` (what to send next, what an answer
resolves, backpressure) and ``steps`` (what to do with each Shopify answer). No Kafka, no HTTP."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.messages import ShopifyPush
from pipeline.shopify.backoff import Backoff
from pipeline.shopify.budget import CostReport
from pipeline.sink import steps
from pipeline.sink.coalescing import Offer
from pipeline.sink.compare_and_set import CasPolicy, KeyState
from pipeline.sink.core import (
    Again,
    FlushPolicy,
    Idle,
    Pace,
    ReadLevels,
    Send,
    SinkCore,
    backpressure,
)
from pipeline.sink.offsets import OffsetTracker, SourceRef
from pipeline.sink.responses import (
    Applied,
    BatchBug,
    Halt,
    ItemError,
    Outcome,
    Rejected,
    RetryNewKey,
    RetrySameKey,
    Split,
    Throttled,
    Transient,
    classify_transport_error,
)

SHOP = "hot-sneakers.myshopify.com"
TOPIC = "tally.shopify-push.v1"


def push(item: str, version: int, available: int, *, at: float = 0.0) -> ShopifyPush:
    return ShopifyPush(shop=SHOP, inventory_item_id=f"gid://shopify/InventoryItem/{item}",
                       location_id="gid://shopify/Location/1", sku=f"SKU-{item}",
                       branch="main", available=available, ledger_version=version,
                       oldest_event_at=at, emitted_at=at)


def core(window_s: float = 0.0) -> SinkCore:
    return SinkCore.for_shops([SHOP], policy=CasPolicy(hold_for=30.0),
                              flush=FlushPolicy(window_s=window_s, max_reads_per_call=50))


def feed(c: SinkCore, offset: int, p: ShopifyPush, now: float) -> Offer:
    ref = SourceRef(TOPIC, 0, offset)
    assert c.track(ref)
    return c.ingest(p, ref, now).offer


# -- the whole core: records in, answers, commits --------------------------------------------

records = st.lists(
    st.tuples(st.sampled_from(["HOT-TEE", "SLOW-MUG", "RARE-HAT"]), st.integers(1, 8),
              st.integers(0, 50)),
    min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(records, st.randoms(use_true_random=False))
def test_superseded_offsets_commit_only_with_their_superseder(
    recs: list[tuple[str, int, int]], rnd: random.Random
) -> None:
    """Whatever Shopify answers (levels, applied, retry, stale, dead-lettered items), the commit
    position is the oldest record whose key has not resolved its version yet (acknowledged, up to
    date or dead-lettered): never past it, never behind it."""
    c = core()
    resolved: dict[str, int] = {}  # key -> highest version acknowledged or dead-lettered
    seen: list[tuple[str, int]] = []  # (key, version) per offset
    for off, (item, version, qty) in enumerate(recs):
        p = push(item, version, qty)
        feed(c, off, p, float(off))
        seen.append((p.key, version))
        for _ in range(rnd.randint(0, 3)):  # a few shop rounds, answered at random
            plan = c.plan_round(SHOP, float(off))
            for up in plan.acks:
                resolved[up.entry.key] = max(resolved.get(up.entry.key, 0), up.entry.version)
            action = plan.action
            if isinstance(action, ReadLevels):
                levels = [rnd.randint(0, 50) for _ in action.entries]
                c.levels_read(SHOP, action.entries, list(levels), float(off))
            elif isinstance(action, Send):
                n = len(action.items)
                answer = rnd.random()
                if answer < 0.4:
                    for acked in c.applied(action.items, action.pushes):
                        key = acked.item.key
                        resolved[key] = max(resolved.get(key, 0), acked.item.ledger_version)
                elif answer < 0.6:
                    c.rejected(SHOP, action.items, Rejected((), (), tuple(range(n)), None))
                elif answer < 0.8:
                    stale = tuple(i for i in range(n) if rnd.random() < 0.5)
                    retry = tuple(i for i in range(n) if i not in stale)
                    c.rejected(SHOP, action.items, Rejected((), stale, retry, None))
                else:  # some items dead-lettered (Shopify refused them), the rest retried
                    dead = tuple(ItemError(i, "INVALID_LOCATION", "gone", None)
                                 for i in range(n) if rnd.random() < 0.5)
                    retry = tuple(i for i in range(n) if i not in {d.index for d in dead})
                    for item in c.rejected(SHOP, action.items, Rejected(dead, (), retry, None)):
                        key = item.entry.key
                        resolved[key] = max(resolved.get(key, 0), item.entry.version)
        unfinished = [o for o, (key, v) in enumerate(seen) if resolved.get(key, 0) < v]
        pos = c.offsets.committable()[(TOPIC, 0)]
        assert all(o >= pos for o in unfinished), "committed past an unfinished record"
        assert pos == (min(unfinished) if unfinished else off + 1)


def test_a_new_key_is_read_first_then_pushed_and_acknowledged() -> None:
    c = core()
    assert feed(c, 0, push("HOT-TEE", 1, 10), 0.0) is Offer.ACCEPTED
    plan = c.plan_round(SHOP, 0.0)
    assert isinstance(plan.action, ReadLevels)
    assert c.levels_read(SHOP, plan.action.entries, [12], 0.0) == []
    plan = c.plan_round(SHOP, 0.0)
    assert isinstance(plan.action, Send)
    (item,) = plan.action.items
    assert (item.quantity, item.change_from, item.round) == (10, 12, 1)
    assert c.offsets.uncommitted() == {(TOPIC, 0): 0}  # in flight: not done
    (acked,) = c.applied(plan.action.items, plan.action.pushes)
    assert acked.state.acked == 10 and acked.entry is not None
    assert c.offsets.uncommitted() == {(TOPIC, 0): 1}
    assert plan.action.items[0].key not in {e.key for e in c.coalescer.pending(SHOP)}


def test_the_window_and_a_parked_raise_are_waits() -> None:
    c = core(window_s=1.0)
    feed(c, 0, push("HOT-TEE", 1, 10), 0.0)
    assert c.plan_round(SHOP, 0.25).action == Idle(0.75)  # the window, then a read
    assert isinstance(c.plan_round(SHOP, 1.0).action, ReadLevels)
    c = core()
    c.seed(push("HOT-TEE", 1, 10).key, KeyState(acked=7))
    feed(c, 0, push("HOT-TEE", 1, 10), 0.0)
    plan = c.plan_round(SHOP, 0.0)  # acked 7 known: push 10 from 7
    assert isinstance(plan.action, Send)
    c.rejected(SHOP, plan.action.items, Rejected((), (0,), (), None))  # stale
    plan = c.plan_round(SHOP, 1.0)
    assert isinstance(plan.action, ReadLevels)
    c.levels_read(SHOP, plan.action.entries, [4], 1.0)  # Shopify sold 3: hold the raise
    assert c.plan_round(SHOP, 1.0).action == Again()  # parked until the deadline
    assert c.plan_round(SHOP, 2.0).action == Idle(29.0)
    plan = c.plan_round(SHOP, 31.0)  # the ledger wins, with drift
    assert isinstance(plan.action, Send)
    assert plan.action.pushes[plan.action.items[0].key].drift is not None


def test_equal_level_read_is_acknowledged_without_a_push() -> None:
    c = core()
    feed(c, 0, push("HOT-TEE", 3, 10), 0.0)
    plan = c.plan_round(SHOP, 0.0)
    assert isinstance(plan.action, ReadLevels)
    c.levels_read(SHOP, plan.action.entries, [10], 0.0)
    plan = c.plan_round(SHOP, 0.0)
    assert plan.action == Again()
    (up,) = plan.acks
    assert (up.state.acked, up.state.acked_version) == (10, 3)
    assert c.offsets.uncommitted() == {(TOPIC, 0): 1}


def test_an_unreadable_key_is_pushed_from_zero_so_shopify_says_why() -> None:
    c = core()
    feed(c, 0, push("HOT-TEE", 1, 10), 0.0)
    plan = c.plan_round(SHOP, 0.0)
    assert isinstance(plan.action, ReadLevels)
    c.levels_read(SHOP, plan.action.entries, [None], 0.0)
    plan = c.plan_round(SHOP, 0.0)
    assert isinstance(plan.action, Send)
    assert (plan.action.items[0].quantity, plan.action.items[0].change_from) == (10, 0)
    err = ItemError(0, "INVALID_INVENTORY_ITEM", "no such item", None)
    (dead,) = c.rejected(SHOP, plan.action.items, Rejected((err,), (), (), None))
    assert dead.error == err and [r.offset for r in dead.refs] == [0]
    assert c.offsets.uncommitted() == {(TOPIC, 0): 1}


def test_shopify_above_the_ledger_after_a_stale_answer_is_drift() -> None:
    c = core()
    key = push("HOT-TEE", 1, 5).key
    c.seed(key, KeyState(acked=5, acked_version=1, target=5, target_version=1))
    feed(c, 0, push("HOT-TEE", 2, 4), 0.0)
    plan = c.plan_round(SHOP, 0.0)
    assert isinstance(plan.action, Send)
    c.rejected(SHOP, plan.action.items, Rejected((), (0,), (), None))
    plan = c.plan_round(SHOP, 0.0)
    assert isinstance(plan.action, ReadLevels)
    (drift,) = c.levels_read(SHOP, plan.action.entries, [9], 0.0)
    assert (drift.expected, drift.actual) == (4, 9)


def test_a_halt_requeues_the_batch_and_a_budget_short_batch_paces() -> None:
    c = core()
    c.seed(push("HOT-TEE", 1, 5).key, KeyState(acked=5, acked_version=1, target=5,
                                                target_version=1))
    feed(c, 0, push("HOT-TEE", 2, 4), 0.0)
    plan = c.plan_round(SHOP, 0.0)
    assert isinstance(plan.action, Send)
    c.halt(SHOP, "auth", plan.action.items)
    assert c.shops[SHOP].halted == "auth"
    assert [e.version for e in c.coalescer.pending(SHOP)] == [2]
    budget = c.shops[SHOP].budget
    budget.observe(None, CostReport(10.0, 10.0, 1000.0, 0.0, 50.0), 1, 0.0)
    plan = c.plan_round(SHOP, 0.0)
    assert isinstance(plan.action, Pace) and plan.action.seconds > 0


def backlog_core(keys: int, calls: int) -> SinkCore:
    """A shop whose budget is known (10 points per 25 items) and ``keys`` keys already acked
    at 5, each with a new ledger value: a backlog to push."""
    c = SinkCore.for_shops([SHOP], policy=CasPolicy(hold_for=30.0), flush=FlushPolicy(
        window_s=1.0, max_reads_per_call=50, max_calls_in_flight=calls))
    c.shops[SHOP].budget.observe(None, CostReport(10.0, 10.0, 1000.0, 1000.0, 100.0), 25, 0.0)
    for i in range(keys):
        item = f"BULK-{i:04d}"
        c.seed(push(item, 1, 5).key, KeyState(acked=5, acked_version=1, target=5,
                                               target_version=1))
        feed(c, i, push(item, 2, 7), 0.0)
    return c


def test_a_backlog_is_drained_by_full_batches_in_parallel() -> None:
    c = backlog_core(keys=600, calls=3)
    first = c.plan_round(SHOP, 0.0, busy=0).action
    second = c.plan_round(SHOP, 0.0, busy=1).action
    assert isinstance(first, Send) and isinstance(second, Send)
    assert len(first.items) == len(second.items) == 250
    assert not {i.key for i in first.items} & {i.key for i in second.items}
    # 100 keys left, not a full batch: beside calls in flight they wait for their window...
    assert c.plan_round(SHOP, 0.0, busy=2).action == Idle(1.0)
    assert c.plan_round(SHOP, 0.4, busy=2).action == Idle(0.6)
    # ...and then go, without waiting for a (slow) call to end.
    last = c.plan_round(SHOP, 1.0, busy=2).action
    assert isinstance(last, Send) and len(last.items) == 100
    assert not {i.key for i in last.items} & {i.key for i in first.items + second.items}
    assert c.plan_round(SHOP, 1.0, busy=3).action == Idle(1.0)  # nothing left


def test_a_trickle_beside_a_call_waits_for_its_window_and_the_budget() -> None:
    c = backlog_core(keys=10, calls=4)
    assert c.plan_round(SHOP, 0.5, busy=1).action == Idle(0.5)
    c.shops[SHOP].budget.observe(None, CostReport(10.0, 10.0, 1000.0, 0.0, 100.0), 25, 1.0)
    assert isinstance(c.plan_round(SHOP, 1.0, busy=1).action, Pace)  # no points: paced
    sent = c.plan_round(SHOP, 2.0, busy=1).action
    assert isinstance(sent, Send) and len(sent.items) == 10


def test_spare_budget_shortens_the_window_and_a_drained_bucket_restores_it() -> None:
    """A trickle waits the quick window (0.2 s) while the bucket is at least half full, the
    whole window (1 s) once a backlog or another app has drained it below half."""
    c = SinkCore.for_shops([SHOP], policy=CasPolicy(hold_for=30.0), flush=FlushPolicy(
        window_s=1.0, max_reads_per_call=50, max_calls_in_flight=4, quick_window_s=0.2))
    budget = c.shops[SHOP].budget
    budget.observe(None, CostReport(10.0, 10.0, 2000.0, 1990.0, 100.0), 25, 0.0)
    for i in range(3):
        item = f"TRICKLE-{i}"
        c.seed(push(item, 1, 5).key, KeyState(acked=5, acked_version=1, target=5,
                                               target_version=1))
    feed(c, 0, push("TRICKLE-0", 2, 4), 0.0)
    waiting = c.plan_round(SHOP, 0.05).action
    assert isinstance(waiting, Idle) and abs(waiting.timeout - 0.15) < 1e-9
    sent = c.plan_round(SHOP, 0.2).action
    assert isinstance(sent, Send) and len(sent.items) == 1
    # Beside that call a new dirty key waits the quick window too.
    feed(c, 1, push("TRICKLE-1", 2, 3), 0.2)
    assert isinstance(c.plan_round(SHOP, 0.4, busy=1).action, Send)
    # Another app spent the bucket down to 900 of 2000: the whole window again.
    budget.observe(None, CostReport(10.0, 10.0, 2000.0, 900.0, 100.0), 25, 0.4)
    feed(c, 2, push("TRICKLE-2", 2, 2), 0.4)
    assert c.plan_round(SHOP, 0.6).action == Idle(0.8)
    assert c.plan_round(SHOP, 0.6, busy=1).action == Idle(0.8)
    assert isinstance(c.plan_round(SHOP, 1.4).action, Send)


def test_without_a_quick_window_the_window_holds_whatever_the_budget() -> None:
    policy = FlushPolicy(window_s=1.0, max_reads_per_call=50)
    full = SinkCore.for_shops([SHOP], policy=CasPolicy(hold_for=30.0), flush=policy)
    assert policy.window(full.shops[SHOP].budget, 0.0) == 1.0
    quick = FlushPolicy(window_s=0.1, max_reads_per_call=50, quick_window_s=0.2)
    assert quick.window(full.shops[SHOP].budget, 0.0) == 0.1  # never longer than the window


def test_no_more_calls_than_allowed_and_no_reads_beside_a_call() -> None:
    c = backlog_core(keys=600, calls=2)
    assert isinstance(c.plan_round(SHOP, 0.0, busy=0).action, Send)
    assert c.plan_round(SHOP, 0.0, busy=2).action == Idle(1.0)  # two in flight: the limit
    c = SinkCore.for_shops([SHOP], policy=CasPolicy(hold_for=30.0), flush=FlushPolicy(
        window_s=0.0, max_reads_per_call=50, max_calls_in_flight=4))
    c.shops[SHOP].budget.observe(None, CostReport(10.0, 10.0, 1000.0, 1000.0, 100.0), 25, 0.0)
    for i in range(300):  # keys never seen: each is read before its push
        feed(c, i, push(f"NEW-{i:04d}", 1, 3), 0.0)
    assert isinstance(c.plan_round(SHOP, 0.0, busy=1).action, Idle)
    assert isinstance(c.plan_round(SHOP, 0.0, busy=0).action, ReadLevels)


def test_a_reassert_forgets_what_shopify_holds_and_reads_again() -> None:
    c = core()
    key = push("HOT-TEE", 1, 5).key
    c.seed(key, KeyState(acked=5, acked_version=3, target=5, target_version=3))
    ref = SourceRef(TOPIC, 0, 0)
    c.track(ref)
    got = c.ingest(push("HOT-TEE", 3, 5), ref, 0.0, reassert=True)
    assert got.offer is Offer.ACCEPTED and got.reasserted
    assert key in c.shops[SHOP].stale and c.state(key).acked is None
    assert isinstance(c.plan_round(SHOP, 0.0).action, ReadLevels)


def test_revoke_returns_positions_and_forgets_the_partition() -> None:
    c = core()
    feed(c, 0, push("HOT-TEE", 1, 5), 0.0)
    assert c.revoke([(TOPIC, 0)]) == {(TOPIC, 0): 0}
    assert c.offsets.committable() == {}


def test_backpressure_follows_the_records_held() -> None:
    c = core()
    for off in range(4):
        feed(c, off, push("HOT-TEE", off + 1, 5), 0.0)
    assert c.held() == {(TOPIC, 0): 4}
    assert c.backpressure(set(), 4) == ({(TOPIC, 0)}, set())
    assert backpressure({(TOPIC, 0): 1}, {(TOPIC, 0)}, 4) == (set(), {(TOPIC, 0)})


def test_one_offsets_tracker_remembers_what_was_committed() -> None:
    t = OffsetTracker()
    a = SourceRef(TOPIC, 0, 10)
    t.track(a)
    assert t.uncommitted() == {(TOPIC, 0): 10}
    t.committed({(TOPIC, 0): 10})
    assert t.uncommitted() == {}
    t.done([a])
    t.committed({(TOPIC, 0): 11})
    t.commit_failed((TOPIC, 0), 10)  # an older commit failing changes nothing
    assert t.uncommitted() == {}
    t.commit_failed((TOPIC, 0), 11)
    assert t.uncommitted() == {(TOPIC, 0): 11}


# -- steps: what each answer means ------------------------------------------------------------

NO_JITTER = Backoff(base=1.0, cap=8.0, rand=lambda: 1.0)
cost = st.none() | st.just(CostReport(1.0, 1.0, 1000.0, 900.0, 50.0))
outcomes = st.one_of(
    st.builds(Applied, st.none(), cost),
    st.builds(Throttled, cost),
    st.builds(Transient, st.sampled_from(["http_429", "http_503", "transport:timeout",
                                          "graphql_TIMEOUT"]),
              st.none() | st.floats(0, 1000), cost),
    st.builds(Rejected, st.just(()), st.just((0,)), st.just(()), cost),
    st.builds(RetrySameKey, cost),
    st.builds(RetryNewKey, cost),
    st.builds(Split, st.just("MAX_COST_EXCEEDED"), cost),
    st.builds(BatchBug, st.just("IDEMPOTENCY_KEY_PARAMETER_MISMATCH"), st.just("x"), cost),
    st.builds(Halt, st.just("auth"), st.just("HTTP 401")),
)


@given(st.lists(outcomes, min_size=1, max_size=20), st.integers(1, 250))
def test_send_steps_retry_until_a_final_answer(answers: list[Outcome], n: int) -> None:
    state = steps.SendAttempt()
    for outcome in answers:
        before = state
        state, step = steps.send_step(state, outcome, n, NO_JITTER, 10.0)
        if isinstance(step, steps.Retry):
            assert state.attempt == before.attempt + 1
            assert state.salt == before.salt + (1 if isinstance(outcome, RetryNewKey) else 0)
            assert step.new_key == isinstance(outcome, RetryNewKey)
            if isinstance(outcome, Throttled | RetryNewKey):
                assert step.delay is None  # the budget paces it / a new key at once
            else:
                assert step.delay is not None and step.delay >= 0
            if isinstance(outcome, Transient) and outcome.reason.startswith("transport:"):
                assert step.delay is not None and step.delay <= 10.0
            elif isinstance(outcome, Transient) and outcome.retry_after is not None:
                assert step.delay is not None
                assert step.delay >= min(outcome.retry_after, NO_JITTER.max_retry_after)
            assert step.throttled == (isinstance(outcome, Throttled)
                                      or getattr(outcome, "reason", "") == "http_429")
            continue
        assert state == before  # a final answer leaves the attempt as it was
        expected: dict[type, type] = {Applied: steps.AckAll, Rejected: steps.HandleRejected,
                                      BatchBug: steps.DeadLetterAll, Halt: steps.HaltShop}
        if isinstance(outcome, Split):
            assert isinstance(step, steps.DeadLetterAll if n == 1 else steps.SplitHalves)
        else:
            assert isinstance(step, expected[type(outcome)])


def test_transport_failures_wait_at_most_the_deadline() -> None:
    state = steps.SendAttempt(attempt=10)
    _, step = steps.send_step(state, classify_transport_error("timeout"), 3, NO_JITTER, 2.5)
    assert step == steps.Retry("transport:timeout", False, 2.5)


def test_read_steps() -> None:
    body = {"data": {"l0": {"inventoryLevel": {"quantities": [
        {"name": "available", "quantity": 7}]}}, "l1": None}}
    assert steps.read_step(200, body, None, 2, 0, NO_JITTER) == steps.LevelsRead([7, None])
    throttled = {"errors": [{"extensions": {"code": "THROTTLED"}}]}
    assert steps.read_step(200, throttled, None, 2, 0, NO_JITTER) == steps.RetryRead(
        "read_throttled", True, None)
    assert steps.read_step(502, None, None, 2, 1, NO_JITTER) == steps.RetryRead(
        "read_502", False, 2.0)
    assert steps.read_step(0, None, "timeout", 2, 0, NO_JITTER) == steps.RetryRead(
        "read_timeout", False, 1.0)
    assert steps.read_step(401, None, None, 2, 0, NO_JITTER) == steps.HaltRead(
        "auth", "HTTP 401 reading levels")
    report = CostReport(40.0, 40.0, 1000.0, 900.0, 50.0)
    assert steps.read_cost_per_item(report, 20, 4.0) == 2.0
    assert steps.read_cost_per_item(None, 20, 4.0) == 4.0

