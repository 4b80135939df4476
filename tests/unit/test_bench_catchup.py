"""The catch-up benchmark's reading of lags and commits (``bench.catchup``): when a restarted
worker counts as caught up, and which committed-offset samples measure its rate while behind."""

from __future__ import annotations

from bench.catchup import behind_span, caught_up_at

KILL = 100.0


def test_caught_up_from_the_first_point_after_the_last_late_one() -> None:
    points = [(90.0, 0.2), (106.0, 6.0), (107.0, 4.0), (108.0, 0.9), (109.0, 0.3)]
    assert caught_up_at(points, KILL) == 108.0


def test_a_late_point_at_the_end_means_not_caught_up() -> None:
    assert caught_up_at([(106.0, 6.0), (107.0, 0.4), (108.0, 1.5)], KILL) is None


def test_lags_before_the_kill_do_not_count() -> None:
    points = [(95.0, 9.0), (101.0, 0.5), (102.0, 0.4)]
    assert caught_up_at(points, KILL) == 101.0


def test_nothing_applied_after_the_kill_is_not_caught_up() -> None:
    assert caught_up_at([(95.0, 0.1)], KILL) is None


def test_arrival_order_does_not_matter() -> None:
    points = [(109.0, 0.3), (106.0, 6.0), (108.0, 0.9), (107.0, 4.0)]
    assert caught_up_at(points, KILL) == 108.0


def test_a_backlog_worked_off_between_two_samples_still_gives_a_rate() -> None:
    # First application at 103.2, caught up at 103.4: no sample falls strictly inside.
    committed = [(102.5, 1000), (103.0, 1000), (103.5, 1900), (104.0, 2000)]
    assert behind_span(committed, 103.2, 103.4) == ((103.0, 1000), (103.5, 1900))


def test_never_caught_up_spans_to_the_last_sample() -> None:
    committed = [(101.0, 0), (102.0, 100), (103.0, 250)]
    assert behind_span(committed, 101.5, None) == ((101.0, 0), (103.0, 250))


def test_never_applied_again_gives_no_span() -> None:
    assert behind_span([(101.0, 0), (102.0, 0)], None, None) is None
