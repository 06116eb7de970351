"""Exercise windows decided over time, with an injected clock.

The pure decisions (``windows_to_decide``, ``decide``) are tested alone; ``Lifecycle`` is driven
with explicit ``now`` values against the real SQLite store and metrics, closed and reopened to
stand for a daemon restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.lifecycle import Lifecycle, WindowResult, decide, windows_to_decide
from watcher.metrics import WatcherMetrics
from watcher.model import Exercise, Principal, Rules, TrailEvent, Verdict, Window
from watcher.store.sqlite import SqliteStore

ACCOUNT = "123456789012"
PRINCIPAL = Principal("bg-admin", "role", ACCOUNT, iam_names=("break-glass-admin",))
GRACE = timedelta(minutes=10)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)


def one_off(
    name: str, start: datetime, end: datetime, *, expect_detection: bool = True
) -> Exercise:
    return Exercise(
        name, (PRINCIPAL.name,), start=start, end=end, expect_detection=expect_detection
    )


def daily(name: str, *, expect_detection: bool = True) -> Exercise:
    """Every day 10:00 to 11:00 UTC."""
    return Exercise(
        name,
        (PRINCIPAL.name,),
        schedule="0 10 * * *",
        duration=timedelta(hours=1),
        expect_detection=expect_detection,
    )


def rules(*exercises: Exercise) -> Rules:
    return Rules(principals=(PRINCIPAL,), exercises=exercises)


def drill(exercise: str, at: datetime) -> Verdict:
    event = TrailEvent(
        f"drill-{exercise}-{at.timestamp()}",
        at,
        ACCOUNT,
        "us-east-1",
        "AssumeRole",
        "sts.amazonaws.com",
        {},
        raw={},
        session_name="break-glass-exercise",
    )
    return Verdict(event, PRINCIPAL.name, "drill", "success", exercise=exercise)


# ---------------------------------------------------------------------- pure decisions


def test_windows_to_decide_lists_ended_windows_in_order_then_the_open_one() -> None:
    exercise = daily("d")
    now = T0 + 3 * DAY + 30 * MINUTE  # inside the fourth window
    windows = windows_to_decide(exercise, T0 - MINUTE, now)
    assert [w.start for w in windows] == [T0 + n * DAY for n in range(4)]
    assert all(w.end == w.start + timedelta(hours=1) for w in windows)


def test_windows_to_decide_takes_windows_ending_strictly_after_since() -> None:
    exercise = daily("d")
    end = T0 + timedelta(hours=1)
    assert windows_to_decide(exercise, end, T0 + DAY - SECOND) == []
    assert [w.start for w in windows_to_decide(exercise, end - SECOND, T0 + DAY)] == [
        T0,
        T0 + DAY,  # open at its very start: start is inclusive
    ]


def test_windows_to_decide_includes_a_window_open_when_first_seen() -> None:
    exercise = one_off("o", T0, T0 + timedelta(hours=2))
    since = T0 + MINUTE
    assert windows_to_decide(exercise, since, T0 + 2 * MINUTE) == [
        Window("o", T0, T0 + timedelta(hours=2))
    ]
    # Not yet open, and long closed, are both nothing to decide.
    assert windows_to_decide(exercise, T0 - DAY, T0 - SECOND) == []
    assert windows_to_decide(exercise, T0 + DAY, T0 + 2 * DAY) == []


def test_decide() -> None:
    window = Window("w", T0, T0 + timedelta(hours=1))
    expects, never = daily("w"), daily("w", expect_detection=False)
    assert decide(window, 1, expects, T0 + MINUTE, GRACE) == "detected"  # no need to wait
    assert decide(window, 3, never, window.end + DAY, GRACE) == "detected"
    assert decide(window, 0, expects, T0 + MINUTE, GRACE) is None
    assert decide(window, 0, expects, window.end, GRACE) is None
    assert decide(window, 0, expects, window.end + GRACE - SECOND, GRACE) is None
    assert decide(window, 0, expects, window.end + GRACE, GRACE) == "missed"
    assert decide(window, 0, never, window.end + 365 * DAY, GRACE) is None


# --------------------------------------------------------- the lifecycle, store and metrics


@dataclass
class Watcher:
    """What the daemon holds for the lifecycle: a store, metrics restored from it, a lifecycle."""

    path: Path
    grace: timedelta = GRACE
    runs: list[tuple[SqliteStore, WatcherMetrics, Lifecycle]] = field(default_factory=list)

    async def start(self, rules: Rules) -> None:
        store = SqliteStore(self.path)
        await store.open()
        metrics = WatcherMetrics()
        metrics.init_labels(rules, [])
        metrics.restore(await store.totals())
        self.runs.append((store, metrics, Lifecycle(store, metrics, self.grace)))

    async def stop(self) -> None:
        await self.store.close()

    async def restart(self, rules: Rules) -> None:
        await self.stop()
        await self.start(rules)

    @property
    def store(self) -> SqliteStore:
        return self.runs[-1][0]

    @property
    def metrics(self) -> WatcherMetrics:
        return self.runs[-1][1]

    async def tick(self, rules: Rules, now: datetime) -> list[tuple[datetime, WindowResult]]:
        decided = await self.runs[-1][2].tick(rules, now)
        return [(window.start, result) for window, result in decided]

    async def drill(self, exercise: str, at: datetime, now: datetime) -> None:
        await self.store.commit([(drill(exercise, at), "eventbridge")], now=now)

    def counted(self, exercise: str, result: WindowResult) -> float | None:
        return self.metrics.registry.get_sample_value(
            "breakglass_exercise_windows_total", {"exercise": exercise, "result": result}
        )

    def gauge(self, name: str, exercise: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            f"breakglass_exercise_{name}", {"exercise": exercise}
        )


@pytest.fixture
async def watcher(tmp_path: Path) -> AsyncIterator[Watcher]:
    w = Watcher(tmp_path / "state.db")
    try:
        yield w
    finally:
        for store, _, _ in w.runs:
            await store.close()


async def test_a_drill_detects_the_window_once_however_often_ticked(watcher: Watcher) -> None:
    window = Window("live", T0, T0 + timedelta(hours=1))
    r = rules(one_off("live", window.start, window.end))
    await watcher.start(r)
    assert await watcher.tick(r, T0 - MINUTE) == []
    assert await watcher.tick(r, T0 + MINUTE) == []  # open, no drill yet: wait
    await watcher.drill("live", T0 + 2 * MINUTE, now=T0 + 3 * MINUTE)
    assert await watcher.tick(r, T0 + 4 * MINUTE) == [(T0, "detected")]
    for now in (T0 + 5 * MINUTE, window.end, window.end + GRACE, window.end + DAY):
        assert await watcher.tick(r, now) == []
    assert watcher.counted("live", "detected") == 1
    assert watcher.counted("live", "missed") == 0
    assert (await watcher.store.totals()).windows == {("live", "detected"): 1}


async def test_no_drill_is_missed_only_after_end_plus_grace(watcher: Watcher) -> None:
    end = T0 + timedelta(hours=1)
    r = rules(one_off("quiet", T0, end))
    await watcher.start(r)
    for now in (T0 - MINUTE, T0, end - SECOND, end, end + GRACE - SECOND):
        assert await watcher.tick(r, now) == [], now
        assert watcher.counted("quiet", "missed") == 0
    assert await watcher.tick(r, end + GRACE) == [(T0, "missed")]
    assert await watcher.tick(r, end + GRACE + MINUTE) == []
    assert watcher.counted("quiet", "missed") == 1
    assert watcher.counted("quiet", "detected") == 0


async def test_a_drill_stored_during_the_grace_period_still_detects(watcher: Watcher) -> None:
    end = T0 + timedelta(hours=1)
    r = rules(one_off("late", T0, end))
    await watcher.start(r)
    assert await watcher.tick(r, T0 + MINUTE) == []
    assert await watcher.tick(r, end + MINUTE) == []
    # LookupEvents is minutes late: the event time is in the window, it arrives after the end.
    await watcher.drill("late", end - MINUTE, now=end + 5 * MINUTE)
    assert await watcher.tick(r, end + GRACE) == [(T0, "detected")]
    assert watcher.counted("late", "missed") == 0


async def test_an_earlier_window_in_its_grace_is_decided_after_a_later_one(
    tmp_path: Path,
) -> None:
    """Hourly 30-minute windows, 45 minutes of grace: the 10:00 window is still in its grace
    when the 11:00 one is detected early; the cursor must not skip it."""
    hourly = Exercise(
        "hourly", (PRINCIPAL.name,), schedule="0 * * * *", duration=timedelta(minutes=30)
    )
    r = rules(hourly)
    watcher = Watcher(tmp_path / "state.db", grace=timedelta(minutes=45))
    await watcher.start(r)
    try:
        assert await watcher.tick(r, T0 - MINUTE) == []
        eleven = T0 + timedelta(hours=1)
        await watcher.drill("hourly", eleven + MINUTE, now=eleven + 2 * MINUTE)
        assert await watcher.tick(r, eleven + 5 * MINUTE) == [(eleven, "detected")]
        assert await watcher.tick(r, T0 + timedelta(minutes=75)) == [(T0, "missed")]
        # 13:15: the 12:00 window's grace is over; the 13:00 one is open, undecided.
        assert await watcher.tick(r, T0 + timedelta(hours=3, minutes=15)) == [
            (T0 + timedelta(hours=2), "missed")
        ]
        assert watcher.counted("hourly", "detected") == 1
        assert watcher.counted("hourly", "missed") == 2
    finally:
        await watcher.stop()


async def test_a_window_ending_while_stopped_is_decided_once(watcher: Watcher) -> None:
    end = T0 + timedelta(hours=1)
    r = rules(one_off("down", T0, end))
    await watcher.start(r)
    assert await watcher.tick(r, T0 + MINUTE) == []
    await watcher.restart(r)  # stopped across the window's end
    assert watcher.counted("down", "missed") == 0
    assert await watcher.tick(r, end + GRACE + timedelta(hours=3)) == [(T0, "missed")]
    assert await watcher.tick(r, end + DAY) == []
    await watcher.restart(r)
    assert watcher.counted("down", "missed") == 1  # restored from the store
    assert await watcher.tick(r, end + 2 * DAY) == []
    assert watcher.counted("down", "missed") == 1
    assert (await watcher.store.totals()).windows == {("down", "missed"): 1}


async def test_a_detected_window_stays_decided_across_restarts(watcher: Watcher) -> None:
    end = T0 + timedelta(hours=1)
    r = rules(one_off("up", T0, end))
    await watcher.start(r)
    await watcher.drill("up", T0 + MINUTE, now=T0 + MINUTE)
    assert await watcher.tick(r, T0 + 2 * MINUTE) == [(T0, "detected")]
    await watcher.restart(r)
    assert watcher.counted("up", "detected") == 1
    assert await watcher.tick(r, T0 + 3 * MINUTE) == []
    assert await watcher.tick(r, end + GRACE + DAY) == []
    assert watcher.counted("up", "detected") == 1
    assert watcher.counted("up", "missed") == 0


async def test_an_exercise_added_late_misses_no_earlier_window(watcher: Watcher) -> None:
    before = rules()
    await watcher.start(before)
    assert await watcher.tick(before, T0 - 30 * DAY) == []
    # Added 30 days of windows later, in the middle of today's window.
    added = T0 + 30 * MINUTE
    r = rules(daily("new"))
    await watcher.restart(r)
    assert await watcher.tick(r, added) == []
    assert await watcher.tick(r, T0 + timedelta(hours=1) + GRACE - SECOND) == []
    # Today's window was open when the exercise appeared: it counts, and only it.
    assert await watcher.tick(r, T0 + timedelta(hours=1) + GRACE) == [(T0, "missed")]
    assert await watcher.tick(r, T0 + DAY + 30 * MINUTE) == []
    assert watcher.counted("new", "missed") == 1
    assert (await watcher.store.totals()).windows == {("new", "missed"): 1}


async def test_an_exercise_removed_and_added_back_misses_nothing_while_gone(
    watcher: Watcher,
) -> None:
    with_it, without = rules(daily("back")), rules()
    await watcher.start(with_it)
    await watcher.tick(with_it, T0 - 2 * DAY + 30 * MINUTE)  # first seen in a window
    assert await watcher.tick(with_it, T0 - 2 * DAY + timedelta(hours=1) + GRACE) == [
        (T0 - 2 * DAY, "missed")
    ]
    assert await watcher.tick(without, T0 + 10 * DAY) == []  # removed from the rules for days
    back = T0 + 20 * DAY + 30 * MINUTE  # added again during that day's window
    assert await watcher.tick(with_it, back) == []
    assert await watcher.tick(with_it, back + 30 * MINUTE + GRACE) == [(T0 + 20 * DAY, "missed")]
    assert (await watcher.store.totals()).windows == {("back", "missed"): 2}


async def test_an_exercise_first_seen_after_a_window_ignores_it(watcher: Watcher) -> None:
    r = rules(daily("after"))
    await watcher.start(r)
    first = T0 + timedelta(hours=1)  # exactly the end of today's window: not considered
    assert await watcher.tick(r, first) == []
    assert await watcher.tick(r, first + GRACE + timedelta(hours=2)) == []
    assert await watcher.tick(r, first + DAY + GRACE) == [(T0 + DAY, "missed")]


async def test_an_exercise_not_expecting_detection_is_never_missed(watcher: Watcher) -> None:
    r = rules(daily("optional", expect_detection=False))
    await watcher.start(r)
    assert await watcher.tick(r, T0 - MINUTE) == []
    for day in range(5):
        assert await watcher.tick(r, T0 + day * DAY + 2 * timedelta(hours=1)) == []
    assert watcher.counted("optional", "missed") == 0
    # A drill in such a window is still counted as detected.
    await watcher.drill("optional", T0 + 5 * DAY + MINUTE, now=T0 + 5 * DAY + MINUTE)
    assert await watcher.tick(r, T0 + 5 * DAY + 2 * MINUTE) == [(T0 + 5 * DAY, "detected")]
    assert watcher.counted("optional", "missed") == 0
    assert (await watcher.store.totals()).windows == {("optional", "detected"): 1}


async def test_windows_missed_while_down_are_each_decided_once_in_order(
    watcher: Watcher,
) -> None:
    r = rules(daily("daily"))
    await watcher.start(r)
    assert await watcher.tick(r, T0 - MINUTE) == []
    # A drill of the third window arrived before the stop, nothing was ticked since.
    await watcher.drill("daily", T0 + 2 * DAY + MINUTE, now=T0 + 2 * DAY + MINUTE)
    await watcher.restart(r)
    back = T0 + 5 * DAY + 30 * MINUTE  # inside the sixth window
    assert await watcher.tick(r, back) == [
        (T0, "missed"),
        (T0 + DAY, "missed"),
        (T0 + 2 * DAY, "detected"),
        (T0 + 3 * DAY, "missed"),
        (T0 + 4 * DAY, "missed"),
    ]
    assert await watcher.tick(r, back + MINUTE) == []
    await watcher.restart(r)
    assert await watcher.tick(r, back + 2 * MINUTE) == []
    assert watcher.counted("daily", "missed") == 4
    assert watcher.counted("daily", "detected") == 1


async def test_window_open_and_next_start_gauges(watcher: Watcher) -> None:
    end = T0 + timedelta(hours=1)
    r = rules(daily("daily"), one_off("once", T0, end))
    await watcher.start(r)
    expected = [
        # now, daily (open, next start), once (open, next start)
        (T0 - MINUTE, (0, T0), (0, T0)),
        (T0, (1, T0 + DAY), (1, None)),  # start inclusive
        (end - SECOND, (1, T0 + DAY), (1, None)),
        (end, (0, T0 + DAY), (0, None)),  # end exclusive
        (T0 + DAY + MINUTE, (1, T0 + 2 * DAY), (0, None)),
    ]
    for now, *states in expected:
        await watcher.tick(r, now)
        for name, (is_open, next_start) in zip(("daily", "once"), states, strict=True):
            assert watcher.gauge("window_open", name) == is_open, (now, name)
            assert watcher.gauge("next_window_start_timestamp_seconds", name) == (
                None if next_start is None else next_start.timestamp()
            ), (now, name)
