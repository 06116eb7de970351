"""Metrics of the exercise programme: when each declared person last practised and when they
are due, and the newest window of each exercise decided detected or missed.

Label values are the names of ``people:`` and ``exercises:`` in the rules only (never event
data), so the series count is bounded by the declared lists. Like the principal gauges, a time
nobody has yet is absent, not 0; the due time of someone who never practised counts from when
they were first listed. Everything is rebuilt from the store, so a restart changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Gauge

from watcher.model import Person, Rules, Window
from watcher.store.base import Totals


def person_due_at(person: Person, last_drill: datetime | None, first_listed: datetime) -> datetime:
    """Last drill (or, never drilled, first listed) + ``max_days_between_drills``."""
    return (last_drill or first_listed) + timedelta(days=person.max_days_between_drills)


class ProgrammeMetrics:
    """``breakglass_person_*`` and the last decided windows, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.last_drill = Gauge(
            "breakglass_person_last_drill_timestamp_seconds",
            "Event time of the newest drill event attributed to the person.",
            ["person"],
            registry=registry,
        )
        self.drill_due = Gauge(
            "breakglass_person_drill_due_timestamp_seconds",
            "Last drill (or first listed) plus the person's max_days_between_drills.",
            ["person"],
            registry=registry,
        )
        self.last_window = Gauge(
            "breakglass_exercise_last_window_start_timestamp_seconds",
            "Start of the newest exercise window decided with this result.",
            ["exercise", "result"],
            registry=registry,
        )
        self._people: dict[str, Person] = {}
        self._last: dict[str, datetime] = {}
        self._first_listed: dict[str, datetime] = {}
        self._exercises: frozenset[str] = frozenset()
        self._windows: dict[tuple[str, str], datetime] = {}

    def init(self, rules: Rules) -> None:
        """Expose exactly the declared people and exercises (a reload may change them)."""
        self._people = {p.name: p for p in rules.people}
        self._exercises = frozenset(e.name for e in rules.exercises)
        self.last_drill.clear()
        self.drill_due.clear()
        for name in self._people:
            self._show(name)
        self.last_window.clear()
        for key in self._windows:
            self._show_window(key)

    def restore(self, totals: Totals) -> None:
        """The store's newest drill per person and newest decided windows, at start."""
        for name, t in totals.person_last_drill.items():
            self.drilled(name, t)
        for (exercise, result), start in totals.last_window_start.items():
            self._newest_window(exercise, result, start)

    def window_decided(self, window: Window, result: str) -> None:
        self._newest_window(window.exercise, result, window.start)

    def _newest_window(self, exercise: str, result: str, start: datetime) -> None:
        key = (exercise, result)
        if key not in self._windows or start > self._windows[key]:
            self._windows[key] = start
        self._show_window(key)

    def _show_window(self, key: tuple[str, str]) -> None:
        if key[0] in self._exercises:
            self.last_window.labels(*key).set(self._windows[key].timestamp())

    def drilled(self, name: str, event_time: datetime) -> None:
        """A drill event attributed to ``name`` (kept even when not declared now: a reload may
        bring the person back)."""
        last = self._last.get(name)
        if last is None or event_time > last:
            self._last[name] = event_time
        self._show(name)

    def listed_since(self, name: str, first_listed: datetime) -> None:
        self._first_listed[name] = first_listed
        self._show(name)

    def _show(self, name: str) -> None:
        person = self._people.get(name)
        if person is None:
            return
        last = self._last.get(name)
        if last is not None:
            self.last_drill.labels(name).set(last.timestamp())
        first = self._first_listed.get(name)
        if first is not None:
            self.drill_due.labels(name).set(person_due_at(person, last, first).timestamp())
