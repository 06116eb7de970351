"""The SQLite state store: real files in tmp_path, closed and reopened to check persistence."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from watcher.errors import StoreError
from watcher.model import Classification, Outcome, TrailEvent, Verdict
from watcher.store.base import EVENT_FIELDS, Store
from watcher.store.sqlite import MIGRATIONS, SqliteStore

REPO = Path(__file__).resolve().parents[1]  # the child imports watcher from here
T0 = datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 1, 15, 0, tzinfo=UTC)


def verdict(
    event_id: str,
    *,
    principal: str = "bg-admin",
    classification: Classification = "unexpected",
    outcome: Outcome = "success",
    at: datetime = T0,
    session: str | None = None,
    exercise: str | None = None,
    shared: str | None = None,
    raw: dict[str, Any] | None = None,
) -> Verdict:
    event = TrailEvent(
        event_id=event_id,
        event_time=at,
        account="123456789012",
        region="us-east-1",
        event_name="AssumeRole",
        event_source="sts.amazonaws.com",
        identity={},
        raw=raw or {},
        session_name="break-glass-exercise-alice",
        source_ip="203.0.113.5",
        shared_event_id=shared,
    )
    return Verdict(
        event, principal, classification, outcome, exercise=exercise, session_key=session
    )


def keys(verdicts: list[Verdict]) -> list[str]:
    return [v.event.dedup_key for v in verdicts]


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


async def test_dedup_within_a_batch_across_batches_and_restarts(store: SqliteStore) -> None:
    a, b, c, d = (verdict(k) for k in "abcd")
    first = await store.commit(
        [(a, "eventbridge"), (verdict("a"), "lookup"), (b, "lookup")], now=NOW
    )
    assert keys(first.verdicts) == ["a", "b"]
    assert keys((await store.commit([(b, "lookup"), (c, "lookup")], now=NOW)).verdicts) == ["c"]
    store = await reopen(store)
    try:
        result = await store.commit([(a, "replay"), (c, "replay"), (d, "replay")], now=NOW)
        assert keys(result.verdicts) == ["d"]
        assert await store.seen(["a", "d", "zzz"]) == {"a", "d"}
        assert (await store.totals()).events == {("bg-admin", "unexpected", "success"): 4}
        sources = {e["dedup_key"]: e["source"] for e in await store.recent_events(10)}
        assert sources == {"a": "eventbridge", "b": "lookup", "c": "lookup", "d": "replay"}
    finally:
        await store.close()


async def test_shared_event_id_is_the_dedup_key(store: SqliteStore) -> None:
    caller_copy = verdict("id-in-caller-account", shared="shared-1")
    role_copy = verdict("id-in-role-account", shared="shared-1")
    result = await store.commit([(caller_copy, "lookup"), (role_copy, "lookup")], now=NOW)
    assert result.verdicts == [caller_copy]
    [event] = await store.recent_events(10)
    assert (event["event_id"], event["dedup_key"]) == ("id-in-caller-account", "shared-1")


async def test_aggregates_count_events_and_keep_the_newest_times(store: SqliteStore) -> None:
    batch = [
        verdict("1", classification="drill", exercise="q", at=T0, outcome="failure"),
        verdict("2", classification="drill", exercise="q", at=T0 + timedelta(minutes=5)),
        verdict("3", at=T0 - timedelta(days=1)),
        verdict("4", principal="root-prod", at=T0),
    ]
    await store.commit([(v, "lookup") for v in batch], now=NOW)
    # An older event arriving later moves no "newest" time back.
    await store.commit([(verdict("5", classification="drill", exercise="q"), "lookup")], now=NOW)
    totals = await store.totals()
    assert totals.events == {
        ("bg-admin", "drill", "failure"): 1,
        ("bg-admin", "drill", "success"): 2,
        ("bg-admin", "unexpected", "success"): 1,
        ("root-prod", "unexpected", "success"): 1,
    }
    assert totals.last_event == {
        ("bg-admin", "drill"): T0 + timedelta(minutes=5),
        ("bg-admin", "unexpected"): T0 - timedelta(days=1),
        ("root-prod", "unexpected"): T0,
    }
    assert totals.last_drill == {"bg-admin": T0 + timedelta(minutes=5)}


async def test_a_session_counts_once_under_its_first_classification(store: SqliteStore) -> None:
    first = await store.commit(
        [
            (verdict("1", classification="drill", session="ASIA1"), "lookup"),
            (verdict("2", classification="unexpected", session="ASIA1"), "lookup"),
            (verdict("3", session="ASIA2"), "lookup"),
            (verdict("4", principal="other", session="ASIA2"), "lookup"),
            (verdict("5"), "lookup"),
        ],
        now=NOW,
    )
    assert first.new_sessions == [
        ("bg-admin", "drill"),
        ("bg-admin", "unexpected"),
        ("other", "unexpected"),
    ]
    again = await store.commit([(verdict("6", session="ASIA1"), "lookup")], now=NOW)
    assert again.new_sessions == []
    assert (await store.totals()).sessions == {
        ("bg-admin", "drill"): 1,
        ("bg-admin", "unexpected"): 1,
        ("other", "unexpected"): 1,
    }


async def test_recent_events_are_newest_first_and_never_hold_the_raw_record(
    store: SqliteStore,
) -> None:
    secret = "FwoGZXIvYXdzEXAMPLE-session-token"
    raw = {"responseElements": {"credentials": {"sessionToken": secret}}}
    batch = [verdict(str(i), at=T0 + timedelta(minutes=i), raw=raw) for i in range(5)]
    await store.commit([(v, "eventbridge") for v in batch], now=NOW)
    events = await store.recent_events(3)
    assert [e["event_id"] for e in events] == ["4", "3", "2"]
    assert list(events[0]) == list(EVENT_FIELDS)
    assert events[0]["event_time"] == "2026-01-01T14:04:00Z"
    assert events[0]["stored_at"] == "2026-01-01T15:00:00Z"
    assert events[0]["exercise"] is None
    await store.close()
    for file in store.path.parent.iterdir():
        assert secret.encode() not in file.read_bytes(), file


async def test_a_failed_commit_stores_nothing(store: SqliteStore) -> None:
    bad_checkpoints = cast(dict[str, str], {"lookup:x": None})  # violates NOT NULL
    with pytest.raises(StoreError, match="commit failed"):
        await store.commit([(verdict("a"), "lookup")], bad_checkpoints, now=NOW)
    assert await store.seen(["a"]) == set()
    assert (await store.totals()).events == {}
    assert keys((await store.commit([(verdict("a"), "lookup")], now=NOW)).verdicts) == ["a"]


async def test_checkpoints_persist(store: SqliteStore) -> None:
    assert await store.checkpoint("lookup:123:us-east-1") is None
    await store.commit([], {"lookup:123:us-east-1": "2026-01-01T14:00:00Z"}, now=NOW)
    await store.commit([], {"lookup:123:us-east-1": "2026-01-01T14:05:00Z"}, now=NOW)
    store = await reopen(store)
    try:
        assert await store.checkpoint("lookup:123:us-east-1") == "2026-01-01T14:05:00Z"
    finally:
        await store.close()


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
                       {"sqs": "acked"}, now=t)
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
        assert await store.seen(["survivor"]) == {"survivor"}
        assert await store.checkpoint("sqs") == "acked"
    finally:
        await store.close()


# -- windows and first sightings ----------------------------------------------------------


async def test_a_window_is_decided_once_ever(store: SqliteStore) -> None:
    start, end = T0, T0 + timedelta(hours=4)
    assert await store.decide_window("quarterly", start, end, "detected", NOW)
    assert not await store.decide_window("quarterly", start, end, "missed", NOW)
    later = start + timedelta(days=91)
    assert await store.decide_window("quarterly", later, later + timedelta(hours=4), "missed", NOW)
    assert await store.decide_window("other", start, end, "missed", NOW)
    store = await reopen(store)
    try:
        assert not await store.decide_window("quarterly", start, end, "detected", NOW)
        assert await store.window_totals() == {
            ("quarterly", "detected"): 1,
            ("quarterly", "missed"): 1,
            ("other", "missed"): 1,
        }
        assert (await store.totals()).windows == await store.window_totals()
        assert await store.last_decided_end("quarterly") == later + timedelta(hours=4)
        assert await store.last_decided_end("never") is None
    finally:
        await store.close()


async def test_drill_events_in_counts_drills_of_the_exercise_in_start_to_end(
    store: SqliteStore,
) -> None:
    start, end = T0, T0 + timedelta(hours=4)
    batch = [
        verdict("at-start", classification="drill", exercise="q", at=start),
        verdict("inside", classification="drill", exercise="q", at=end - timedelta(seconds=1)),
        verdict("at-end", classification="drill", exercise="q", at=end),
        verdict("before", classification="drill", exercise="q", at=start - timedelta(seconds=1)),
        verdict("other-exercise", classification="drill", exercise="r", at=start),
        verdict("unexpected", at=start),
    ]
    await store.commit([(v, "lookup") for v in batch], now=NOW)
    assert await store.drill_events_in("q", start, end) == 2
    assert await store.drill_events_in("r", start, end) == 1
    assert await store.drill_events_in("q", end + timedelta(hours=1), end + timedelta(hours=2)) == 0


async def test_first_seen_persists_the_first_call(store: SqliteStore) -> None:
    assert await store.first_seen("exercise", "quarterly", T0) == T0
    assert await store.first_seen("exercise", "quarterly", NOW) == T0
    assert await store.first_seen("principal", "quarterly", NOW) == NOW
    store = await reopen(store)
    try:
        assert await store.first_seen("exercise", "quarterly", NOW + timedelta(days=1)) == T0
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
    assert await store.seen(["old", "old2", "new"]) == {"new"}
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
    commit = asyncio.ensure_future(store.commit(batch, {"k": "v"}, now=NOW))
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
    assert len(await store.seen([v.event.dedup_key for v, _ in batch])) == 10_000
    seen_elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\n[info] 10 000-verdict commit: {elapsed * 1000:.0f} ms"
            f" ({loop_turns} loop turns meanwhile); seen() of 10 000 keys: "
            f"{seen_elapsed * 1000:.0f} ms"
        )


# -- the deciding copy of a cross-account assume call (issue 11, point 5) ---------------------


def copy(event_id: str, rank: int, classification: Classification, principal: str) -> Verdict:
    v = verdict(event_id, shared="shared-1", classification=classification, principal=principal)
    return Verdict(
        v.event, v.principal, v.classification, v.outcome, session_key=v.session_key, copy_rank=rank
    )


@pytest.mark.parametrize("deciding_first", [True, False])
async def test_the_deciding_copy_converges_the_stored_event_whatever_arrives_first(
    store: SqliteStore, deciding_first: bool
) -> None:
    deciding = copy("caller-copy", 2, "unexpected", "bg-user")
    weaker = copy("role-copy", 1, "drill", "bg-role")
    first, second = (deciding, weaker) if deciding_first else (weaker, deciding)
    one = await store.commit([(first, "sqs")], now=NOW)
    two = await store.commit([(second, "lookup")], now=NOW)
    [event] = await store.recent_events(10)
    assert (event["event_id"], event["principal"], event["classification"]) == (
        "caller-copy",
        "bg-user",
        "unexpected",
    )
    counted = [v.event.event_id for v in one.verdicts + two.verdicts]
    totals = await store.totals()
    if deciding_first:  # the weaker copy changes nothing
        assert counted == ["caller-copy"]
        assert totals.events == {("bg-user", "unexpected", "success"): 1}
    else:  # counted as it came; the first count stays: counters never decrease
        assert counted == ["role-copy", "caller-copy"]
        assert totals.events == {
            ("bg-role", "drill", "success"): 1,
            ("bg-user", "unexpected", "success"): 1,
        }
    again = await reopen(store)
    try:
        assert (await again.totals()).events == totals.events
        assert (await again.commit([(weaker, "sqs"), (deciding, "sqs")], now=NOW)).verdicts == []
    finally:
        await again.close()


async def test_a_deciding_copy_that_decides_the_same_is_not_counted_again(
    store: SqliteStore,
) -> None:
    await store.commit([(copy("role-copy", 1, "drill", "bg-role"), "sqs")], now=NOW)
    again = await store.commit([(copy("caller-copy", 2, "drill", "bg-role"), "sqs")], now=NOW)
    assert again.verdicts == []
    assert (await store.totals()).events == {("bg-role", "drill", "success"): 1}
    [event] = await store.recent_events(10)
    assert event["event_id"] == "caller-copy"  # the stored record is the deciding copy


async def test_within_one_batch_the_deciding_copy_is_stored(store: SqliteStore) -> None:
    result = await store.commit(
        [(copy("role-copy", 1, "drill", "bg-role"), "sqs"), (copy("c", 2, "drill", "bg-u"), "sqs")],
        now=NOW,
    )
    assert [v.event.event_id for v in result.verdicts] == ["c"]
