"""The catch-up benchmark's reading of lags (``bench.catchup``): when a restarted worker counts as
caught up, and how many times the input rate it applied while behind."""

from __future__ import annotations

from bench.catchup import caught_up_at, rate_while_behind

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


STEADY = (80.0, 100.0)  # 20 s before the kill at 100 movements/s: 2,000 points
BEFORE = [(80.0 + i * 0.01, 0.1) for i in range(2000)]


def test_a_backlog_worked_off_in_one_second_is_measured_over_that_second() -> None:
    # First application 3 s after the kill; 500 movements in the next second, then caught up.
    burst = [(103.0 + i * 0.002, 3.0 - i * 0.002) for i in range(500)]
    x = rate_while_behind(BEFORE + burst, first=103.0, caught=103.998, steady=STEADY)
    assert x is not None and 4.9 < x < 5.1  # 500/s over 100/s


def test_never_caught_up_measures_until_the_last_application() -> None:
    slow = [(103.0 + i * 0.02, 5.0) for i in range(101)]  # 50/s for 2 s
    x = rate_while_behind(BEFORE + slow, first=103.0, caught=None, steady=STEADY)
    assert x is not None and 0.49 < x < 0.51


def test_never_applied_again_gives_no_rate() -> None:
    assert rate_while_behind(BEFORE, first=None, caught=None, steady=STEADY) is None
