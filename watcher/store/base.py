"""The state store's interface and the plain data it returns.

A backend (``sqlite.py`` today, perhaps DynamoDB later) persists, per break-glass event, only the
fields listed in :data:`EVENT_FIELDS` (never the raw record, which may carry credentials), plus
aggregates that pruning never touches, so counters rebuilt from :meth:`Store.totals` never go down.
Times passed in must be timezone-aware; times returned are UTC.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from watcher.model import Classification, Verdict

FirstSeenKind = Literal["exercise", "principal", "person"]

#: Keys of each dict :meth:`Store.recent_events` returns.
EVENT_FIELDS = (
    "event_id",
    "dedup_key",
    "event_time",
    "principal",
    "classification",
    "exercise",
    "outcome",
    "event_name",
    "session_name",
    "source_ip",
    "account",
    "region",
    "source",
    "stored_at",
)


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one :meth:`Store.commit` newly stored; metrics are updated from this only.

    ``verdicts`` are the newly stored ones in input order. ``new_sessions`` holds one
    ``(principal, classification)`` per session seen for the first time ever; a session is
    counted once, under the classification of its first stored event.
    """

    verdicts: list[Verdict] = field(default_factory=list)
    new_sessions: list[tuple[str, Classification]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Totals:
    """Every persisted aggregate, for rebuilding the metrics at start."""

    events: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(principal, classification, outcome) → events stored."""
    sessions: dict[tuple[str, str], int] = field(default_factory=dict)
    """(principal, classification) → distinct sessions."""
    last_event: dict[tuple[str, str], datetime] = field(default_factory=dict)
    """(principal, classification) → newest event time."""
    last_drill: dict[str, datetime] = field(default_factory=dict)
    """principal → newest drill event time (success or failure)."""
    windows: dict[tuple[str, str], int] = field(default_factory=dict)
    """(exercise, result) → windows decided."""
    person_last_drill: dict[str, datetime] = field(default_factory=dict)
    """person → newest drill event attributed to them (``Verdict.person``)."""
    last_window_start: dict[tuple[str, str], datetime] = field(default_factory=dict)
    """(exercise, result) → start of the newest window decided with that result."""


@dataclass(frozen=True, slots=True)
class WindowHistory:
    """One decided exercise window with the drill events stored in it (never pruned)."""

    exercise: str
    start: datetime
    end: datetime
    result: str
    decided_at: datetime
    drill_events: int
    people: dict[str, int]
    """person → drill events attributed to them, in the order they were first seen."""
    first_drill: datetime | None
    last_drill: datetime | None


class Store(Protocol):
    """Persistent state: dedup, checkpoints, classified events, window decisions, aggregates."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def commit(
        self,
        items: Sequence[tuple[Verdict, str]],
        checkpoints: Mapping[str, str] | None = None,
        *,
        now: datetime,
    ) -> CommitResult:
        """Store ``(verdict, source name)`` pairs not stored before (by ``event.dedup_key``; the
        first of duplicates in one batch wins), update the aggregates and set ``checkpoints``,
        all in one transaction: once this returns, the batch survives a crash."""
        ...

    async def seen(self, keys: Sequence[str]) -> set[str]:
        """The dedup keys among ``keys`` that are already stored."""
        ...

    async def checkpoint(self, key: str) -> str | None: ...

    async def totals(self) -> Totals: ...

    async def recent_events(self, limit: int) -> list[dict[str, Any]]:
        """Newest (by event time) first; JSON-ready dicts with :data:`EVENT_FIELDS` keys."""
        ...

    async def decide_window(
        self, exercise: str, start: datetime, end: datetime, result: str, now: datetime
    ) -> bool:
        """Record a window's result; False if ``(exercise, start)`` was already decided."""
        ...

    async def window_totals(self) -> dict[tuple[str, str], int]:
        """(exercise, result) → windows decided."""
        ...

    async def last_decided_end(self, exercise: str) -> datetime | None: ...

    async def exercise_history(self, limit: int) -> list[WindowHistory]:
        """The ``limit`` decided windows that started last, newest first."""
        ...

    async def drill_events_in(self, exercise: str, start: datetime, end: datetime) -> int:
        """Stored drill events of ``exercise`` with event time in ``[start, end)``."""
        ...

    async def first_seen(self, kind: FirstSeenKind, name: str, now: datetime) -> datetime:
        """When ``name`` was first seen: ``now`` on the first call ever, that time afterwards."""
        ...

    async def forget_first_seen(self, kind: FirstSeenKind, keep: Collection[str]) -> int:
        """Forget the first-seen times of names of ``kind`` not in ``keep``; returns how many.

        An exercise that leaves the rules and comes back is judged from its return, not
        retroactively for the time it was gone.
        """
        ...

    async def prune(self, before: datetime) -> int:
        """Forget events (and sessions) last stored before ``before``; aggregates stay.

        Returns how many events were removed.
        """
        ...
