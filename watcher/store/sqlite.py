"""The state store in one SQLite file (stdlib ``sqlite3``, WAL), worked on one dedicated thread.

Every statement runs on a single worker thread that owns the connection, so the event loop never
blocks on disk and the connection is never shared between threads. Times are stored as UTC epoch
seconds (REAL). Events are pruned by when they were *stored*, not by their event time: the dedup
guarantee ("a key stays seen for the retention after we first stored it") is what pruning must
keep, also for old events replayed from files.

The two account copies of a cross-account assume call share one dedup key; the copy carrying
the caller's identity decides (``Verdict.copy_rank``). When the deciding copy arrives after a
weaker one was stored, its verdict replaces the stored event (so ``/api/events``, window
decisions and the stored record converge to what ``replay`` says); when it decides otherwise
it is counted like a new event, and the weaker verdict's counts stay: counters never decrease.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from watcher.clock import iso_z
from watcher.errors import StoreError
from watcher.keys import stored_key
from watcher.model import Classification, Verdict
from watcher.settings import Config
from watcher.store.base import (
    EVENT_FIELDS,
    CommitResult,
    FirstSeenKind,
    Lease,
    StoreKind,
    Totals,
    WindowHistory,
)
from watcher.validation import Fields, Report

T = TypeVar("T")

# Variables per statement; SQLite builds before 3.32 allow at most 999.
_CHUNK = 900
_SIDECARS = ("-wal", "-shm")

#: Schema steps; step ``i`` takes the file from ``PRAGMA user_version`` ``i`` to ``i + 1``.
#: Append only: never edit a released step.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        dedup_key TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        event_time REAL NOT NULL,
        principal TEXT NOT NULL,
        classification TEXT NOT NULL,
        exercise TEXT,
        outcome TEXT NOT NULL,
        event_name TEXT NOT NULL,
        session_name TEXT,
        source_ip TEXT,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        source TEXT NOT NULL,
        stored_at REAL NOT NULL
    );
    CREATE INDEX events_by_time ON events (event_time);
    CREATE INDEX events_by_stored_at ON events (stored_at);
    CREATE INDEX drills_by_exercise ON events (exercise, event_time)
        WHERE classification = 'drill';
    CREATE TABLE sessions (
        principal TEXT NOT NULL,
        session_key TEXT NOT NULL,
        classification TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (principal, session_key)
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_last_seen ON sessions (last_seen);
    CREATE TABLE event_counts (
        principal TEXT NOT NULL,
        classification TEXT NOT NULL,
        outcome TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (principal, classification, outcome)
    ) WITHOUT ROWID;
    CREATE TABLE session_counts (
        principal TEXT NOT NULL,
        classification TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (principal, classification)
    ) WITHOUT ROWID;
    CREATE TABLE last_events (
        principal TEXT NOT NULL,
        classification TEXT NOT NULL,
        event_time REAL NOT NULL,
        PRIMARY KEY (principal, classification)
    ) WITHOUT ROWID;
    CREATE TABLE last_drills (
        principal TEXT PRIMARY KEY,
        event_time REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE windows (
        exercise TEXT NOT NULL,
        start_time REAL NOT NULL,
        end_time REAL NOT NULL,
        result TEXT NOT NULL,
        decided_at REAL NOT NULL,
        PRIMARY KEY (exercise, start_time)
    ) WITHOUT ROWID;
    CREATE TABLE first_seen (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (kind, name)
    ) WITHOUT ROWID;
    CREATE TABLE checkpoints (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # People and exercise history: newest drill per person, and per window the drill events
    # of each person seen ('' for those no declared person was seen in). Neither is pruned.
    # Drills stored before this step fill window_drills as unattributed.
    """
    CREATE TABLE person_drills (
        person TEXT PRIMARY KEY,
        event_time REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE window_drills (
        exercise TEXT NOT NULL,
        start_time REAL NOT NULL,
        person TEXT NOT NULL,
        events INTEGER NOT NULL,
        first_time REAL NOT NULL,
        last_time REAL NOT NULL,
        PRIMARY KEY (exercise, start_time, person)
    ) WITHOUT ROWID;
    INSERT INTO window_drills
        SELECT w.exercise, w.start_time, '', count(*), min(e.event_time), max(e.event_time)
        FROM windows w JOIN events e
            ON e.classification = 'drill' AND e.exercise = w.exercise
            AND e.event_time >= w.start_time AND e.event_time < w.end_time
        GROUP BY w.exercise, w.start_time;
    """,
    # Which copy of a dedup key is stored (Verdict.copy_rank); rows before it: the caller's.
    """
    ALTER TABLE events ADD COLUMN copy_rank INTEGER NOT NULL DEFAULT 2;
    """,
    # Session keys stored whole by watchers before keys were masked (watcher.keys.stored_key,
    # the SQL function of the same name). A file written by both has the same session twice:
    # merged into one row that keeps the first classification and the span of both.
    """
    INSERT INTO sessions (principal, session_key, classification, first_seen, last_seen)
        SELECT principal, stored_key(session_key), classification, first_seen, last_seen
        FROM sessions WHERE session_key != stored_key(session_key)
        ON CONFLICT (principal, session_key) DO UPDATE SET
            classification = CASE WHEN excluded.first_seen < first_seen
                THEN excluded.classification ELSE classification END,
            first_seen = min(first_seen, excluded.first_seen),
            last_seen = max(last_seen, excluded.last_seen);
    DELETE FROM sessions WHERE session_key != stored_key(session_key);
    """,
)

_INSERT_EVENT = f"""
    INSERT OR REPLACE INTO events ({", ".join(EVENT_FIELDS)}, copy_rank)
    VALUES ({", ".join("?" for _ in EVENT_FIELDS)}, ?)
"""
_ADD_EVENT_COUNT = """
    INSERT INTO event_counts VALUES (?, ?, ?, ?)
    ON CONFLICT DO UPDATE SET count = count + excluded.count
"""
_ADD_SESSION_COUNT = """
    INSERT INTO session_counts VALUES (?, ?, ?)
    ON CONFLICT DO UPDATE SET count = count + excluded.count
"""
_TOUCH_SESSION = """
    INSERT INTO sessions VALUES (?, ?, ?, ?, ?)
    ON CONFLICT DO UPDATE SET last_seen = excluded.last_seen
"""
_MAX_LAST_EVENT = """
    INSERT INTO last_events VALUES (?, ?, ?)
    ON CONFLICT DO UPDATE SET event_time = max(event_time, excluded.event_time)
"""
_MAX_LAST_DRILL = """
    INSERT INTO last_drills VALUES (?, ?)
    ON CONFLICT DO UPDATE SET event_time = max(event_time, excluded.event_time)
"""
_MAX_PERSON_DRILL = """
    INSERT INTO person_drills VALUES (?, ?)
    ON CONFLICT DO UPDATE SET event_time = max(event_time, excluded.event_time)
"""
_ADD_WINDOW_DRILLS = """
    INSERT INTO window_drills VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT DO UPDATE SET events = events + excluded.events,
        first_time = min(first_time, excluded.first_time),
        last_time = max(last_time, excluded.last_time)
"""
_SET_CHECKPOINT = """
    INSERT INTO checkpoints VALUES (?, ?) ON CONFLICT DO UPDATE SET value = excluded.value
"""


def _ts(t: datetime) -> float:
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t.isoformat()}: the store takes timezone-aware times")
    return t.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _decided(verdict: Verdict) -> tuple[Any, ...]:
    """What a verdict decided, as stored: a copy that decides the same adds no count."""
    return (verdict.principal, verdict.classification, verdict.outcome, verdict.exercise)


def _event_row(verdict: Verdict, source: str, stored_at: float) -> tuple[Any, ...]:
    """The stored fields, in :data:`EVENT_FIELDS` order, then the copy rank: nothing of the
    raw record."""
    e = verdict.event
    return (
        e.event_id,
        e.dedup_key,
        _ts(e.event_time),
        verdict.principal,
        verdict.classification,
        verdict.exercise,
        verdict.outcome,
        e.event_name,
        e.session_name,
        e.source_ip,
        e.account,
        e.region,
        source,
        stored_at,
        verdict.copy_rank,
    )


class SqliteStore:
    """:class:`watcher.store.base.Store` in the SQLite file ``path`` (created if missing).

    ``read_only``: for readers beside a running daemon (``audit``): the file must exist at the
    current schema version; nothing is written to it, and every write fails with StoreError.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    # -- plumbing -------------------------------------------------------------------------

    async def _call(self, what: str, job: Callable[[], T], *, write: bool = False) -> T:
        """Run ``job`` on the store's thread; SQLite and OS errors become :class:`StoreError`."""
        if self._executor is None:
            raise StoreError(f"state store {self.path}: {what}: the store is not open")
        if write and self.read_only:
            raise StoreError(f"state store {self.path}: {what}: the store is open read-only")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, job)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"state store {self.path}: {what} failed: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "used only on the store thread after open"
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # -- open and close -------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            raise StoreError(f"state store {self.path}: already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        try:
            await self._call("open", self._open)
        except BaseException:
            await self._shutdown()
            raise

    def _open(self) -> None:
        if self.read_only:
            self._open_read_only()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Owner only: SQLite gives its -wal and -shm files the database file's permissions.
        # Where that fails (a read-only or immutable file), SQLite's own open says why.
        with suppress(OSError):
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for path in (self.path, *(self.path.with_name(self.path.name + s) for s in _SIDECARS)):
            with suppress(OSError):
                if path.stat().st_mode & 0o077:
                    path.chmod(0o600)
        # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE.
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        db = self._conn
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode!r})")
        # FULL, not NORMAL: with WAL both survive kill -9 of the process, but NORMAL may lose
        # the last commits on power loss or an OS crash. The SQS source deletes messages once
        # commit returns, so a lost commit is a break-glass event lost for good. Commits are one
        # per batch (a few a second at most), so one fsync each costs next to nothing.
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA busy_timeout = 5000")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"database is corrupt: {check}")
        self._migrate()
        # SQLite opens a file it may not write read-only without a word, and reads work: write
        # once now (the header's version, unchanged) so that open fails, not the first commit.
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def _open_read_only(self) -> None:
        uri = f"{self.path.absolute().as_uri()}?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        version: int = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version != len(MIGRATIONS):
            raise sqlite3.DatabaseError(
                f"schema version {version}, not {len(MIGRATIONS)}: start the daemon once to "
                "bring the file up to date"
            )

    def _migrate(self) -> None:
        db = self._db
        db.create_function("stored_key", 1, stored_key, deterministic=True)
        # Rows a step rewrites (whole key ids) must not linger in freed pages.
        db.execute("PRAGMA secure_delete = ON")
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this watcher knows ({len(MIGRATIONS)})"
            )
        for target, step in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript runs the whole step; the explicit BEGIN/COMMIT make it atomic.
            try:
                db.executescript(f"BEGIN IMMEDIATE;{step};PRAGMA user_version = {target};COMMIT;")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        db.execute("PRAGMA secure_delete = OFF")

    async def close(self) -> None:
        if self._executor is not None:
            await self._shutdown()

    async def _shutdown(self) -> None:
        """Close the connection after every queued job, then stop the thread."""
        try:
            await self._call("close", self._close)
        finally:
            assert self._executor is not None
            self._executor.shutdown()
            self._executor = None

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- events ---------------------------------------------------------------------------

    async def commit(self, items: Sequence[tuple[Verdict, str]], *, now: datetime) -> CommitResult:
        job = partial(self._commit, list(items), _ts(now))
        return await self._call("commit", job, write=True)

    def _commit(self, items: list[tuple[Verdict, str]], stored_at: float) -> CommitResult:
        batch: dict[str, tuple[Verdict, str]] = {}
        for verdict, source in items:
            key = verdict.event.dedup_key
            kept = batch.get(key)
            if kept is None or verdict.copy_rank > kept[0].copy_rank:
                batch[key] = (verdict, source)
        with self._transaction() as db:
            stored = self._stored_copies(list(batch))
            fresh = [item for key, item in batch.items() if key not in stored]
            # Deciding copies of keys whose stored copy ranks lower replace it; they are
            # counted only when they decide otherwise (the same verdict is the same event).
            upgrades = [
                item
                for key, item in batch.items()
                if key in stored and item[0].copy_rank > stored[key][0]
            ]
            changed = [(v, s) for v, s in upgrades if _decided(v) != stored[v.event.dedup_key][1:]]
            rows = [_event_row(v, s, stored_at) for v, s in fresh + upgrades]
            db.executemany(_INSERT_EVENT, rows)
            new = fresh + changed
            verdicts = [v for v, _ in new]
            self._add_aggregates(verdicts)
            new_sessions = self._touch_sessions(verdicts, stored_at)
        return CommitResult(verdicts, new_sessions)

    def _add_aggregates(self, verdicts: list[Verdict]) -> None:
        counts = Counter((v.principal, v.classification, v.outcome) for v in verdicts)
        last_event: dict[tuple[str, str], float] = {}
        last_drill: dict[str, float] = {}
        person_drill: dict[str, float] = {}
        window_drills: dict[tuple[str, float, str], tuple[int, float, float]] = {}
        for v in verdicts:
            t = _ts(v.event.event_time)
            key = (v.principal, v.classification)
            last_event[key] = max(t, last_event.get(key, t))
            if v.classification == "drill":
                last_drill[v.principal] = max(t, last_drill.get(v.principal, t))
                if v.person is not None:
                    person_drill[v.person] = max(t, person_drill.get(v.person, t))
                if v.window is not None:
                    where = (v.window.exercise, _ts(v.window.start), v.person or "")
                    n, first, last = window_drills.get(where, (0, t, t))
                    window_drills[where] = (n + 1, min(first, t), max(last, t))
        db = self._db
        db.executemany(_ADD_EVENT_COUNT, [(*k, n) for k, n in counts.items()])
        db.executemany(_MAX_LAST_EVENT, [(*k, t) for k, t in last_event.items()])
        db.executemany(_MAX_LAST_DRILL, last_drill.items())
        db.executemany(_MAX_PERSON_DRILL, person_drill.items())
        db.executemany(_ADD_WINDOW_DRILLS, [(*k, *v) for k, v in window_drills.items()])

    def _touch_sessions(
        self, verdicts: list[Verdict], stored_at: float
    ) -> list[tuple[str, Classification]]:
        """Record each verdict's session; return (principal, classification) of the new ones."""
        first: dict[tuple[str, str], Classification] = {}
        for v in verdicts:
            if v.session_key is not None:
                first.setdefault((v.principal, stored_key(v.session_key)), v.classification)
        db = self._db
        known: set[tuple[str, str]] = set()
        for chunk in _chunks(sorted({key for _, key in first})):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT principal, session_key FROM sessions WHERE session_key IN ({marks})"
            known.update(db.execute(sql, chunk))
        new = [(key, c) for key, c in first.items() if key not in known]
        db.executemany(
            _TOUCH_SESSION, [(p, k, c, stored_at, stored_at) for (p, k), c in first.items()]
        )
        new_counts = Counter((p, c) for (p, _), c in new)
        db.executemany(_ADD_SESSION_COUNT, [(*k, n) for k, n in new_counts.items()])
        return [(p, c) for (p, _), c in new]

    def _stored_copies(self, keys: list[str]) -> dict[str, tuple[Any, ...]]:
        """dedup key -> (copy rank, *``_decided`` fields) of the stored events among ``keys``."""
        found: dict[str, tuple[Any, ...]] = {}
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT dedup_key, copy_rank, principal, classification, outcome, exercise"
                f" FROM events WHERE dedup_key IN ({marks})"
            )
            found.update((row[0], row[1:]) for row in self._db.execute(sql, chunk))
        return found

    async def recent_events(self, limit: int) -> list[dict[str, Any]]:
        return await self._call("recent_events", partial(self._recent_events, limit))

    def _recent_events(self, limit: int) -> list[dict[str, Any]]:
        sql = (
            f"SELECT {', '.join(EVENT_FIELDS)} FROM events"
            " ORDER BY event_time DESC, stored_at DESC, dedup_key DESC LIMIT ?"
        )
        events = []
        for row in self._db.execute(sql, (limit,)):
            event = dict(zip(EVENT_FIELDS, row, strict=True))
            event["event_time"] = iso_z(_dt(event["event_time"]))
            event["stored_at"] = iso_z(_dt(event["stored_at"]))
            events.append(event)
        return events

    async def prune(self, before: datetime) -> int:
        return await self._call("prune", partial(self._prune, _ts(before)), write=True)

    def _prune(self, before: float) -> int:
        with self._transaction() as db:
            removed = db.execute("DELETE FROM events WHERE stored_at < ?", (before,)).rowcount
            db.execute("DELETE FROM sessions WHERE last_seen < ?", (before,))
        return removed

    # -- checkpoints, aggregates, first sightings -----------------------------------------

    async def checkpoint(self, key: str) -> str | None:
        return await self._call("checkpoint", partial(self._checkpoint, key))

    def _checkpoint(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM checkpoints WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    lease_period = timedelta(seconds=15)

    async def hold_lease(self, holder: str, now: datetime) -> Lease | None:
        """Always granted: a SQLite file serves one replica, which leads."""
        _ts(now)
        return Lease(holder, 1)

    async def release_lease(self, lease: Lease) -> None:
        """Nothing to give up: no other replica waits for it."""

    async def set_checkpoints(
        self, values: Mapping[str, str], *, fence: Lease | None = None
    ) -> None:
        job = partial(self._set_checkpoints, dict(values))
        await self._call("set_checkpoints", job, write=True)

    def _set_checkpoints(self, values: dict[str, str]) -> None:
        with self._transaction() as db:
            db.executemany(_SET_CHECKPOINT, values.items())

    async def totals(self) -> Totals:
        return await self._call("totals", self._totals)

    def _totals(self) -> Totals:
        db = self._db
        return Totals(
            events={(p, c, o): n for p, c, o, n in db.execute("SELECT * FROM event_counts")},
            sessions={(p, c): n for p, c, n in db.execute("SELECT * FROM session_counts")},
            last_event={(p, c): _dt(t) for p, c, t in db.execute("SELECT * FROM last_events")},
            last_drill={p: _dt(t) for p, t in db.execute("SELECT * FROM last_drills")},
            windows=self._window_totals(),
            person_last_drill={p: _dt(t) for p, t in db.execute("SELECT * FROM person_drills")},
            last_window_start={
                (e, r): _dt(t)
                for e, r, t in db.execute(
                    "SELECT exercise, result, max(start_time) FROM windows"
                    " GROUP BY exercise, result"
                )
            },
        )

    async def first_seen(self, kind: FirstSeenKind, name: str, now: datetime) -> datetime:
        job = partial(self._first_seen, kind, name, _ts(now))
        return await self._call("first_seen", job, write=True)

    async def first_seen_at(self, kind: FirstSeenKind, name: str) -> datetime | None:
        return await self._call("first_seen_at", partial(self._first_seen_at, kind, name))

    def _first_seen_at(self, kind: str, name: str) -> datetime | None:
        sql = "SELECT at FROM first_seen WHERE kind = ? AND name = ?"
        row = self._db.execute(sql, (kind, name)).fetchone()
        return None if row is None else _dt(row[0])

    def _first_seen(self, kind: str, name: str, now: float) -> datetime:
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO first_seen VALUES (?, ?, ?)", (kind, name, now))
            sql = "SELECT at FROM first_seen WHERE kind = ? AND name = ?"
            at: float = db.execute(sql, (kind, name)).fetchone()[0]
        return _dt(at)

    async def forget_first_seen(self, kind: FirstSeenKind, keep: Collection[str]) -> int:
        return await self._call(
            "forget_first_seen", partial(self._forget_first_seen, kind, frozenset(keep)), write=True
        )

    def _forget_first_seen(self, kind: str, keep: frozenset[str]) -> int:
        with self._transaction() as db:
            names = [
                n for (n,) in db.execute("SELECT name FROM first_seen WHERE kind = ?", (kind,))
            ]
            gone = [(kind, n) for n in names if n not in keep]
            db.executemany("DELETE FROM first_seen WHERE kind = ? AND name = ?", gone)
        return len(gone)

    # -- exercise windows -----------------------------------------------------------------

    async def decide_window(
        self, exercise: str, start: datetime, end: datetime, result: str, now: datetime
    ) -> bool:
        row = (exercise, _ts(start), _ts(end), result, _ts(now))
        return await self._call("decide_window", partial(self._decide_window, row), write=True)

    def _decide_window(self, row: tuple[str, float, float, str, float]) -> bool:
        with self._transaction() as db:
            cursor = db.execute("INSERT OR IGNORE INTO windows VALUES (?, ?, ?, ?, ?)", row)
        return cursor.rowcount == 1

    def _window_totals(self) -> dict[tuple[str, str], int]:
        sql = "SELECT exercise, result, count(*) FROM windows GROUP BY exercise, result"
        return {(e, r): n for e, r, n in self._db.execute(sql)}

    async def exercise_history(self, limit: int) -> list[WindowHistory]:
        return await self._call("exercise_history", partial(self._exercise_history, limit))

    def _exercise_history(self, limit: int) -> list[WindowHistory]:
        db = self._db
        sql = (
            "SELECT exercise, start_time, end_time, result, decided_at FROM windows"
            " ORDER BY start_time DESC, exercise LIMIT ?"
        )
        history = []
        for exercise, start, end, result, decided_at in db.execute(sql, (limit,)).fetchall():
            rows = db.execute(
                "SELECT person, events, first_time, last_time FROM window_drills"
                " WHERE exercise = ? AND start_time = ? ORDER BY first_time, person",
                (exercise, start),
            ).fetchall()
            history.append(
                WindowHistory(
                    exercise=exercise,
                    start=_dt(start),
                    end=_dt(end),
                    result=result,
                    decided_at=_dt(decided_at),
                    drill_events=sum(n for _, n, _, _ in rows),
                    people={person: n for person, n, _, _ in rows if person},
                    first_drill=_dt(min(f for _, _, f, _ in rows)) if rows else None,
                    last_drill=_dt(max(t for _, _, _, t in rows)) if rows else None,
                )
            )
        return history

    async def drill_events_in(self, exercise: str, start: datetime, end: datetime) -> int:
        job = partial(self._drill_events_in, exercise, _ts(start), _ts(end))
        return await self._call("drill_events_in", job)

    def _drill_events_in(self, exercise: str, start: float, end: float) -> int:
        sql = (
            "SELECT count(*) FROM events WHERE classification = 'drill' AND exercise = ?"
            " AND event_time >= ? AND event_time < ?"
        )
        count: int = self._db.execute(sql, (exercise, start, end)).fetchone()[0]
        return count


def _parse(fields: Fields, report: Report) -> object:
    """``store: {sqlite: {}}``: nothing to set; the file is the config's ``state``."""
    return ()


def _build(settings: object, config: Config, read_only: bool) -> SqliteStore:
    return SqliteStore(config.state_path, read_only=read_only)


KIND: StoreKind[object] = StoreKind(spec={}, parse=_parse, build=_build)
