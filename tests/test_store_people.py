"""The store's people and exercise history: newest drill per person and per-window drill events,
persisted in a real SQLite file, untouched by pruning, and filled for files of the older schema."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watcher.model import TrailEvent, Verdict, Window
from watcher.store.sqlite import MIGRATIONS, SqliteStore

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
WINDOW = Window("q4-drill", T0, T0 + timedelta(hours=2))
LATER = Window("q4-drill", T0 + timedelta(days=91), T0 + timedelta(days=91, hours=2))


def drill(event_id: str, at: datetime, window: Window, person: str | None) -> Verdict:
    event = TrailEvent(
        event_id=event_id,
        event_time=at,
        account="123456789012",
        region="us-east-1",
        event_name="AssumeRole",
        event_source="sts.amazonaws.com",
        identity={},
        raw={},
    )
    return Verdict(
        event, "bg-admin", "drill", "success", window.exercise, window=window, person=person
    )


async def test_people_and_history_survive_a_reopen_and_pruning(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.open()
    try:
        batch = [
            drill("e1", T0 + timedelta(minutes=5), WINDOW, "alice"),
            drill("e2", T0 + timedelta(minutes=7), WINDOW, "alice"),
            drill("e3", T0 + timedelta(minutes=9), WINDOW, "bob"),
            drill("e4", T0 + timedelta(minutes=1), WINDOW, None),
        ]
        await store.commit([(v, "lookup") for v in batch], now=T0 + timedelta(minutes=10))
        # A duplicate counts nothing twice.
        await store.commit([(batch[0], "eventbridge")], now=T0 + timedelta(minutes=11))
        assert await store.decide_window(
            "q4-drill", WINDOW.start, WINDOW.end, "detected", T0 + timedelta(minutes=12)
        )
        later = drill("e5", LATER.start + timedelta(minutes=3), LATER, "alice")
        await store.commit([(later, "lookup")], now=LATER.start + timedelta(minutes=4))
        await store.decide_window("q4-drill", LATER.start, LATER.end, "detected", LATER.end)
        assert await store.prune(LATER.end + timedelta(days=1)) == 5  # every event is gone
    finally:
        await store.close()

    reopened = SqliteStore(path, read_only=True)
    await reopened.open()
    try:
        totals = await reopened.totals()
        history = await reopened.exercise_history(10)
        assert len(await reopened.exercise_history(1)) == 1
    finally:
        await reopened.close()
    assert totals.person_last_drill == {
        "alice": LATER.start + timedelta(minutes=3),
        "bob": T0 + timedelta(minutes=9),
    }
    newest, oldest = history
    assert (newest.start, newest.drill_events, newest.people) == (LATER.start, 1, {"alice": 1})
    assert oldest.result == "detected" and oldest.end == WINDOW.end
    assert oldest.drill_events == 4
    assert list(oldest.people.items()) == [("alice", 2), ("bob", 1)]
    assert oldest.first_drill == T0 + timedelta(minutes=1)
    assert oldest.last_drill == T0 + timedelta(minutes=9)


async def test_a_missed_window_has_no_drill_events(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    try:
        await store.decide_window("q4-drill", WINDOW.start, WINDOW.end, "missed", WINDOW.end)
        (missed,) = await store.exercise_history(10)
    finally:
        await store.close()
    assert (missed.result, missed.drill_events, missed.people) == ("missed", 0, {})
    assert missed.first_drill is None


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
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 3
    db.close()
