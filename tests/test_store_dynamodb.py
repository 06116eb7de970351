"""What only the DynamoDB store does: chunked transactions that survive a crash between chunks,
retention by TTL, and its errors. Against moto's server (see watcher/emulator/dynamodb.py for
what moto does not model). The behaviour every backend shares is in test_store_contract.py."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from dynamo import create_table
from stored import NOW, RETENTION, T0, big_batch, keys, verdict

from watcher.errors import StoreError
from watcher.leadership import Leadership
from watcher.model import Verdict
from watcher.store.dynamodb import MAX_TRANSACTION_ITEMS, DynamoDbStore, _Chunk, _chunks

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def table(moto_server: str) -> str:
    return create_table(moto_server)


def make(endpoint: str, table: str, **kwargs: Any) -> DynamoDbStore:
    kwargs.setdefault("retention", RETENTION)
    return DynamoDbStore(table, "us-east-1", endpoint_url=endpoint, **kwargs)


@pytest.fixture
async def store(moto_server: str, table: str) -> AsyncIterator[DynamoDbStore]:
    s = make(moto_server, table)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def items(endpoint: str, table: str) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    pages = client.get_paginator("scan").paginate(TableName=table)
    return [item for page in pages for item in page["Items"]]


def test_every_chunk_fits_one_transaction() -> None:
    batch = big_batch(1000)
    chunks = list(_chunks(batch))
    assert [v for chunk in chunks for v in chunk] == batch
    store = DynamoDbStore("t", "us-east-1")
    sizes = [len(store._plan(_Chunk(c, known=set()), stored_us=0)[0]) for c in chunks]
    assert max(sizes) <= MAX_TRANSACTION_ITEMS
    # Full, not padded: 40 sessions and a few counters are shared by the chunk's events.
    assert min(sizes[:-1]) >= MAX_TRANSACTION_ITEMS - 5


KILLED_BETWEEN_CHUNKS = """
import asyncio, os, signal, sys
sys.path.insert(0, "tests")
from stored import NOW, RETENTION, big_batch
from watcher.store.dynamodb import DynamoDbStore

async def main() -> None:
    store = DynamoDbStore(sys.argv[2], "us-east-1", endpoint_url=sys.argv[1], retention=RETENTION)
    await store.open()
    send = store._client.transact_write_items
    done = 0

    async def then_die(**kwargs):
        nonlocal done
        answer = await send(**kwargs)
        done += 1
        if done == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # between chunks: no close, nothing more
        return answer

    store._client.transact_write_items = then_die
    await store.commit(big_batch(150), now=NOW)

