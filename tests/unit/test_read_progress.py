"""ReadProgress: every input record processed once, in order, and never committed unprocessed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.reading.progress import Action, ReadProgress

TP = ("tally.movements.v1", 0)


def started(committed: int = 0, now: float = 0.0) -> ReadProgress[tuple[str, int]]:
    progress: ReadProgress[tuple[str, int]] = ReadProgress()
    progress.start(TP, committed, now)
    return progress


def test_records_in_order_are_processed_and_committed_one_past_the_last() -> None:
    progress = started(committed=10)
    for offset in (10, 11, 12):
        assert progress.admit(TP, offset, 0.0).process
        progress.done(TP, offset, 0.0)
    assert progress.to_commit() == {TP: 13}
    progress.committed({TP: 13})
    assert progress.to_commit() == {}


def test_a_replayed_record_is_dropped() -> None:
    progress = started(committed=5)
    assert progress.admit(TP, 5, 0.0).process
    progress.done(TP, 5, 0.0)
    assert progress.admit(TP, 5, 0.0).action is Action.ALREADY_READ
    assert progress.admit(TP, 3, 0.0).action is Action.ALREADY_READ


def test_a_jump_past_the_committed_offset_seeks_back_and_is_never_committed() -> None:
    # The restart case from the kill -9 soak: the consumer resumes past the committed offset.
    progress = started(committed=100)
    verdict = progress.admit(TP, 140, 0.0)
    assert verdict.action is Action.SEEK and verdict.seek_to == 100
    assert progress.to_commit() == {}
    # Records fetched before the seek keep arriving for a moment: dropped, no second seek.
    assert progress.admit(TP, 141, 0.2).action is Action.WAIT
    assert progress.admit(TP, 100, 0.3).process


def test_a_record_the_consumer_never_delivered_is_read_again_not_skipped() -> None:
    progress = started(committed=0)
    for offset in (0, 1):
        assert progress.admit(TP, offset, 0.0).process
        progress.done(TP, offset, 0.0)
    assert progress.admit(TP, 3, 0.0).seek_to == 2  # offset 2 vanished mid-stream
    assert progress.to_commit() == {TP: 2}


def test_after_repeated_seeks_the_broker_is_asked_and_a_real_hole_is_passed_over() -> None:
    # e.g. offset 7 compacted away upstream, or deleted by retention before it was read.
    progress = started(committed=7)
    now = 0.0
    verdict = progress.admit(TP, 8, now)
    while verdict.action is Action.SEEK:
        now += 1.0
        verdict = progress.admit(TP, 8, now)
    assert verdict.action is Action.PROBE and verdict.seek_to == 7
    assert progress.to_commit() == {}  # nothing passed over on the seeks' evidence alone
    assert progress.hole(TP, 8, now) == 1  # the broker's first record from 7 is 8
    assert progress.admit(TP, 8, now).process
    progress.done(TP, 8, now)
    assert progress.to_commit() == {TP: 9}


def test_records_still_draining_after_many_seeks_are_never_taken_for_a_hole() -> None:
    # The failover case: thousands of records fetched before the seek drain for seconds.
    progress = started(committed=857)
    offset, now = 982, 0.0
    for _ in range(40):
        verdict = progress.admit(TP, offset, now)
        assert verdict.action in (Action.SEEK, Action.PROBE, Action.WAIT)
        offset, now = offset + 100, now + 0.4
    assert progress.admit(TP, 857, now).process


def test_seeks_closer_together_than_the_interval_do_not_count_towards_a_probe() -> None:
    progress = started(committed=7)
    assert progress.admit(TP, 8, 0.0).action is Action.SEEK
    for i in range(50):  # a burst of stale records right after the seek
        assert progress.admit(TP, 8 + i, 0.01 * i).action is Action.WAIT


def test_stalled_partition_is_read_again_once_records_wait_and_nothing_came() -> None:
    progress = started(committed=20, now=0.0)
    assert progress.stalled(TP, end_offset=20, now=100.0) is None  # caught up
    assert progress.stalled(TP, end_offset=30, now=1.0) is None  # not for long enough
    assert progress.stalled(TP, end_offset=30, now=6.0) == 20
    assert progress.stalled(TP, end_offset=30, now=7.0) is None  # just seeked


def test_a_partition_still_stalled_after_a_reread_waits_twice_as_long_each_time() -> None:
    # A starved partition under a backlog: each re-read throws its fetched records away.
    progress = started(committed=20, now=0.0)
    rereads = [t for t in range(0, 400) if progress.stalled(TP, 30, float(t)) is not None]
    assert rereads[:6] == [5, 15, 35, 55, 75, 95]  # 5, 10, then 20 s apart
    # It moved: the next stall is noticed after 5 s again.
    assert progress.admit(TP, 20, 400.0).process
    progress.done(TP, 20, 400.0)
    assert progress.stalled(TP, 30, 404.0) is None
    assert progress.stalled(TP, 30, 405.0) == 21


def test_done_after_the_partition_was_revoked_changes_nothing() -> None:
    progress = started(committed=4)
    assert progress.admit(TP, 4, 0.0).process
    progress.forget([TP])
    progress.done(TP, 4, 0.0)
    assert not progress.known(TP)
    assert progress.to_commit() == {}


def test_commit_is_limited_to_the_partitions_asked_for() -> None:
    other = ("tally.movements.v1", 1)
    progress = started(committed=0)
    progress.start(other, 0, 0.0)
    for tp in (TP, other):
        progress.admit(tp, 0, 0.0)
        progress.done(tp, 0, 0.0)
    assert progress.to_commit([other]) == {other: 1}


# A consumer that misbehaves the ways faust was seen to: it jumps ahead, replays old records,
# keeps delivering records fetched before a seek, and only sometimes honours a seek at once.
@st.composite
def misbehaviours(draw: st.DrawFn) -> list[tuple[str, int]]:
    return draw(st.lists(st.tuples(st.sampled_from(["next", "jump", "replay", "stale"]),
                                   st.integers(1, 20)), min_size=1, max_size=120))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 200), committed=st.integers(0, 50), script=misbehaviours())
def test_every_record_is_processed_exactly_once_in_order_whatever_the_consumer_does(
        n: int, committed: int, script: list[tuple[str, int]]) -> None:
    log_end = committed + n
    progress = started(committed=committed)
    position = committed  # where the consumer fetches next
    stale: list[int] = []  # fetched before the last seek, still to be delivered
    processed: list[int] = []
    now = 0.0
    steps = iter(script)
    for _ in range(100_000):
        if len(processed) == n and not stale:
            break
        kind, k = next(steps, ("next", 1))  # after the script it behaves
        now += 0.05
        if kind == "jump":
            position = min(position + k, log_end)
            continue
        if kind == "replay":
            position = max(committed, position - k)
            continue
        if kind == "stale" or stale:
            if not stale:
                continue
            offset = stale.pop(0)
        else:
            if position >= log_end:
                seek_to = progress.stalled(TP, log_end, now)
                if seek_to is not None:
                    position = seek_to
                now += 1.0
                continue
            offset, position = position, position + 1
        verdict = progress.admit(TP, offset, now)
        if verdict.action in (Action.SEEK, Action.PROBE):  # a probe finds the record: no hole
            assert verdict.seek_to is not None
            stale = list(range(position, min(position + k, log_end)))
            position = verdict.seek_to
        elif verdict.process:
            processed.append(offset)
            progress.done(TP, offset, now)
        commit = progress.to_commit()
        if commit:
            assert commit[TP] == committed + len(processed)  # never past an unprocessed record
            progress.committed(commit)
    assert processed == list(range(committed, log_end))


def test_records_deleted_by_retention_are_passed_over_once_the_broker_says_so() -> None:
    progress = started(committed=10)
    assert progress.admit(TP, 50, 0.0).seek_to == 10
    assert progress.hole(TP, 40, 0.5) == 30
    assert progress.admit(TP, 40, 0.6).process


def test_on_a_topic_with_transactions_each_marker_is_probed_at_once() -> None:
    # An upstream producer commits a transaction every few records: offsets 3 and 7 are
    # commit markers. Each first jump is probed with no waiting, even right after another.
    progress = started(committed=0)
    now = 0.0
    for offset in (0, 1, 2):
        assert progress.admit(TP, offset, now, holes_expected=True).process
        progress.done(TP, offset, now)
    for marker, after in ((3, 4), (7, 8)):
        for offset in range(progress.partitions[TP].next_offset, marker):
            assert progress.admit(TP, offset, now, holes_expected=True).process
            progress.done(TP, offset, now)
        verdict = progress.admit(TP, after, now, holes_expected=True)
        assert verdict.action is Action.PROBE and verdict.seek_to == marker
        assert progress.hole(TP, after, now) == 1
        assert progress.admit(TP, after, now, holes_expected=True).process
        progress.done(TP, after, now)
        now += 0.01
    assert progress.to_commit() == {TP: 9}


def test_a_probe_that_finds_the_record_there_falls_back_to_seeking() -> None:
    progress = started(committed=10)
    assert progress.admit(TP, 12, 0.0, holes_expected=True).action is Action.PROBE
    # The probe found offset 10 on the broker (the consumer skipped it): the reader seeks back;
    # records fetched before the seek still drain and are dropped while it takes effect.
    assert progress.admit(TP, 13, 0.1, holes_expected=True).action is Action.WAIT
    assert progress.admit(TP, 10, 0.2, holes_expected=True).process


def test_records_draining_after_a_slow_probe_wait_instead_of_seeking_again() -> None:
    # The probe took 3 s (executor busy): the seek is issued at t=3, and records fetched
    # before it keep arriving; they must not set off another seek until 1 s after the seek.
    progress = started(committed=10)
    assert progress.admit(TP, 15, 0.0, holes_expected=True).action is Action.PROBE
    progress.seeked(TP, 3.0)
    assert progress.admit(TP, 16, 3.5, holes_expected=True).action is Action.WAIT
    assert progress.admit(TP, 10, 3.6, holes_expected=True).process


def test_a_rewind_reads_again_from_the_last_commit_and_commits_nothing_before() -> None:
    # What was produced since the last commit may be lost (agents/direct_producer.py): every
    # partition that moved goes back to its committed offset; one that did not stays.
    progress = started(committed=10)
    idle = ("tally.movements.v1", 1)
    progress.start(idle, 7, 0.0)
    for offset in (10, 11, 12):
        assert progress.admit(TP, offset, 0.0).process
        progress.done(TP, offset, 0.0)
    assert progress.rewind(1.0) == {TP: 10}
    assert progress.to_commit() == {}
    assert progress.admit(TP, 13, 1.0).seek_to == 10  # records fetched before: read again
    assert progress.admit(TP, 10, 1.0).process
    progress.done(TP, 10, 1.0)
    assert progress.to_commit() == {TP: 11}
