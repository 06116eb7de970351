"""The LookupEvents poller against the emulator in moto's server, with real aiobotocore clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import RecordingObserver, RecordingSink

from watcher.aws import AwsClients
from watcher.emulator.lookup import INTERNAL_FAILURE, THROTTLED, LookupCall
from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    console_login_record,
    iam_user_identity,
    root_identity,
)
from watcher.emulator.server import Emulator
from watcher.model import Principal
from watcher.settings import Account
from watcher.sources.lookup import LookupPoller, LookupSettings
from watcher.sources.retry import Backoff

ACCOUNT = "123456789012"
READ_ACCOUNT = "111111111111"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SESSION_KEY = "ASIASESSION000000001"
PRINCIPALS = (
    Principal(
        "bg-user",
        "user",
        ACCOUNT,
        iam_names=("break-glass-user",),
        arn=f"arn:aws:iam::{ACCOUNT}:user/Break-Glass-User",
    ),
    Principal("bg-admin", "role", ACCOUNT, iam_names=("break-glass-admin",), arn=ROLE),
    Principal("root", "root", ACCOUNT),
)


class MemoryStore(RecordingSink):
    """A sink that also answers checkpoint reads from what it stored."""

    async def checkpoint(self, key: str) -> str | None:
        for _, _, checkpoints in reversed(self.batches):
            if key in checkpoints:
                return checkpoints[key]
        return None


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _poller(
    clients: AwsClients,
    store: MemoryStore,
    observer: RecordingObserver,
    clock: Clock,
    *,
    rate: float = 100.0,
    account: Account | None = None,
    principals: Sequence[Principal] = PRINCIPALS,
    throttle_backoff: Backoff | None = None,
) -> LookupPoller:
    settings = LookupSettings(
        interval=timedelta(seconds=60),
        overlap=timedelta(minutes=20),
        lookback=timedelta(hours=1),
        rate_per_second=rate,
    )
    return LookupPoller(
        clients,
        account or Account(ACCOUNT, ("us-east-1",)),
        "us-east-1",
        settings,
        principals=lambda: principals,
        sink=store,
        observer=observer,
        checkpoints=store,
        clock=clock,
        backoff=Backoff(base=0.01, cap=0.05),
        throttle_backoff=throttle_backoff or Backoff(base=0.01, cap=0.1),
    )


async def _poll_until_success(
    poller: LookupPoller, observer: RecordingObserver, successes: int = 1
) -> None:
    """Run the poller until it reported ``successes`` in all, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    try:
        async with asyncio.timeout(20):
            while len(observer.successes) < successes:
                await asyncio.sleep(0.01)
                if task.done():
                    task.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


def _user_call(name: str, event_id: str, at: datetime, account: str = ACCOUNT) -> dict[str, Any]:
    return api_call_record(
        identity=iam_user_identity(account, name),
        event_name="ListBuckets",
        event_source="s3.amazonaws.com",
        account=account,
        event_time=at,
        event_id=event_id,
    )


def _most_in_a_second(calls: list[LookupCall]) -> int:
    """The most calls the server saw within any second (less 50 ms for network jitter)."""
    times = [c.at for c in calls]
    return max(sum(1 for t in times if s <= t < s + 0.95) for s in times)