asyncio.run(main())
"""


async def test_a_crash_between_chunks_never_counts_twice_and_the_retry_completes(
    moto_server: str, table: str, store: DynamoDbStore
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_BETWEEN_CHUNKS, moto_server, table, cwd=REPO
    )
    assert await child.wait() == -signal.SIGKILL
    half = await store.totals()
    stored = {e["dedup_key"] for e in await store.recent_events(1000)}
    assert 0 < len(stored) < 150, "the crash should fall between chunks"
    # What was stored is counted, no more, no less.
    assert sum(half.events.values()) == len(stored)
    batch = big_batch(150)
    result = await store.commit(batch, now=NOW)  # the source re-sends the batch
    assert sorted(keys(result.verdicts)) == sorted(set(keys([v for v, _ in batch])) - stored)
    totals = await store.totals()
    assert sum(totals.events.values()) == 150
    assert sum(totals.sessions.values()) == 40
    assert len({e["dedup_key"] for e in await store.recent_events(1000)}) == 150


async def test_a_failed_chunk_reports_the_chunks_before_it_with_the_next_commit(
    store: DynamoDbStore,
) -> None:
    """The counters must not miss events that were stored by a commit that then failed."""
    send = store._client.transact_write_items
    calls = 0

    async def third_fails(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:  # botocore's error for an unreachable service, once
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "x"}}, "T")
        return await send(**kwargs)

    store._client.transact_write_items = third_fails
    batch = big_batch(100)
    with pytest.raises(StoreError, match="InternalServerError"):
        await store.commit(batch, now=NOW)
    result = await store.commit(batch, now=NOW)
    assert sorted(keys(result.verdicts)) == sorted(keys([v for v, _ in batch]))
    assert len(result.new_sessions) == 40
    assert sum((await store.totals()).events.values()) == 100


def caller_and_role_copies() -> tuple[Verdict, Verdict]:
    """The two account copies of one cross-account assume call, deciding differently."""
    caller = replace(verdict("caller-copy", shared="s-1", principal="bg-user"), copy_rank=2)
    role = verdict("role-copy", shared="s-1", principal="bg-role", classification="drill")
    return caller, replace(role, copy_rank=1)


@pytest.mark.parametrize("meanwhile", ["weaker", "same"])
async def test_a_copy_stored_between_our_read_and_our_write_is_read_again(
    moto_server: str, table: str, store: DynamoDbStore, meanwhile: str
) -> None:
    """Another replica stores a copy of the key after this store read it as absent: the
    cancelled put re-reads it, then replaces a weaker copy (counted: it decides otherwise) or
    drops the same one (already counted)."""
    caller, role = caller_and_role_copies()
    other = make(moto_server, table)
    await other.open()
    send = store._client.transact_write_items
    raced = False

    async def other_first(**kwargs: Any) -> Any:
        nonlocal raced
        if not raced:
            raced = True
            await other.commit([(role if meanwhile == "weaker" else caller, "sqs")], now=NOW)
        return await send(**kwargs)

    store._client.transact_write_items = other_first
    try:
        result = await store.commit([(caller, "lookup")], now=NOW)
    finally:
        await other.close()
    assert raced
    [event] = await store.recent_events(10)
    assert event["event_id"] == "caller-copy"
    events = (await store.totals()).events
    if meanwhile == "weaker":
        assert keys(result.verdicts) == ["s-1"]
        assert events == {
            ("bg-role", "drill", "success"): 1,
            ("bg-user", "unexpected", "success"): 1,
        }
    else:
        assert result.verdicts == []
        assert events == {("bg-user", "unexpected", "success"): 1}


async def test_retention_is_ttl_and_expired_items_count_as_absent(
    moto_server: str, table: str
) -> None:
    store = make(moto_server, table, retention=timedelta(days=1))
    await store.open()
    try:
        first = await store.commit([(verdict("a", session="ASIA1"), "lookup")], now=NOW)
        assert keys(first.verdicts) == ["a"]
        (event,) = [i for i in items(moto_server, table) if i["pk"]["S"] == "E#a"]
        assert int(event["expires_at"]["N"]) == int((NOW + timedelta(days=1)).timestamp())
        assert await store.prune(NOW + timedelta(days=2)) == 0  # TTL deletes, not prune
        # Stored at NOW, kept a day: by the wall clock of this run it has expired.
        assert await store.recent_events(10) == []
        later = NOW + timedelta(days=1, seconds=1)
        again = await store.commit([(verdict("a", session="ASIA1"), "lookup")], now=later)
        assert keys(again.verdicts) == ["a"]  # like SQLite after pruning: stored anew
        assert again.new_sessions == [("bg-admin", "unexpected")]
        dup = await store.commit([(verdict("a"), "lookup")], now=later + timedelta(hours=1))
        assert dup.verdicts == []
    finally:
        await store.close()
    client = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


async def test_a_missing_or_foreign_table_is_a_clear_store_error(moto_server: str) -> None:
    with pytest.raises(StoreError, match=r"no-such-table.*ResourceNotFoundException"):
        await make(moto_server, "no-such-table").open()
    client = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    client.create_table(
        TableName="someone-elses",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(StoreError, match=r"dynamodb-table\.yaml"):
        await make(moto_server, "someone-elses").open()


async def test_an_unreachable_service_is_a_store_error() -> None:
    store = DynamoDbStore("t-1", "us-east-1", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StoreError, match="open failed"):
        await store.open()


async def test_requests_per_stored_event(
    store: DynamoDbStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Distinct events in SQS-sized batches of 10, a session each per 4 events."""
    store.requests.clear()
    for start in range(0, 200, 10):
        batch = [
            (verdict(f"r{i}", at=T0 + timedelta(seconds=i), session=f"ASIA{i // 4}"), "lookup")
            for i in range(start, start + 10)
        ]
        await store.commit(batch, now=NOW)
    per_event = sum(store.requests.values()) / 200
    # One pre-read of events and sessions, one transaction a batch: 3 per 10 events.
    assert store.requests == {"batch_get_item": 40, "transact_write_items": 20}
    with capsys.disabled():
        print(f"\n[info] DynamoDB requests per stored event (batches of 10): {per_event:.2f}")


