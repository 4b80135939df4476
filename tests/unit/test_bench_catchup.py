"""The catch-up benchmark's reading of lags (``bench.catchup.caught_up_at``): when a restarted
worker counts as caught up."""

from __future__ import annotations

from bench.catchup import caught_up_at

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
