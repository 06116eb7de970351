"""What only the SQLite store does: schema migrations, WAL, file errors, one-transaction commits,
durability across kill -9, pruning by stored time, work off the event loop. The behaviour every
backend shares is in test_store_contract.py."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from stored import NOW, T0, keys, verdict

from watcher.errors import StoreError
from watcher.keys import stored_key
from watcher.store.base import Store
from watcher.store.sqlite import MIGRATIONS, SqliteStore

REPO = Path(__file__).resolve().parents[1]  # the child imports watcher from here


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "watcher.db"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def reopen(store: SqliteStore) -> SqliteStore:
    await store.close()
    again = SqliteStore(store.path)
    await again.open()
    return again


# -- schema -------------------------------------------------------------------------------


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


async def test_migrates_an_empty_file_to_the_latest_schema(path: Path) -> None:
    write(path, b"")
    store: Store = SqliteStore(path)  # mypy checks it implements the protocol
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "sessions", "windows", "checkpoints", "first_seen"} <= tables


async def test_migration_masks_session_keys_a_former_watcher_stored_whole(path: Path) -> None:
    """Files of watchers before masking hold whole key ids; one upgraded in place may hold the
    same session whole and masked. After the migration: masked, one row per session."""
    whole, other = "ASIAEXAMPLEKEY000001", "AKIAEXAMPLEKEY000002"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        for target, step in enumerate(MIGRATIONS[:3], start=1):
            db.executescript(f"{step};PRAGMA user_version = {target};")
        db.executemany(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
            [
                ("bg-role", whole, "unexpected", 100.0, 200.0),
                ("bg-role", stored_key(whole), "drill", 150.0, 300.0),  # after an upgrade
                ("bg-user", other, "drill", 10.0, 20.0),
                ("bg-user", "event-id-1", "drill", 30.0, 40.0),  # not a key id: as it is
            ],
        )
    store = SqliteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        rows = set(db.execute("SELECT * FROM sessions"))
    assert rows == {
        ("bg-role", stored_key(whole), "unexpected", 100.0, 300.0),
        ("bg-user", stored_key(other), "drill", 10.0, 20.0),
        ("bg-user", "event-id-1", "drill", 30.0, 40.0),
    }
    assert whole.encode() not in await asyncio.to_thread(path.read_bytes)


async def test_refuses_a_file_from_a_newer_schema(path: Path) -> None:
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this watcher knows"):
        await SqliteStore(path).open()


async def test_unwritable_path_raises_store_error(tmp_path: Path) -> None:
    blocker = write(tmp_path / "not-a-dir", b"x")
    store = SqliteStore(blocker / "watcher.db")
    with pytest.raises(StoreError, match="not-a-dir"):
        await store.open()
    with pytest.raises(StoreError, match="not open"):
        await store.checkpoint("x")


async def test_corrupt_file_raises_store_error(path: Path) -> None:
    write(path, b"this is not an sqlite database, " * 200)
    with pytest.raises(StoreError, match="not a database"):
        await SqliteStore(path).open()


# -- events -------------------------------------------------------------------------------


def stored(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT dedup_key FROM events")}


async def test_a_failed_commit_stores_nothing(store: SqliteStore) -> None:
    """One transaction: a row SQLite cannot take undoes the whole batch."""
    good = verdict("a")
    bad = verdict("b")
    object.__setattr__(bad.event, "event_name", {"not": "text"})  # cannot be bound
    with pytest.raises(StoreError, match="commit failed"):
        await store.commit([(good, "lookup"), (bad, "lookup")], now=NOW)
    assert stored(store.path) == set()
    assert (await store.totals()).events == {}
    assert keys((await store.commit([(good, "lookup")], now=NOW)).verdicts) == ["a"]


KILLED_AFTER_COMMIT = """
import asyncio, os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from watcher.model import TrailEvent, Verdict
from watcher.store.sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore(Path(sys.argv[1]))
    await store.open()
    t = datetime(2026, 1, 1, tzinfo=UTC)
    event = TrailEvent("survivor", t, "123456789012", "us-east-1", "ConsoleLogin", "", {}, {})
    await store.commit([(Verdict(event, "bg-admin", "unexpected", "success"), "eventbridge")],
                       now=t)
    await store.set_checkpoints({"sqs": "acked"})
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint, no atexit

asyncio.run(main())
"""


async def test_a_committed_batch_survives_kill_9(path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_AFTER_COMMIT, str(path), cwd=REPO
    )
    assert await child.wait() == -signal.SIGKILL
    store = SqliteStore(path)
    await store.open()
    try:
        assert stored(path) == {"survivor"}
        assert await store.checkpoint("sqs") == "acked"
    finally:
        await store.close()


# -- pruning ------------------------------------------------------------------------------


async def test_prune_forgets_old_events_but_keeps_aggregates_and_live_sessions(
    store: SqliteStore,
) -> None:
    old, new = NOW, NOW + timedelta(days=30)
    await store.commit([(verdict("old", session="ASIA1"), "lookup")], now=old)
    await store.commit([(verdict("old2", session="ASIA2"), "lookup")], now=old)
    await store.commit([(verdict("new", session="ASIA1"), "lookup")], now=new)
    before = await store.totals()
    assert await store.prune(new - timedelta(days=1)) == 2
    assert await store.totals() == before
    assert stored(store.path) == {"new"}
    # ASIA1 was seen after the cut-off: still known. ASIA2 was not: counted anew.
    again = await store.commit(
        [(verdict("x", session="ASIA1"), "lookup"), (verdict("y", session="ASIA2"), "lookup")],
        now=new,
    )
    assert again.new_sessions == [("bg-admin", "unexpected")]


# -- volume -------------------------------------------------------------------------------


async def test_a_10000_verdict_commit_runs_off_the_event_loop(
    store: SqliteStore, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = [
        (verdict(f"e{i}", at=T0 + timedelta(seconds=i), session=f"ASIA{i % 100}"), "lookup")
        for i in range(10_000)
    ]
    started = time.perf_counter()
    commit = asyncio.ensure_future(store.commit(batch, now=NOW))
    loop_turns = 0
    while not commit.done():
        await asyncio.sleep(0)
        loop_turns += 1
    result = commit.result()
    elapsed = time.perf_counter() - started
    assert len(result.verdicts) == 10_000
    assert len(result.new_sessions) == 100
    assert loop_turns > 1, "the event loop did not run while the commit was in progress"
    started = time.perf_counter()
    assert len(await store.recent_events(10_000)) == 10_000
    read_elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\n[info] 10 000-verdict commit: {elapsed * 1000:.0f} ms"
            f" ({loop_turns} loop turns meanwhile); recent_events(10 000): "
            f"{read_elapsed * 1000:.0f} ms"
        )