async def test_one_poll_finds_every_kind_of_break_glass_event(
    emulator: Emulator, observer: RecordingObserver, aws_clients: AwsClients
) -> None:
    emulator.lookup.rate_per_second = 1000
    t = NOW - timedelta(minutes=10)
    auditor = iam_user_identity(ACCOUNT, "auditor", "AKIAAUDITOR000000000")
    wanted = [
        _user_call("Break-Glass-User", "user-call", t),
        console_login_record(
            identity=iam_user_identity(ACCOUNT, "Break-Glass-User"),
            success=False,
            mfa_used=False,
            event_time=t,
            event_id="user-failed-login",
        ),
        assume_role_record(
            caller=auditor,
            role_arn=ROLE,
            session_name="drill",
            event_time=t,
            issued_access_key_id=SESSION_KEY,
            event_id="assume",
        ),
        api_call_record(
            identity=assumed_role_identity(ROLE, "drill", SESSION_KEY),
            event_name="TerminateInstances",
            event_source="ec2.amazonaws.com",
            account=ACCOUNT,
            event_time=t + timedelta(minutes=1),
            event_id="session-call",
            read_only=False,
        ),
        console_login_record(
            identity=root_identity(ACCOUNT),
            success=False,
            mfa_used=False,
            event_time=t,
            event_id="root-failed-login",
        ),
        api_call_record(
            identity=root_identity(ACCOUNT),
            event_name="CreateUser",
            event_source="iam.amazonaws.com",
            account=ACCOUNT,
            event_time=t,
            event_id="root-call",
            read_only=False,
        ),
    ]
    decoys = [
        _user_call("developer", "developer-call", t),
        console_login_record(
            identity=iam_user_identity(ACCOUNT, "developer"),
            success=True,
            mfa_used=True,
            event_time=t,
            event_id="developer-login",
        ),
        _user_call("Break-Glass-User", "too-old", NOW - timedelta(hours=2)),
        _user_call("Break-Glass-User", "other-account", t, account="999999999999"),
    ]
    for record in wanted + decoys:
        emulator.lookup.add(record)
    store = MemoryStore()

    await _poll_until_success(_poller(aws_clients, store, observer, Clock(NOW)), observer)

    assert sorted(store.event_ids) == sorted(r["eventID"] for r in wanted)
    [(_, source, checkpoints)] = store.batches
    assert source == "lookup"
    assert checkpoints == {f"lookup:{ACCOUNT}:us-east-1": NOW.isoformat()}
    asked = {c.attribute for c in emulator.lookup.calls()}
    assert asked == {
        ("Username", "Break-Glass-User"),
        ("Username", "root"),
        ("ResourceName", ROLE),
        ("AccessKeyId", SESSION_KEY),
        ("EventName", "ConsoleLogin"),
        # What no attribute finds (issue 11): console switches, denied assume calls, AssumeRoot.
        ("EventName", "SwitchRole"),
        ("EventName", "AssumeRole"),
        ("EventName", "AssumeRoleWithSAML"),
        ("EventName", "AssumeRoleWithWebIdentity"),
        ("EventName", "AssumeRoot"),
    }
    assert observer.successes == [("lookup", ACCOUNT, "us-east-1")]
    assert observer.errors == []


@pytest.mark.slow  # paced by the real rate limit
async def test_the_rate_holds_while_paging_over_many_events(
    emulator: Emulator, observer: RecordingObserver, aws_clients: AwsClients
) -> None:
    emulator.lookup.rate_per_second = 5  # AWS allows 2; configs use less (1.5), so do we
    for i in range(160):
        emulator.lookup.add(_user_call("Break-Glass-User", f"e{i:03}", NOW - timedelta(seconds=i)))
    store = MemoryStore()

    await _poll_until_success(_poller(aws_clients, store, observer, Clock(NOW), rate=4), observer)

    assert sorted(store.event_ids) == [f"e{i:03}" for i in range(160)]
    calls = emulator.lookup.calls(ACCOUNT, "us-east-1")
    assert len(calls) == 12  # 4 pages of the user, root, the role, 6 sweeps by event name
    assert {c.outcome for c in calls} == {"ok"}
    # The first request also opens the connection, so it reaches the server late and its gap
    # to the second looks short there; from then on the server sees the client's spacing.
    assert _most_in_a_second(calls[1:]) <= 4
    assert observer.errors == []


