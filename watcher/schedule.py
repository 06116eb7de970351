"""When an exercise's windows are open. No clock, no I/O, no module state; every datetime
returned is UTC. :class:`WindowFinder` keeps a memo, owned by whoever holds the finder.

A cron start is a local wall-clock time in the exercise's time zone; ``duration`` is elapsed
time. Starts are found by running the cron expression over *naive* local times and giving each
one ``fold=0`` in the zone, which is exactly the rule of docs/design.md "Exercise windows": a
local time skipped by a spring-forward change lands one gap later (02:30 becomes 03:30), and a
repeated one (fall back) takes its first occurrence. A skipped time can therefore come out later
in UTC than the next cron match, so starts pass through a small heap before they are yielded in
order.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from operator import attrgetter
from zoneinfo import ZoneInfo

from cronsim import CronSim

from watcher.model import Exercise, Window

# Every tzinfo's UTC offset is strictly within a day (a datetime invariant), so the UTC instant of
# a naive local time n lies in (n - 1 day, n + 1 day): the one bound that holds in every zone.
_OFFSET_BOUND = timedelta(days=1)
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)

# WindowFinder memo: per exercise, every window starting in (lo, hi], at least a week ahead.
_SPAN_AHEAD = timedelta(days=7)
_SPAN_AHEAD_MAX_STARTS = 64
_SPANS_KEPT = 256


def iter_starts(exercise: Exercise, after: datetime) -> Iterator[datetime]:
    """Window starts strictly after ``after``, in order, as UTC datetimes."""
    after = _utc(after)
    if exercise.schedule is None:
        if exercise.start is not None and _utc(exercise.start) > after:
            yield _utc(exercise.start)
        return
    zone = ZoneInfo(exercise.timezone)
    naive_after = after.replace(tzinfo=None)
    pending: list[datetime] = []
    last: datetime | None = None
    for local in CronSim(exercise.schedule, naive_after - _OFFSET_BOUND):
        start = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if start > after:
            heapq.heappush(pending, start)
        # Every later cron match starts after this instant, so earlier pending starts are final.
        settled = local.replace(tzinfo=UTC) - _OFFSET_BOUND
        while pending and pending[0] <= settled:
            start = heapq.heappop(pending)
            if start != last:
                last = start
                yield start
    for start in sorted(pending):
        if start != last:
            last = start
            yield start


def window_at(exercise: Exercise, t: datetime) -> Window | None:
    """The window of ``exercise`` containing ``t`` (start inclusive, end exclusive), or None.

    Should windows overlap (validation rejects that for the next two years), the latest wins.
    A fresh search each call; :class:`WindowFinder` answers repeated calls from a memo.
    """
    t = _utc(t)
    if exercise.schedule is None:
        window = _one_off(exercise)
        return window if window is not None and window.contains(t) else None
    length = _length(exercise)
    found: Window | None = None
    for start in iter_starts(exercise, t - length):
        if start > t:
            break
        found = Window(exercise.name, start, start + length)
    return found


class WindowFinder:
    """:func:`window_at` with a memo per exercise, for a caller that asks many times (the
    classifier, once per event): a call inside the span of a previous one is a binary search.

    The memo belongs to the finder, so whoever owns the finder owns the memory; it keeps at most
    a fixed number of exercises.
    """

    def __init__(self) -> None:
        self._spans: dict[Exercise, _Span] = {}

    def window_at(self, exercise: Exercise, t: datetime) -> Window | None:
        """Same answer as :func:`window_at`."""
        t = _utc(t)
        if exercise.schedule is None:
            return window_at(exercise, t)
        length = _length(exercise)
        span = self._spans.get(exercise)
        if span is None or not span.covers(t - length, t):
            span = _Span.around(exercise, t, length)
            if len(self._spans) >= _SPANS_KEPT:
                self._spans.clear()
            self._spans[exercise] = span
        index = bisect_right(span.windows, t, key=attrgetter("start"))
        if index and span.windows[index - 1].end > t:
            return span.windows[index - 1]
        return None


def windows_ending_in(
    exercise: Exercise, after: datetime, until: datetime, *, limit: int = 1000
) -> list[Window]:
    """Windows with ``after < end <= until``, in order; at most ``limit`` (the earliest ones).

    For a wide range, call again from the last window's end to continue.
    """
    after, until = _utc(after), _utc(until)
    length = _length(exercise)
    windows: list[Window] = []
    for start in iter_starts(exercise, after - length):
        if start + length > until or len(windows) >= limit:
            break
        windows.append(Window(exercise.name, start, start + length))
    return windows


def windows_overlapping(
    exercise: Exercise, after: datetime, until: datetime, *, limit: int = 1000
) -> list[Window]:
    """Windows open at some time in ``[after, until)``, in order; at most ``limit``."""
    after, until = _utc(after), _utc(until)
    length = _length(exercise)
    windows: list[Window] = []
    for start in iter_starts(exercise, after - length):
        if start >= until or len(windows) >= limit:
            break
        windows.append(Window(exercise.name, start, start + length))
    return windows


def next_window_start(exercise: Exercise, t: datetime) -> datetime | None:
    """The first window start strictly after ``t``; None when there is none (a past one-off)."""
    return next(iter_starts(exercise, t), None)


def shortest_gap(
    exercise: Exercise, after: datetime, until: datetime, *, max_starts: int = 4096
) -> tuple[datetime, datetime] | None:
    """The two consecutive starts in ``(after, until]`` closest together, or None.

    Scans at most ``max_starts`` starts from ``after``; when the schedule has more, it also scans
    the days around every UTC-offset change in the range, where daylight saving moves starts.
    """
    after, until = _utc(after), _utc(until)
    starts: list[datetime] = []
    for start in iter_starts(exercise, after):
        if start > until or len(starts) >= max_starts:
            break
        starts.append(start)
    best = _closest(starts, None)
    if len(starts) >= max_starts and exercise.schedule is not None:
        zone = ZoneInfo(exercise.timezone)
        for change in _offset_changes(zone, starts[-1], until):
            near: list[datetime] = []
            for start in iter_starts(exercise, change - timedelta(days=2)):
                if start > change + timedelta(days=1):
                    break
                near.append(start)
            best = _closest(near, best)
    return best


def _closest(
    starts: list[datetime], best: tuple[datetime, datetime] | None
) -> tuple[datetime, datetime] | None:
    for a, b in pairwise(starts):
        if best is None or b - a < best[1] - best[0]:
            best = (a, b)
    return best


def _offset_changes(zone: ZoneInfo, after: datetime, until: datetime) -> Iterator[datetime]:
    """Daily samples (UTC) at which ``zone``'s offset differs from the day before."""
    day = timedelta(days=1)
    previous = after.astimezone(zone).utcoffset()
    t = after + day
    while t <= until + day:
        offset = t.astimezone(zone).utcoffset()
        if offset != previous:
            yield t
            previous = offset
        t += day


