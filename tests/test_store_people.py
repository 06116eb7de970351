"""SQLite's people and exercise history migration: a file of the older schema gets its stored
drills as unattributed window drills. What every backend does with people and history is in
test_store_contract.py."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watcher.model import Window
from watcher.store.sqlite import MIGRATIONS, SqliteStore

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
WINDOW = Window("q4-drill", T0, T0 + timedelta(hours=2))


async def test_a_file_of_the_previous_schema_gets_its_stored_drills_as_unattributed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        start, end = WINDOW.start.timestamp(), WINDOW.end.timestamp()
        db.execute(
            "INSERT INTO windows VALUES ('q4-drill', ?, ?, 'detected', ?)", (start, end, end)
        )
        for n, minutes in enumerate((5, 30, 150)):  # the third is after the window
            db.execute(
                "INSERT INTO events VALUES (?, ?, ?, 'bg-admin', 'drill', 'q4-drill', 'success',"
                " 'AssumeRole', NULL, NULL, '123456789012', 'us-east-1', 'lookup', ?)",
                (f"k{n}", f"k{n}", start + 60 * minutes, start + 60 * minutes),
            )
    db.close()
    store = SqliteStore(path)
    await store.open()
    try:
        (window,) = await store.exercise_history(10)
        assert (await store.totals()).person_last_drill == {}
    finally:
        await store.close()
    assert (window.drill_events, window.people) == (2, {})
    assert window.first_drill == T0 + timedelta(minutes=5)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()
