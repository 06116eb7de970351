"""Exercise windows: edges, daylight-saving changes, one-offs, and WindowFinder's memo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.model import Exercise, Window
from watcher.schedule import (
    WindowFinder,
    iter_starts,
    next_window_start,
    shortest_gap,
    window_at,
    windows_ending_in,
    windows_overlapping,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SECOND = timedelta(seconds=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def recurring(schedule: str, duration: timedelta, timezone: str = "UTC") -> Exercise:
    return Exercise(
        name="drill", principals=("p",), schedule=schedule, duration=duration, timezone=timezone
    )


QUARTERLY = recurring("0 14 1 1,4,7,10 *", timedelta(hours=4), "Europe/Berlin")


def test_window_edges_start_inclusive_end_exclusive() -> None:
    # 1 Jan 14:00 CET is 13:00 UTC; 1 Apr 14:00 CEST is 12:00 UTC.
    january = Window("drill", utc(2026, 1, 1, 13), utc(2026, 1, 1, 17))
    assert window_at(QUARTERLY, january.start) == january
    assert window_at(QUARTERLY, january.start + SECOND) == january
    assert window_at(QUARTERLY, january.end - SECOND) == january
    assert window_at(QUARTERLY, january.end) is None
    assert window_at(QUARTERLY, january.end + SECOND) is None
    assert window_at(QUARTERLY, january.start - SECOND) is None
    april = window_at(QUARTERLY, utc(2026, 4, 1, 12))
    assert april == Window("drill", utc(2026, 4, 1, 12), utc(2026, 4, 1, 16))


def test_returned_datetimes_are_utc_and_inputs_may_be_any_zone() -> None:
    local = datetime(2026, 1, 1, 15, tzinfo=BERLIN)
    window = window_at(QUARTERLY, local)
    assert window is not None
    assert window.start.tzinfo is UTC and window.end.tzinfo is UTC
    assert next_window_start(QUARTERLY, local) == utc(2026, 4, 1, 12)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        window_at(QUARTERLY, datetime(2026, 1, 1, 13))


@pytest.mark.parametrize(
    ("zone", "schedule", "day", "expected_utc"),
    [
        # Spring forward: 02:30 does not exist; it moves forward by the gap to 03:30 summer time.
        ("Europe/Berlin", "30 2 * * *", (2026, 3, 29), utc(2026, 3, 29, 1, 30)),
        ("America/New_York", "30 2 * * *", (2026, 3, 8), utc(2026, 3, 8, 7, 30)),
        # Fall back: 02:30 (Berlin) / 01:30 (New York) happen twice; the first one counts.
        ("Europe/Berlin", "30 2 * * *", (2026, 10, 25), utc(2026, 10, 25, 0, 30)),
        ("America/New_York", "30 1 * * *", (2026, 11, 1), utc(2026, 11, 1, 5, 30)),
        # Ordinary days either side.
        ("Europe/Berlin", "30 2 * * *", (2026, 3, 28), utc(2026, 3, 28, 1, 30)),
        ("Europe/Berlin", "30 2 * * *", (2026, 3, 30), utc(2026, 3, 30, 0, 30)),
        ("America/New_York", "30 1 * * *", (2026, 11, 2), utc(2026, 11, 2, 6, 30)),
    ],
)
def test_daylight_saving_starts(
    zone: str, schedule: str, day: tuple[int, int, int], expected_utc: datetime
) -> None:
    exercise = recurring(schedule, timedelta(minutes=20), zone)
    day_start = datetime(*day, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    assert next_window_start(exercise, day_start) == expected_utc
    window = window_at(exercise, expected_utc)
    assert window == Window("drill", expected_utc, expected_utc + timedelta(minutes=20))
    assert window_at(exercise, expected_utc - SECOND) is None


def test_spring_forward_start_local_time() -> None:
    exercise = recurring("30 2 * * *", timedelta(hours=1), "Europe/Berlin")
    start = next_window_start(exercise, utc(2026, 3, 29))
    assert start is not None
    assert start.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"


def test_fall_back_repeated_hour_has_one_start() -> None:
    # Hourly in New York: 01:00 EDT happens, the repeated 01:00 EST does not start a window.
    exercise = recurring("0 * * * *", timedelta(minutes=30), "America/New_York")
    starts = windows_ending_in(exercise, utc(2026, 11, 1, 4), utc(2026, 11, 1, 9))
    assert [w.start.astimezone(NEW_YORK).strftime("%H:%M %Z") for w in starts] == [
        "00:00 EDT",
        "01:00 EDT",
        "02:00 EST",
        "03:00 EST",
    ]
    assert window_at(exercise, utc(2026, 11, 1, 6, 10)) is None  # 01:10 EST, the repeat


def test_duration_across_daylight_saving_change_is_elapsed_time() -> None:
    # Midnight in Berlin plus 4 real hours ends at 05:00 local on the spring-forward day...
    exercise = recurring("0 0 * * *", timedelta(hours=4), "Europe/Berlin")
    window = window_at(exercise, utc(2026, 3, 29, 0))
    assert window is not None
    assert window.end - window.start == timedelta(hours=4)
    assert window.start.astimezone(BERLIN).hour == 0
    assert window.end.astimezone(BERLIN).hour == 5
    # ... and at 03:00 local on the fall-back day.
    window = window_at(exercise, utc(2026, 10, 25, 0))
    assert window is not None
    assert window.end.astimezone(BERLIN).hour == 3
    assert window_at(exercise, window.end - SECOND) == window


def test_skipped_starts_come_out_in_time_order() -> None:
    # Lord Howe moves 02:00 -> 02:30: 02:00 and 02:20 land at 02:30 and 02:50, after 02:40.
    exercise = recurring("0,20,40 2 * * *", timedelta(minutes=5), "Australia/Lord_Howe")
    zone = ZoneInfo("Australia/Lord_Howe")
    after = datetime(2026, 10, 4, tzinfo=zone)
    windows = windows_ending_in(exercise, after, after + timedelta(hours=6))
    assert [w.start.astimezone(zone).strftime("%H:%M") for w in windows] == [
        "02:30",
        "02:40",
        "02:50",
    ]


def test_one_off_window() -> None:
    exercise = Exercise(
        name="once",
        principals=("p",),
        start=datetime(2026, 5, 4, 14, tzinfo=BERLIN),
        end=datetime(2026, 5, 4, 16, tzinfo=BERLIN),
    )
    window = Window("once", utc(2026, 5, 4, 12), utc(2026, 5, 4, 14))
    assert window_at(exercise, window.start) == window
    assert window_at(exercise, window.end - SECOND) == window
    assert window_at(exercise, window.end) is None
    assert window_at(exercise, window.start - SECOND) is None
    assert next_window_start(exercise, window.start - SECOND) == window.start
    assert next_window_start(exercise, window.start) is None
    assert windows_ending_in(exercise, utc(2026, 1, 1), window.end) == [window]
    assert windows_ending_in(exercise, window.end, utc(2027, 1, 1)) == []
    assert windows_ending_in(exercise, utc(2026, 1, 1), window.end - SECOND) == []
    assert windows_overlapping(exercise, window.end - SECOND, window.end) == [window]
    assert windows_overlapping(exercise, window.end, utc(2027, 1, 1)) == []


def test_next_window_start_is_strictly_after() -> None:
    first = utc(2026, 1, 1, 13)
    assert next_window_start(QUARTERLY, first - SECOND) == first
    assert next_window_start(QUARTERLY, first) == utc(2026, 4, 1, 12)


def test_windows_ending_in_bounds_and_limit() -> None:
    daily = recurring("0 9 * * *", timedelta(hours=1))
    # Ends are 10:00 each day: (after, until] takes an end equal to until, not one equal to after.
    windows = windows_ending_in(daily, utc(2026, 1, 1, 10), utc(2026, 1, 4, 10))
    assert [w.end for w in windows] == [
        utc(2026, 1, 2, 10),
        utc(2026, 1, 3, 10),
        utc(2026, 1, 4, 10),
    ]
    capped = windows_ending_in(daily, utc(2000, 1, 1), utc(2030, 1, 1), limit=5)
    assert [w.start for w in capped] == [utc(2000, 1, day, 9) for day in range(1, 6)]
    # Continuing from the last end picks up where the cap stopped.
    more = windows_ending_in(daily, capped[-1].end, utc(2030, 1, 1), limit=1)
    assert more[0].start == utc(2000, 1, 6, 9)


def test_windows_overlapping_includes_open_window() -> None:
    daily = recurring("0 9 * * *", timedelta(hours=2))
    windows = windows_overlapping(daily, utc(2026, 1, 1, 10), utc(2026, 1, 2, 9))
    assert [w.start for w in windows] == [utc(2026, 1, 1, 9)]
    windows = windows_overlapping(daily, utc(2026, 1, 1, 10), utc(2026, 1, 2, 9, 0, 1))
    assert [w.start for w in windows] == [utc(2026, 1, 1, 9), utc(2026, 1, 2, 9)]


def test_shortest_gap_finds_daylight_saving_squeeze_in_dense_schedules() -> None:
    # 01:00 and 03:00 are 2h apart, except on the spring-forward day (1h).
    exercise = recurring("0 1,3 * * *", timedelta(minutes=90), "Europe/Berlin")
    gap = shortest_gap(exercise, utc(2026, 1, 1), utc(2027, 1, 1))
    assert gap == (utc(2026, 3, 29, 0), utc(2026, 3, 29, 1))
    # With the scan capped long before March, the offset-change scan still finds it.
    gap = shortest_gap(exercise, utc(2026, 1, 1), utc(2027, 1, 1), max_starts=10)
    assert gap == (utc(2026, 3, 29, 0), utc(2026, 3, 29, 1))
    one_off = Exercise("once", ("p",), start=utc(2026, 1, 1), end=utc(2026, 1, 2))
    assert shortest_gap(one_off, utc(2025, 1, 1), utc(2027, 1, 1)) is None


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia", "UTC"]
SCHEDULES = ["0,20,40 * * * *", "30 2 * * *", "15 1,2,3 * * 0", "0 0 1 * *", "*/7 0-3 * * *"]


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    schedule=st.sampled_from(SCHEDULES),
    after=st.datetimes(datetime(2010, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
)
def test_starts_match_sorting_every_cron_match(zone: str, schedule: str, after: datetime) -> None:
    """iter_starts equals the plain computation: localise every match (fold=0), sort, dedupe."""
    exercise = recurring(schedule, timedelta(minutes=5), zone)
    span = timedelta(days=3)
    naive = after.replace(tzinfo=None)
    expected: set[datetime] = set()
    for local in CronSim(schedule, naive - timedelta(days=1)):
        if local > naive + span + timedelta(days=1):
            break
        start = local.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)
        if after < start <= after + span:
            expected.add(start)
    got = []
    for start in iter_starts(exercise, after):
        if start > after + span:
            break
        got.append(start)
    assert got == sorted(expected)


@settings(max_examples=40, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    schedule=st.sampled_from(SCHEDULES),
    base=st.datetimes(datetime(2020, 1, 1), datetime(2028, 1, 1), timezones=st.just(UTC)),
    offsets=st.lists(st.integers(-3 * 86400, 3 * 86400), min_size=1, max_size=25),
)
def test_window_at_memo_agrees_with_plain_search(
    zone: str, schedule: str, base: datetime, offsets: list[int]
) -> None:
    """Calls in any order (the memo's hits and misses) give the same answer as a fresh search."""
    exercise = recurring(schedule, timedelta(minutes=5), zone)
    finder = WindowFinder()
    for offset in offsets:
        t = base + timedelta(seconds=offset)
        found = windows_overlapping(exercise, t, t + timedelta(microseconds=1))
        expected = found[-1] if found else None
        assert finder.window_at(exercise, t) == expected
        assert window_at(exercise, t) == expected
