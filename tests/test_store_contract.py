"""The state store contract: every test here runs unchanged against every backend.

SQLite in a file under tmp_path; DynamoDB in a fresh table of the session's moto server, made
from deploy/aws/dynamodb-table.yaml. ``reopen`` closes the store and opens a new one on the same
state, as a restart (or another replica) would. Backend-only behaviour (SQLite's WAL and
migrations, DynamoDB's chunked transactions and TTL) is in test_store_sqlite.py and
test_store_dynamodb.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from dynamo import create_table
from stored import NOW, RETENTION, T0, big_batch, keys, verdict

from watcher.errors import StoreError
from watcher.model import Classification, Verdict, Window
from watcher.store.base import EVENT_FIELDS, Store
from watcher.store.dynamodb import DynamoDbStore
from watcher.store.sqlite import SqliteStore


@dataclass
class Backend:
    """Makes stores on one backend's state; ``dump`` is everything the backend persisted."""

    name: str
    make: Callable[..., Store]
    dump: Callable[[], bytes]


def _sqlite(tmp_path: Path) -> Backend:
    path = tmp_path / "state" / "watcher.db"

    def dump() -> bytes:
        return b"".join(f.read_bytes() for f in sorted(path.parent.iterdir()))

    return Backend("sqlite", lambda read_only=False: SqliteStore(path, read_only=read_only), dump)


def _dynamodb(endpoint: str) -> Backend:
    table = create_table(endpoint)

    def make(read_only: bool = False) -> Store:
        return DynamoDbStore(
            table, "us-east-1", endpoint_url=endpoint, retention=RETENTION, read_only=read_only
        )

    def dump() -> bytes:
        client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        pages = client.get_paginator("scan").paginate(TableName=table)
        return json.dumps([page["Items"] for page in pages]).encode()

    return Backend("dynamodb", make, dump)


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    return _dynamodb(request.getfixturevalue("moto_server"))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = backend.make()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def reopen(backend: Backend, store: Store) -> Store:
    await store.close()
    again = backend.make()
    await again.open()
    return again


async def stored_keys(store: Store) -> set[str]:
    return {e["dedup_key"] for e in await store.recent_events(100_000)}


# -- events -------------------------------------------------------------------------------


async def test_dedup_within_a_batch_across_batches_and_restarts(
    backend: Backend, store: Store
) -> None:
    a, b, c, d = (verdict(k) for k in "abcd")
    first = await store.commit(
        [(a, "eventbridge"), (verdict("a"), "lookup"), (b, "lookup")], now=NOW
    )
    assert keys(first.verdicts) == ["a", "b"]
    assert keys((await store.commit([(b, "lookup"), (c, "lookup")], now=NOW)).verdicts) == ["c"]
    store = await reopen(backend, store)
    try:
        result = await store.commit([(a, "replay"), (c, "replay"), (d, "replay")], now=NOW)
        assert keys(result.verdicts) == ["d"]
        assert await stored_keys(store) == {"a", "b", "c", "d"}
        assert (await store.totals()).events == {("bg-admin", "unexpected", "success"): 4}
        sources = {e["dedup_key"]: e["source"] for e in await store.recent_events(10)}
        assert sources == {"a": "eventbridge", "b": "lookup", "c": "lookup", "d": "replay"}
    finally:
        await store.close()


async def test_shared_event_id_is_the_dedup_key(backend: Backend, store: Store) -> None:
    caller_copy = verdict("id-in-caller-account", shared="shared-1")
    role_copy = verdict("id-in-role-account", shared="shared-1")
    result = await store.commit([(caller_copy, "lookup"), (role_copy, "lookup")], now=NOW)
    assert result.verdicts == [caller_copy]
    [event] = await store.recent_events(10)
    assert (event["event_id"], event["dedup_key"]) == ("id-in-caller-account", "shared-1")


async def test_aggregates_count_events_and_keep_the_newest_times(
    backend: Backend, store: Store
) -> None:
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


async def test_a_session_counts_once_under_its_first_classification(
    backend: Backend, store: Store
) -> None:
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
    backend: Backend, store: Store
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
    assert secret.encode() not in backend.dump()


