"""Watermark arithmetic for the delta pull. Pure: times are epoch seconds passed in.

A poll asks the source for records *recorded* in ``[since, until)`` where
``since = watermark - overlap`` and ``until = now - settle``. The overlap re-reads the tail of the
previous window, so a record committed late with a slightly older timestamp is still seen (dedupe
by ``source + transaction_id + line`` makes the re-read harmless). ``settle`` leaves out the
last seconds, which a source may still be writing. The watermark moves to ``until`` only after
every record of the window was acknowledged by Kafka; a crash before that repeats the window.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Window:
    since: float
    until: float

    def contains(self, t: float) -> bool:
        return self.since <= t < self.until


def next_window(watermark: float | None, now: float, *, overlap_s: float, settle_s: float,
                initial_s: float = 0.0) -> Window | None:
    """The next window to poll, or None when nothing new can be asked yet."""
    until = now - settle_s
    start = initial_s if watermark is None else watermark
    if until <= start:
        return None
    return Window(since=max(initial_s, start - overlap_s) if watermark is not None else start,
                  until=until)


def advance(watermark: float | None, window: Window) -> float:
    """The watermark after every record of ``window`` is acknowledged: never moves back."""
    return window.until if watermark is None else max(watermark, window.until)
