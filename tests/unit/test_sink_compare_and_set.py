"""Compare-and-set never re-inflates stock Shopify sold; the ledger wins after the deadline."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.sink import compare_and_set as cas
from pipeline.sink.compare_and_set import CasPolicy, KeyState, Push, ReadLevel, UpToDate, Wait

POLICY = CasPolicy(hold_for=30.0)


def test_first_push_reads_the_level_first_never_blind_null() -> None:
    s = cas.observe_ledger(KeyState(), 10, 1)
    assert cas.decide(s, 0.0)[1] == ReadLevel()
    s = cas.on_level(s, 12, 0.0, POLICY)
    _, d = cas.decide(s, 0.0)
    assert d == Push(quantity=10, change_from=12, version=1, round=1)


def test_online_sale_before_webhook_holds_the_raise_then_ledger_catches_up() -> None:
    # Tally set 10; Shopify sold 3 (level 7) before the webhook reached the ledger; a restock of
    # +5 makes the ledger say 15 (it does not know the sale yet).
    s = KeyState(acked=10, acked_version=1)
    s = cas.observe_ledger(s, 15, 2)
    s, d = cas.decide(s, 0.0)
    assert d == Push(15, 10, 2, 0)
    s = cas.on_stale(s)
    assert cas.decide(s, 1.0)[1] == ReadLevel()
    s = cas.on_level(s, 7, 1.0, POLICY)
    s, d = cas.decide(s, 1.0)
    assert d == Wait(31.0) and s.acked == 7  # keep Shopify's 7
    # the webhook lands: ledger now 12 = 15 - 3 → still a raise from 7 (5 restocked): held
    s = cas.observe_ledger(s, 12, 3)
    assert cas.decide(s, 5.0)[1] == Wait(31.0)
    # later the ledger value drops below Shopify's level: pushed at once
    s = cas.observe_ledger(s, 6, 4)
    s, d = cas.decide(s, 6.0)
    assert d == Push(6, 7, 4, 1)
    s = cas.on_success(s, d)
    assert s.hold is None and s.acked == 6


def test_ledger_wins_after_deadline_and_reports_drift() -> None:
    s = cas.on_level(cas.observe_ledger(KeyState(acked=10), 15, 2), 7, 0.0, POLICY)
    assert isinstance(cas.decide(s, 29.9)[1], Wait)
    s, d = cas.decide(s, 30.0)
    assert isinstance(d, Push) and (d.quantity, d.change_from) == (15, 7)
    assert d.drift is not None and (d.drift.expected, d.drift.actual, d.drift.difference) == (
        15,
        7,
        8,
    )
    s = cas.on_success(s, d)
    assert (s.acked, s.hold) == (15, None)


def test_deadline_is_not_extended_by_new_ledger_values() -> None:
    s = cas.on_level(cas.observe_ledger(KeyState(acked=10), 15, 2), 7, 0.0, POLICY)
    s = cas.on_stale(cas.observe_ledger(s, 16, 3))
    s = cas.on_level(s, 7, 20.0, POLICY)
    assert cas.decide(s, 20.0)[1] == Wait(30.0)


def test_equal_to_read_level_is_up_to_date_and_state_round_trips() -> None:
    s = cas.on_level(cas.observe_ledger(KeyState(), 5, 2), 5, 0.0, POLICY)
    s, d = cas.decide(s, 0.0)
    assert d == UpToDate(2) and s.acked_version == 2
    held = cas.on_level(cas.observe_ledger(s, 9, 3), 4, 1.0, POLICY)
    assert KeyState.from_dict(held.to_dict()) == held


def test_reasserted_equal_value_is_still_checked_against_shopify() -> None:
    s = cas.observe_ledger(KeyState(acked=5, acked_version=1), 5, 2)
    assert cas.decide(s, 0.0)[1] == Push(5, 5, 2, 0)  # stale if Shopify drifted: exposes it


def test_negative_ledger_value_is_pushed_as_zero() -> None:
    s = cas.observe_ledger(KeyState(acked=2), -3, 1)
    assert cas.decide(s, 0.0)[1] == Push(0, 2, 1, 0)


events = st.lists(
    st.one_of(
        st.tuples(st.just("ledger"), st.integers(0, 30)),
        st.tuples(st.just("sale"), st.integers(1, 5)),  # Shopify lowers its level on its own
        st.tuples(st.just("tick"), st.floats(0.0, 20.0)),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(st.integers(0, 30), events)
def test_never_raises_above_shopify_while_held_and_ledger_wins_after(
    start: int, evs: list[tuple[str, float]]
) -> None:
    shopify = start  # the oracle: Shopify's real level
    s, now, version = KeyState(), 0.0, 0
    for kind, arg in evs:
        if kind == "ledger":
            version += 1
            s = cas.observe_ledger(s, int(arg), version)
        elif kind == "sale":
            shopify = max(0, shopify - int(arg))
        else:
            now += arg
        # run the key to quiescence, like the adapter would
        for _ in range(4):
            s, d = cas.decide(s, now)
            if isinstance(d, ReadLevel):
                s = cas.on_level(s, shopify, now, POLICY)
                continue
            if not isinstance(d, Push):
                break
            if d.change_from != shopify:
                s = cas.on_stale(s)  # Shopify's CAS refuses it
                continue
            if s.hold is not None and now < s.hold.deadline:
                assert d.quantity <= shopify, "raised Shopify while a raise was held"
            if d.drift is not None:
                assert now >= d.drift.held_since + POLICY.hold_for
                assert d.quantity == s.target and d.drift.actual == shopify
            shopify = d.quantity
            s = cas.on_success(s, d)
    # the ledger re-asserts its value (e.g. reconciliation); after a quiet period past any
    # deadline the ledger has won, whatever Shopify did meanwhile
    if s.target is not None:
        s = cas.observe_ledger(s, s.target, version + 1)
        for _ in range(8):
            s, d = cas.decide(s, now)
            if isinstance(d, ReadLevel):
                s = cas.on_level(s, shopify, now, POLICY)
            elif isinstance(d, Wait):
                now = d.until
            elif isinstance(d, Push):
                if d.change_from != shopify:
                    s = cas.on_stale(s)
                    continue
                shopify = d.quantity
                s = cas.on_success(s, d)
            else:
                break
        assert shopify == s.target