@pytest.mark.slow  # paced by the real rate limit
async def test_throttling_is_survived_counted_and_skips_no_page(
    emulator: Emulator, observer: RecordingObserver, aws_clients: AwsClients
) -> None:
    emulator.lookup.rate_per_second = 3  # the poller asks faster than the service allows
    emulator.lookup.force_throttles(2)
    for i in range(160):
        emulator.lookup.add(_user_call("Break-Glass-User", f"e{i:03}", NOW - timedelta(seconds=i)))
    store = MemoryStore()

    await _poll_until_success(_poller(aws_clients, store, observer, Clock(NOW), rate=50), observer)

    assert sorted(store.event_ids) == [f"e{i:03}" for i in range(160)]
    throttled = [c for c in emulator.lookup.calls() if c.outcome == "ThrottlingException"]
    assert len(throttled) > 2
    assert observer.errors == [("lookup", ACCOUNT, "us-east-1", "throttled")] * len(throttled)
    assert len(store.batches) == 1 and store.batches[0][2]  # stored with its checkpoint


async def test_the_overlap_rereads_late_events_that_share_a_timestamp(
    emulator: Emulator, observer: RecordingObserver, aws_clients: AwsClients
) -> None:
    emulator.lookup.rate_per_second = 1000
    clock = Clock(NOW)
    emulator.lookup.add(_user_call("Break-Glass-User", "first", NOW))
    store = MemoryStore()
    poller = _poller(aws_clients, store, observer, clock)
    await _poll_until_success(poller, observer)
    assert store.event_ids == ["first"]

    # An event with the very timestamp of the checkpoint shows up only after that poll.
    emulator.lookup.add(_user_call("Break-Glass-User", "late", NOW))
    clock.now = NOW + timedelta(minutes=1)
    await _poll_until_success(poller, observer, successes=2)

    assert "late" in store.event_ids
    second = store.batches[-1]
    assert second[2] == {f"lookup:{ACCOUNT}:us-east-1": clock.now.isoformat()}
    first_poll = [c for c in emulator.lookup.calls() if c.end == NOW]
    second_poll = [c for c in emulator.lookup.calls() if c.end == clock.now]
    assert first_poll and second_poll
    # First poll: the lookback (and 12 h of assume calls); then the checkpoint minus the overlap.
    assert {(c.attribute, c.start) for c in first_poll} == {
        (("Username", "Break-Glass-User"), NOW - timedelta(hours=1)),
        (("Username", "root"), NOW - timedelta(hours=1)),
        (("ResourceName", ROLE), NOW - timedelta(hours=12)),
        *(
            (("EventName", name), NOW - timedelta(hours=1))
            for name in (
                "ConsoleLogin",
                "SwitchRole",
                "AssumeRole",
                "AssumeRoleWithSAML",
                "AssumeRoleWithWebIdentity",
                "AssumeRoot",
            )
        ),
    }
    assert {c.start for c in second_poll} == {NOW - timedelta(minutes=20)}


async def test_a_failed_call_keeps_the_checkpoint_and_the_poll_is_retried(
    emulator: Emulator, observer: RecordingObserver, aws_clients: AwsClients
) -> None:
    emulator.lookup.rate_per_second = 1000
    emulator.lookup.add(_user_call("Break-Glass-User", "e1", NOW - timedelta(minutes=1)))
    emulator.lookup.inject(INTERNAL_FAILURE)
    store = MemoryStore()

    await _poll_until_success(_poller(aws_clients, store, observer, Clock(NOW)), observer)

    assert observer.errors == [("lookup", ACCOUNT, "us-east-1", "other")]
    assert [cp for _, _, cp in store.batches] == [{f"lookup:{ACCOUNT}:us-east-1": NOW.isoformat()}]
    assert store.event_ids == ["e1"]


async def test_session_keys_found_before_a_restart_are_found_again(
    emulator: Emulator, observer: RecordingObserver, aws_clients: AwsClients
) -> None:
    """The assume call is 3 hours old, older than the lookback: the first poll still reads the
    last 12 hours of assume calls, so the session's recent calls are looked up."""
    emulator.lookup.rate_per_second = 1000
    auditor = iam_user_identity(ACCOUNT, "auditor")
    emulator.lookup.add(
        assume_role_record(
            caller=auditor,
            role_arn=ROLE,
            session_name="long",
            event_time=NOW - timedelta(hours=3),
            issued_access_key_id=SESSION_KEY,
            event_id="assume",
        )
    )
    emulator.lookup.add(
        api_call_record(
            identity=assumed_role_identity(ROLE, "long", SESSION_KEY),
            event_name="GetObject",
            event_source="s3.amazonaws.com",
            account=ACCOUNT,
            event_time=NOW - timedelta(minutes=5),
            event_id="recent-session-call",
        )
    )
    store = MemoryStore()
    await _poll_until_success(_poller(aws_clients, store, observer, Clock(NOW)), observer)
    assert set(store.event_ids) == {"assume", "recent-session-call"}


