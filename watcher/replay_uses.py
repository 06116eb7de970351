"""The break-glass uses of one ``replay`` run, de-duplicated, in a memory bounded by ``bound``.

Of the uses sharing a dedup key the one with the highest ``copy_rank`` is kept, and among equals
the first seen (docs/design.md "De-duplication"). Iteration is in event-time order, ties in the
order their keys were first seen. Past ``bound`` uses in memory, they move to a private
temporary SQLite database on disk (deleted when closed), keyed by dedup key: memory stays flat
however large the archive, and the time order is read back from an index.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from watcher.replay_file import Use

DEFAULT_BOUND = 200_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SCHEMA = """
CREATE TABLE uses (key TEXT PRIMARY KEY, seq INTEGER, time INTEGER, rank INTEGER, use BLOB);
"""
# A key already on disk was seen first: it keeps its place and is replaced only by a higher rank.
_MERGE = """
INSERT INTO uses VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET time = excluded.time, rank = excluded.rank, use = excluded.use
WHERE excluded.rank > uses.rank
"""


class Uses:
    """De-duplicating store of uses; ``spilled`` tells whether it went to disk."""

    def __init__(self, bound: int = DEFAULT_BOUND) -> None:
        self._bound = bound
        self._memory: dict[str, tuple[int, Use]] = {}  # dedup key -> (first arrival, use)
        self._arrivals = 0
        self._db: sqlite3.Connection | None = None

    @property
    def spilled(self) -> bool:
        return self._db is not None

    def add(self, use: Use) -> None:
        key = use.dedup_key
        held = self._memory.get(key)
        if held is None:
            self._memory[key] = (self._arrivals, use)
            self._arrivals += 1
            if len(self._memory) > self._bound:
                self._spill()
        elif use.copy_rank > held[1].copy_rank:
            self._memory[key] = (held[0], use)

    def _spill(self) -> None:
        if self._db is None:
            self._db = sqlite3.connect("")  # "": a private temporary database on disk
            self._db.execute(_SCHEMA)
        rows = (
            (key, seq, (use.event_time - _EPOCH) // _MICROSECOND, use.copy_rank, pickle.dumps(use))
            for key, (seq, use) in self._memory.items()
        )
        with self._db:
            self._db.executemany(_MERGE, rows)
        self._memory.clear()

    def __iter__(self) -> Iterator[Use]:
        """Every use once, in event-time order (ties: first seen first)."""
        if self._db is None:
            ordered = sorted(self._memory.values(), key=lambda held: held[1].event_time)
            return (use for _, use in ordered)  # dicts keep first-seen order; sorted is stable
        self._spill()
        self._db.execute("CREATE INDEX IF NOT EXISTS by_time ON uses (time, seq)")
        rows = self._db.execute("SELECT use FROM uses ORDER BY time, seq")
        return (pickle.loads(use) for (use,) in rows)

    def __len__(self) -> int:
        if self._db is None:
            return len(self._memory)
        self._spill()
        (count,) = self._db.execute("SELECT COUNT(*) FROM uses").fetchone()
        return int(count)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
