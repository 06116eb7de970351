"""Per-person drill metrics: when each declared person last practised, and when they are due.

Label values are the names of ``people:`` in the rules only (never event data), so the series
count is bounded by the declared list. Like the principal gauges, a last-drill time nobody has
yet is absent, not 0; the due time of someone who never practised counts from when they were
first listed (persisted by the store, so a restart changes nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Gauge

from watcher.model import Person


def person_due_at(person: Person, last_drill: datetime | None, first_listed: datetime) -> datetime:
    """Last drill (or, never drilled, first listed) + ``max_days_between_drills``."""
    return (last_drill or first_listed) + timedelta(days=person.max_days_between_drills)


class PeopleMetrics:
    """``breakglass_person_*`` in ``registry``."""

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
        self._people: dict[str, Person] = {}
        self._last: dict[str, datetime] = {}
        self._first_listed: dict[str, datetime] = {}

    def init(self, people: Sequence[Person]) -> None:
        """Expose exactly the declared people (a reload may add, drop or change them)."""
        self._people = {p.name: p for p in people}
        self.last_drill.clear()
        self.drill_due.clear()
        for name in self._people:
            self._show(name)

    def restore(self, last_drill: Mapping[str, datetime]) -> None:
        """The store's newest drill per person, at start."""
        for name, t in last_drill.items():
            self.drilled(name, t)

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