async def test_an_account_with_a_role_is_polled_through_it(
    emulator: Emulator, observer: RecordingObserver, aws_clients: AwsClients
) -> None:
    emulator.lookup.rate_per_second = 1000
    principals = (Principal("bg", "user", READ_ACCOUNT, iam_names=("break-glass",)),)
    emulator.lookup.add(_user_call("break-glass", "there", NOW, account=READ_ACCOUNT))
    emulator.lookup.add(_user_call("break-glass", "here", NOW))
    account = Account(
        READ_ACCOUNT, ("us-east-1",), role_arn=f"arn:aws:iam::{READ_ACCOUNT}:role/reader"
    )
    store = MemoryStore()

    poller = _poller(
        aws_clients, store, observer, Clock(NOW), account=account, principals=principals
    )
    await _poll_until_success(poller, observer)

    assert store.event_ids == ["there"]
    assert {c.account for c in emulator.lookup.calls()} == {READ_ACCOUNT}


async def test_a_stop_during_a_throttle_wait_ends_the_poll_at_once(
    emulator: Emulator, observer: RecordingObserver, aws_clients: AwsClients
) -> None:
    emulator.lookup.rate_per_second = 1000
    emulator.lookup.add(_user_call("Break-Glass-User", "e1", NOW - timedelta(minutes=1)))
    emulator.lookup.inject(THROTTLED, times=None)
    store = MemoryStore()
    long_wait = Backoff(base=30, cap=30, jitter="none")
    poller = _poller(aws_clients, store, observer, Clock(NOW), throttle_backoff=long_wait)
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    async with asyncio.timeout(5):
        while True:  # the observer has no event to wait on
            if observer.errors:
                break
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=1)

    assert observer.errors == [("lookup", ACCOUNT, "us-east-1", "throttled")]
    assert observer.successes == []
    assert store.batches == []  # nothing read, and the checkpoint did not move


async def test_a_clock_jump_never_moves_the_checkpoint_past_cloudtrails_clock(
    emulator: Emulator,
    observer: RecordingObserver,
    aws_clients: AwsClients,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 12, point 6: a checkpoint taken from a clock that jumped ahead skipped, once the
    clock was set right, every event between the real time and the jumped one."""
    emulator.lookup.rate_per_second = 1000
    real = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(real)
    store = MemoryStore()
    poller = _poller(aws_clients, store, observer, clock)
    await _poll_until_success(poller, observer)  # checkpoint: now

    clock.now = real + timedelta(hours=3)  # the local clock jumps three hours ahead
    with caplog.at_level(logging.WARNING, logger="watcher.sources.lookup"):
        await _poll_until_success(poller, observer, successes=2)
    checkpoint = datetime.fromisoformat(store.batches[-1][2][f"lookup:{ACCOUNT}:us-east-1"])
    assert real <= checkpoint <= datetime.now(UTC)  # CloudTrail's time, not the jumped one
    assert ("lookup", ACCOUNT, "us-east-1", "other") in observer.errors
    (warning,) = [r for r in caplog.records if "clock is ahead" in r.message]
    assert warning.__dict__["ahead_seconds"] >= 3 * 3600 - 60

    # Two hours later by the (still wrong) clock, CloudTrail shows a use from half an hour
    # after the jump: the window starts at CloudTrail's time, so it is read.
    emulator.lookup.add(_user_call("Break-Glass-User", "during-jump", real + timedelta(minutes=30)))
    clock.now = real + timedelta(hours=2)
    await _poll_until_success(poller, observer, successes=3)
    assert "during-jump" in store.event_ids