@dataclass(frozen=True, slots=True)
class _Span:
    """Every window of one exercise starting in ``(lo, hi]``."""

    lo: datetime
    hi: datetime
    windows: tuple[Window, ...]

    def covers(self, lo: datetime, hi: datetime) -> bool:
        return self.lo <= lo and hi <= self.hi

    @classmethod
    def around(cls, exercise: Exercise, t: datetime, length: timedelta) -> _Span:
        """Windows that may contain ``t`` or times shortly before it, and the next week's."""
        lo = t - length - max(length, timedelta(hours=1))
        windows: list[Window] = []
        ahead = 0
        for start in iter_starts(exercise, lo):
            windows.append(Window(exercise.name, start, start + length))
            if start > t:
                ahead += 1
                if start > t + _SPAN_AHEAD or ahead >= _SPAN_AHEAD_MAX_STARTS:
                    return cls(lo, start, tuple(windows))
        return cls(lo, _FAR_FUTURE, tuple(windows))


def _one_off(exercise: Exercise) -> Window | None:
    if exercise.start is None or exercise.end is None:
        return None
    return Window(exercise.name, _utc(exercise.start), _utc(exercise.end))


def _length(exercise: Exercise) -> timedelta:
    if exercise.schedule is not None:
        if exercise.duration is None:
            raise ValueError(f"exercise {exercise.name!r} has a schedule but no duration")
        return exercise.duration
    window = _one_off(exercise)
    return window.end - window.start if window is not None else timedelta(0)


def _utc(t: datetime) -> datetime:
    if t.tzinfo is UTC:
        return t
    if t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()}: pass a timezone-aware one")
    return t.astimezone(UTC)