async def test_checkpoints_persist(backend: Backend, store: Store) -> None:
    assert await store.checkpoint("lookup:123:us-east-1") is None
    await store.set_checkpoints({"lookup:123:us-east-1": "2026-01-01T14:00:00Z", "sqs": "x"})
    await store.set_checkpoints({"lookup:123:us-east-1": "2026-01-01T14:05:00Z"})
    store = await reopen(backend, store)
    try:
        assert await store.checkpoint("lookup:123:us-east-1") == "2026-01-01T14:05:00Z"
        assert await store.checkpoint("sqs") == "x"
    finally:
        await store.close()


# -- windows and first sightings ----------------------------------------------------------


async def test_a_window_is_decided_once_ever(backend: Backend, store: Store) -> None:
    start, end = T0, T0 + timedelta(hours=4)
    assert await store.decide_window("quarterly", start, end, "detected", NOW)
    assert not await store.decide_window("quarterly", start, end, "missed", NOW)
    later = start + timedelta(days=91)
    assert await store.decide_window("quarterly", later, later + timedelta(hours=4), "missed", NOW)
    assert await store.decide_window("other", start, end, "missed", NOW)
    store = await reopen(backend, store)
    try:
        assert not await store.decide_window("quarterly", start, end, "detected", NOW)
        assert (await store.totals()).windows == {
            ("quarterly", "detected"): 1,
            ("quarterly", "missed"): 1,
            ("other", "missed"): 1,
        }
    finally:
        await store.close()


