"""Exercise windows decided: detected as soon as a drill lands in them, missed once they end.

Pure decisions (``windows_to_decide``, ``decide``) are separate from ``Lifecycle``, which applies
them with the store and metrics. A window is considered only if it ends after the exercise first
appeared in the rules — or last reappeared: an exercise that leaves the rules is forgotten — so
adding an exercise never produces years of retroactive "missed".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from watcher.metrics import WatcherMetrics
from watcher.model import Exercise, Rules, Window
from watcher.schedule import next_window_start, window_at, windows_ending_in
from watcher.store.base import Lease, Store

log = logging.getLogger(__name__)

WindowResult = Literal["detected", "missed"]


def windows_to_decide(exercise: Exercise, since: datetime, now: datetime) -> list[Window]:
    """Windows ending in ``(since, now]``, then the open one: it may already be detected."""
    windows = windows_ending_in(exercise, since, now)
    current = window_at(exercise, now)
    if current is not None and current.end > since:
        windows.append(current)
    return windows


def decide(
    window: Window, drills: int, exercise: Exercise, now: datetime, grace: timedelta
) -> WindowResult | None:
    """``detected`` once any drill fell in the window; ``missed`` after end + grace; else wait.

    A window whose exercise does not expect detection is never ``missed``.
    """
    if drills > 0:
        return "detected"
    if now >= window.end + grace and exercise.expect_detection:
        return "missed"
    return None


@dataclass
class Lifecycle:
    """Applies window decisions and refreshes the schedule gauges; :meth:`tick` periodically."""

    store: Store
    metrics: WatcherMetrics
    grace: timedelta

    async def tick(
        self, rules: Rules, now: datetime, *, fence: Lease | None = None
    ) -> list[tuple[Window, WindowResult]]:
        """Decide what can be decided; ``fence``: the leader's lease its cursors are saved
        under."""
        await self.store.forget_first_seen("exercise", [e.name for e in rules.exercises])
        self.show_schedule(self.metrics, rules, now)
        decided: list[tuple[Window, WindowResult]] = []
        for exercise in rules.exercises:
            decided += await self._decide(exercise, now, fence)
        return decided

    @staticmethod
    def show_schedule(metrics: WatcherMetrics, rules: Rules, now: datetime) -> None:
        """The window gauges (open now, next start): from the rules and the clock alone."""
        for exercise in rules.exercises:
            metrics.set_window_state(
                exercise.name,
                open_=window_at(exercise, now) is not None,
                next_start=next_window_start(exercise, now),
            )

    async def _decide(
        self, exercise: Exercise, now: datetime, fence: Lease | None
    ) -> list[tuple[Window, WindowResult]]:
        """Decide the exercise's windows in order from a persisted cursor.

        The cursor (end of the last window of an unbroken run of decided ones) only moves past
        decided windows, so a window still in its grace period is revisited even when a later
        one was already detected early.
        """
        cursor_key = f"lifecycle:{exercise.name}"
        since = await self.store.first_seen("exercise", exercise.name, now)
        stored = await self.store.checkpoint(cursor_key)
        if stored:
            since = max(since, datetime.fromisoformat(stored))
        cursor = since
        contiguous = True
        decided: list[tuple[Window, WindowResult]] = []
        for window in windows_to_decide(exercise, since, now):
            drills = await self.store.drill_events_in(exercise.name, window.start, window.end)
            result = decide(window, drills, exercise, now, self.grace)
            if result is not None and await self.store.decide_window(
                exercise.name, window.start, window.end, result, now
            ):
                self.metrics.window_decided(exercise.name, result)
                decided.append((window, result))
                log.info(
                    "exercise window decided",
                    extra={
                        "exercise": exercise.name,
                        "window_start": window.start.isoformat(),
                        "result": result,
                    },
                )
            # A window not expecting detection is done, uncounted, once its grace has passed.
            done = result is not None or now >= window.end + self.grace
            contiguous = contiguous and done
            if contiguous:
                cursor = window.end
        if cursor != since:
            await self.store.set_checkpoints({cursor_key: cursor.isoformat()}, fence=fence)
        return decided
