"""The state store's interface and the plain data it returns.

A backend (``sqlite.py``, ``dynamodb.py``; chosen in ``registry.py``) persists, per break-glass
event, only the fields listed in :data:`EVENT_FIELDS` (never the raw record, which may carry
credentials), plus aggregates that pruning never touches, so counters rebuilt from
:meth:`Store.totals` never go down.
Times passed in must be timezone-aware; times returned are UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from watcher.model import Classification, Verdict
from watcher.validation import Fields, Key, Report

if TYPE_CHECKING:
    from watcher.settings import Config

Settings = TypeVar("Settings")

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
class Lease:
    """Leadership held by ``holder`` with fencing ``token`` (higher for every new holder)."""

    holder: str
    token: int


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
    """Persistent state: dedup, checkpoints, classified events, window decisions, aggregates.

    Error contract: every failure of the backend (its files, its service, its network, a store
    that is not open, a write to a read-only store) raises :class:`~watcher.errors.StoreError`
    with the backend and the operation in its message. Anything else raised is a bug (a naive
    datetime passed in is a ``ValueError``). After a StoreError the store stays usable: the
    caller retries later. Backends: ``registry.py``; the contract suite in
    ``tests/test_store_contract.py`` runs against each.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def commit(self, items: Sequence[tuple[Verdict, str]], *, now: datetime) -> CommitResult:
        """Store ``(verdict, source name)`` pairs not stored before (by ``event.dedup_key``; the
        first of duplicates in one batch wins) and count them in the aggregates.

        Once this returns, every item is stored and counted exactly once, surviving a crash.
        If it raises, part of the batch may be stored already (a backend may write in several
        transactions), never an event without its counts; committing the same batch again
        stores and counts the rest, each event still exactly once.
        """
        ...

    async def checkpoint(self, key: str) -> str | None:
        """A source's or job's saved position (None if never saved)."""
        ...

    async def set_checkpoints(
        self, values: Mapping[str, str], *, fence: Lease | None = None
    ) -> None:
        """Save positions. Callers save a position only after committing the events before it,
        so a crash in between re-reads (and de-duplicates) rather than loses events.

        With ``fence``, save only while that lease is still the current one (StoreError
        otherwise): a paused ex-leader cannot move a checkpoint back behind its successor.
        """
        ...

    lease_period: timedelta
    """How long a lease lasts unless renewed."""

    async def hold_lease(self, holder: str, now: datetime) -> Lease | None:
        """Take the leader lease for ``holder`` (free or expired) or renew it (``holder``
        has it) until ``now`` + :attr:`lease_period`; None while another holder's lease runs.
        """
        ...

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease up at once (on shutdown), if it is still ``lease``."""
        ...

    async def totals(self) -> Totals: ...

    async def recent_events(self, limit: int) -> list[dict[str, Any]]:
        """Newest (by event time, then stored time) first; JSON-ready dicts with
        :data:`EVENT_FIELDS` keys."""
        ...

    async def decide_window(
        self, exercise: str, start: datetime, end: datetime, result: str, now: datetime
    ) -> bool:
        """Record a window's result, counted in :attr:`Totals.windows`; False if
        ``(exercise, start)`` was already decided (by anyone: once, whoever decides)."""
        ...

    async def exercise_history(self, limit: int) -> list[WindowHistory]:
        """The ``limit`` decided windows that started last, newest first."""
        ...

    async def drill_events_in(self, exercise: str, start: datetime, end: datetime) -> int:
        """Stored drill events of ``exercise`` with event time in ``[start, end)``."""
        ...

    async def first_seen(self, kind: FirstSeenKind, name: str, now: datetime) -> datetime:
        """When ``name`` was first seen: ``now`` on the first call ever, that time afterwards."""
        ...

    async def first_seen_at(self, kind: FirstSeenKind, name: str) -> datetime | None:
        """When ``name`` was first seen, or None if never (unlike :meth:`first_seen`, writes
        nothing)."""
        ...

    async def forget_first_seen(self, kind: FirstSeenKind, keep: Collection[str]) -> int:
        """Forget the first-seen times of names of ``kind`` not in ``keep``; returns how many.

        An exercise that leaves the rules and comes back is judged from its return, not
        retroactively for the time it was gone.
        """
        ...

    async def prune(self, before: datetime) -> int:
        """Forget events (and sessions) last stored before ``before``; aggregates stay.

        Returns how many events were removed now; a backend that expires items by itself
        (DynamoDB's TTL) removes none here.
        """
        ...


@dataclass(frozen=True, slots=True)
class StoreKind(Generic[Settings]):
    """One store backend: its config section ``store.KEY`` and how to build the store.

    ``spec`` lists the section's keys; ``parse`` checks their values and returns the settings,
    or None with the problems reported. ``build(settings, config, read_only)`` makes the store;
    a ``read_only`` store (for ``audit`` beside a running daemon) writes nothing and answers
    every write with StoreError.
    """

    spec: Mapping[str, Key]
    parse: Callable[[Fields, Report], Settings | None]
    build: Callable[[Settings, Config, bool], Store]