async def test_drill_events_in_counts_drills_of_the_exercise_in_start_to_end(
    backend: Backend, store: Store
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


async def test_first_seen_persists_the_first_call(backend: Backend, store: Store) -> None:
    assert await store.first_seen("exercise", "quarterly", T0) == T0
    assert await store.first_seen("exercise", "quarterly", NOW) == T0
    assert await store.first_seen("principal", "quarterly", NOW) == NOW
    store = await reopen(backend, store)
    try:
        assert await store.first_seen("exercise", "quarterly", NOW + timedelta(days=1)) == T0
    finally:
        await store.close()


async def test_first_seen_at_reads_without_writing_and_forget_drops_the_rest(
    store: Store,
) -> None:
    assert await store.first_seen_at("exercise", "q") is None
    assert await store.first_seen_at("exercise", "q") is None
    for name in ("q", "r", "s"):
        await store.first_seen("exercise", name, T0)
    await store.first_seen("principal", "r", NOW)
    assert await store.first_seen_at("exercise", "q") == T0
    assert await store.forget_first_seen("exercise", ["q", "not-seen"]) == 2
    assert await store.first_seen_at("exercise", "r") is None
    assert await store.first_seen_at("principal", "r") == NOW  # another kind: kept
    assert await store.first_seen("exercise", "r", NOW) == NOW  # judged from its return


# -- many events, several writers ---------------------------------------------------------


async def test_a_large_batch_is_stored_and_counted_once_and_again_not_at_all(
    backend: Backend, store: Store
) -> None:
    batch = big_batch(400)
    result = await store.commit(batch, now=NOW)
    assert keys(result.verdicts) == keys([v for v, _ in batch])
    assert len(result.new_sessions) == 40
    again = await store.commit(batch, now=NOW)
    assert again.verdicts == [] and again.new_sessions == []
    store = await reopen(backend, store)
    try:
        totals = await store.totals()
        assert sum(totals.events.values()) == 400
        assert totals.events[("p0", "drill", "success")] == len(range(0, 400, 6))
        assert sum(totals.sessions.values()) == 40
        assert totals.last_event[("p1", "drill")] == T0 + timedelta(seconds=399)
        assert totals.last_drill["p1"] == T0 + timedelta(seconds=399)
        assert len(await stored_keys(store)) == 400
        assert await store.drill_events_in("q", T0, T0 + timedelta(hours=1)) == 134
    finally:
        await store.close()


async def test_replicas_committing_overlapping_batches_store_each_event_once(
    backend: Backend, store: Store
) -> None:
    """Two stores on the same state, as two replicas would be, racing on shared events."""
    other = backend.make()
    await other.open()
    try:
        batch = big_batch(120)
        mine, theirs = batch[:80], batch[40:]
        first, second = await asyncio.gather(
            store.commit(mine, now=NOW), other.commit(theirs, now=NOW)
        )
        stored = keys(first.verdicts) + keys(second.verdicts)
        assert sorted(stored) == sorted(keys([v for v, _ in batch]))
        assert len(first.new_sessions) + len(second.new_sessions) == 40
        totals = await other.totals()
        assert sum(totals.events.values()) == 120
        assert sum(totals.sessions.values()) == 40
        start, end = T0, T0 + timedelta(hours=4)
        decided = await asyncio.gather(
            store.decide_window("q", start, end, "detected", NOW),
            other.decide_window("q", start, end, "missed", NOW),
        )
        assert sorted(decided) == [False, True]
        assert sum((await store.totals()).windows.values()) == 1
    finally:
        await other.close()


# -- the deciding copy of a cross-account assume call (issue 11) ----------------------------


def copy(event_id: str, rank: int, classification: Classification, principal: str) -> Verdict:
    v = verdict(event_id, shared="shared-1", classification=classification, principal=principal)
    return replace(v, copy_rank=rank)


@pytest.mark.parametrize("deciding_first", [True, False])
async def test_the_deciding_copy_converges_the_stored_event_whatever_arrives_first(
    backend: Backend, store: Store, deciding_first: bool
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
    store = await reopen(backend, store)
    try:
        assert (await store.totals()).events == totals.events
        assert (await store.commit([(weaker, "sqs"), (deciding, "sqs")], now=NOW)).verdicts == []
    finally:
        await store.close()


async def test_a_deciding_copy_that_decides_the_same_is_not_counted_again(
    backend: Backend, store: Store
) -> None:
    await store.commit([(copy("role-copy", 1, "drill", "bg-role"), "sqs")], now=NOW)
    again = await store.commit([(copy("caller-copy", 2, "drill", "bg-role"), "sqs")], now=NOW)
    assert again.verdicts == []
    assert (await store.totals()).events == {("bg-role", "drill", "success"): 1}
    [event] = await store.recent_events(10)
    assert event["event_id"] == "caller-copy"  # the stored record is the deciding copy


async def test_within_one_batch_the_deciding_copy_is_stored(backend: Backend, store: Store) -> None:
    result = await store.commit(
        [(copy("role-copy", 1, "drill", "bg-role"), "sqs"), (copy("c", 2, "drill", "bg-u"), "sqs")],
        now=NOW,
    )
    assert [v.event.event_id for v in result.verdicts] == ["c"]


async def test_replicas_racing_with_both_copies_count_each_decision_once(
    backend: Backend, store: Store
) -> None:
    """One replica stores the weaker copy while another stores the deciding one."""
    other = backend.make()
    await other.open()
    try:
        weaker = copy("role-copy", 1, "drill", "bg-role")
        deciding = copy("caller-copy", 2, "unexpected", "bg-user")
        await asyncio.gather(
            store.commit([(weaker, "sqs")], now=NOW), other.commit([(deciding, "lookup")], now=NOW)
        )
        [event] = await store.recent_events(10)
        assert event["event_id"] == "caller-copy"
        events = (await other.totals()).events
        assert events[("bg-user", "unexpected", "success")] == 1
        assert events.get(("bg-role", "drill", "success"), 0) <= 1
    finally:
        await other.close()


# -- people and exercise history (issue 17) ---------------------------------------------------

WINDOW = Window("q4-drill", T0, T0 + timedelta(hours=2))
LATER = Window("q4-drill", T0 + timedelta(days=91), T0 + timedelta(days=91, hours=2))


def drill(event_id: str, at: datetime, window: Window, person: str | None) -> Verdict:
    v = verdict(event_id, classification="drill", exercise=window.exercise, at=at)
    return replace(v, window=window, person=person)


async def test_people_and_history_survive_a_reopen_and_pruning(
    backend: Backend, store: Store
) -> None:
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
    await store.prune(LATER.end + timedelta(days=1))  # events go; people and history stay
    await store.close()
    reopened = backend.make(read_only=True)
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
    assert totals.last_window_start == {("q4-drill", "detected"): LATER.start}
    newest, oldest = history
    assert (newest.start, newest.drill_events, newest.people) == (LATER.start, 1, {"alice": 1})
    assert oldest.result == "detected" and oldest.end == WINDOW.end
    assert oldest.decided_at == T0 + timedelta(minutes=12)
    assert oldest.drill_events == 4
    assert list(oldest.people.items()) == [("alice", 2), ("bob", 1)]
    assert oldest.first_drill == T0 + timedelta(minutes=1)
    assert oldest.last_drill == T0 + timedelta(minutes=9)


async def test_history_is_newest_first_across_exercises_and_keeps_the_newest_window_start(
    backend: Backend, store: Store
) -> None:
    other = Window("other", T0 + timedelta(days=30), T0 + timedelta(days=30, hours=1))
    await store.commit([(drill("o1", other.start, other, "carol"), "sqs")], now=NOW)
    # Decided out of order: the newest start of a result never moves back.
    await store.decide_window("q4-drill", LATER.start, LATER.end, "missed", NOW)
    await store.decide_window("q4-drill", WINDOW.start, WINDOW.end, "missed", NOW)
    await store.decide_window("other", other.start, other.end, "detected", NOW)
    history = await store.exercise_history(2)
    assert [(w.exercise, w.start) for w in history] == [
        ("q4-drill", LATER.start),
        ("other", other.start),
    ]
    assert history[1].people == {"carol": 1}
    assert (await store.totals()).last_window_start == {
        ("q4-drill", "missed"): LATER.start,
        ("other", "detected"): other.start,
    }


async def test_a_missed_window_has_no_drill_events(backend: Backend, store: Store) -> None:
    await store.decide_window("q4-drill", WINDOW.start, WINDOW.end, "missed", WINDOW.end)
    (missed,) = await store.exercise_history(10)
    assert (missed.result, missed.drill_events, missed.people) == ("missed", 0, {})
    assert missed.first_drill is None


async def test_the_state_never_holds_an_access_key_id(backend: Backend, store: Store) -> None:
    key_id = "ASIAEXAMPLEKEY123456"
    twin = key_id[:4] + "ZZZZZZZZZZZZ" + key_id[-4:]  # same ends, another key
    result = await store.commit(
        [(verdict("1", session=key_id), "sqs"), (verdict("2", session=twin), "sqs")], now=NOW
    )
    assert len(result.new_sessions) == 2
    assert key_id.encode() not in backend.dump() and twin.encode() not in backend.dump()


# -- errors -------------------------------------------------------------------------------


async def test_a_store_that_is_not_open_raises_store_error(backend: Backend) -> None:
    store = backend.make()
    with pytest.raises(StoreError, match="not open"):
        await store.checkpoint("x")
    with pytest.raises(StoreError, match="not open"):
        await store.commit([(verdict("a"), "lookup")], now=NOW)


async def test_a_read_only_store_reads_and_refuses_every_write(
    backend: Backend, store: Store
) -> None:
    await store.commit([(verdict("a"), "lookup")], now=NOW)
    await store.first_seen("principal", "bg-admin", T0)
    reader = backend.make(read_only=True)
    await reader.open()
    try:
        assert (await reader.totals()).events == {("bg-admin", "unexpected", "success"): 1}
        assert await reader.first_seen_at("principal", "bg-admin") == T0
        writes: list[Any] = [
            reader.commit([(verdict("b"), "lookup")], now=NOW),
            reader.set_checkpoints({"k": "v"}),
            reader.decide_window("q", T0, NOW, "missed", NOW),
            reader.first_seen("exercise", "q", NOW),
            reader.forget_first_seen("exercise", []),
        ]
        for write in writes:
            with pytest.raises(StoreError):
                await write
    finally:
        await reader.close()
    assert await stored_keys(store) == {"a"}