# -- the leader lease -------------------------------------------------------------------


async def test_one_holder_at_a_time_and_a_stale_token_cannot_write(
    moto_server: str, table: str
) -> None:
    a, b = (make(moto_server, table, lease_period=timedelta(seconds=30)) for _ in "ab")
    await a.open()
    await b.open()
    try:
        first = await a.hold_lease("a", NOW)
        assert first is not None and first.holder == "a"
        assert await b.hold_lease("b", NOW + timedelta(seconds=29)) is None
        assert await a.hold_lease("a", NOW + timedelta(seconds=20)) == first  # renewed
        assert await b.hold_lease("b", NOW + timedelta(seconds=49)) is None
        second = await b.hold_lease("b", NOW + timedelta(seconds=51))  # a stopped renewing
        assert second is not None and second.token > first.token
        assert await a.hold_lease("a", NOW + timedelta(seconds=52)) is None
        await b.set_checkpoints({"lookup:123:us-east-1": "new"}, fence=second)
        # a, paused while b took over, wakes up and saves the position it had.
        with pytest.raises(StoreError, match="no longer the leader's"):
            await a.set_checkpoints({"lookup:123:us-east-1": "old"}, fence=first)
        assert await a.checkpoint("lookup:123:us-east-1") == "new"
    finally:
        await a.close()
        await b.close()


async def test_leadership_fails_over_within_two_lease_periods(moto_server: str, table: str) -> None:
    period = timedelta(seconds=0.9)
    stores = [make(moto_server, table, lease_period=period) for _ in range(3)]
    for s in stores:
        await s.open()
    changes: list[tuple[str, bool, float]] = []
    loop = asyncio.get_running_loop()
    replicas = [
        Leadership(
            s,
            f"r{i}",
            lambda: datetime.now(UTC),
            partial(lambda name, on: changes.append((name, on, loop.time())), f"r{i}"),
        )
        for i, s in enumerate(stores)
    ]
    stops = [asyncio.Event() for _ in replicas]
    tasks = [asyncio.create_task(r.run(stop)) for r, stop in zip(replicas, stops, strict=True)]
    try:
        await asyncio.sleep(period.total_seconds() * 2)
        leaders = [r for r in replicas if r.leading.is_set()]
        assert len(leaders) == 1
        (leader,) = leaders
        index = replicas.index(leader)
        tasks[index].cancel()  # killed: no release, no more renewals
        killed = loop.time()
        while not any(r.leading.is_set() for r in replicas if r is not leader):
            assert loop.time() - killed < 2 * period.total_seconds(), "no failover in time"
            await asyncio.sleep(0.02)
        failover = loop.time() - killed
        assert sum(r.leading.is_set() for r in replicas if r is not leader) == 1
        # The next leader stops (SIGTERM): it gives the lease up, no need to wait it out.
        (second,) = [r for r in replicas if r is not leader and r.leading.is_set()]
        stops[replicas.index(second)].set()
        await tasks[replicas.index(second)]
        stopped = loop.time()
        # Without the release the lease would run for two thirds of a period more at least.
        while not any(r.leading.is_set() for r in replicas if r not in (leader, second)):
            assert loop.time() - stopped < period.total_seconds() * 2 / 3, "not released"
            await asyncio.sleep(0.02)
        handover = loop.time() - stopped
        print(
            f"\n[info] failover after the leader died: {failover:.2f} s; after it stopped: "
            f"{handover:.2f} s (lease {period.total_seconds()} s)"
        )
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in stores:
            await s.close()
