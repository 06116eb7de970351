"""The bounded client pool (``watcher/client_pool.py``) through ``AwsClients.lease``: real
aiobotocore clients against the emulator in moto's server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from harness import break_glass_rules, wait_for, write_config
from moto.sts.models import sts_backends

from watcher.aws import AwsClients
from watcher.client_pool import ClientPool
from watcher.daemon import Daemon
from watcher.emulator.server import Emulator
from watcher.emulator.sts import require_roles_in
from watcher.settings import Account

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1")


def _account(n: int, regions: tuple[str, ...] = REGIONS) -> Account:
    account = f"{100000000000 + n}"
    return Account(account, regions, role_arn=f"arn:aws:iam::{account}:role/watcher-reader")


def _closed(client: Any) -> bool:
    """Whether an aiobotocore client was closed. aiobotocore exposes no such flag: its HTTP
    session forgets its connection pools (``_sessions``) when it is closed."""
    return client._endpoint.http_session._sessions is None


async def _call(client: Any) -> None:
    await client.lookup_events(MaxResults=1)


async def test_live_clients_stay_bounded_over_many_account_regions(emulator: Emulator) -> None:
    clients = AwsClients(emulator.endpoint_url, pool_size=3)
    seen = []
    for n in range(5):
        account = _account(n, REGIONS[:2])
        for region in account.regions:
            async with clients.lease("cloudtrail", region, account) as cloudtrail:
                await _call(cloudtrail)
                seen.append(cloudtrail)
            assert clients.pool.live <= 3
    assert clients.pool.created == 10 and clients.pool.peak == 3
    # The least recently used were closed as the pool went over; the 3 latest stay open.
    assert [_closed(c) for c in seen] == [True] * 7 + [False] * 3
    assert {(c.account, c.region) for c in emulator.lookup.calls()} == {
        (_account(n).id, r) for n in range(5) for r in REGIONS[:2]
    }
    await clients.close()
    assert clients.pool.live == 0 and all(_closed(c) for c in seen)


async def test_an_account_region_reuses_its_client(emulator: Emulator) -> None:
    clients = AwsClients(emulator.endpoint_url, pool_size=4)
    account = _account(1)
    async with clients.lease("cloudtrail", "us-east-1", account) as first:
        await _call(first)
    async with clients.lease("cloudtrail", "us-east-1", account) as again:
        await _call(again)
    async with clients.lease("cloudtrail", "eu-west-1", account) as other:
        await _call(other)
    assert again is first and other is not first
    assert clients.pool.created == 2
    await clients.close()
    assert _closed(first) and _closed(other)


async def test_an_accounts_regions_share_one_assumed_role(emulator: Emulator) -> None:
    """One credentials object (one AssumeRole) per account, whatever its regions."""
    clients = AwsClients(emulator.endpoint_url)
    account = _account(2)
    credentials = []
    for region in REGIONS:
        async with clients.lease("cloudtrail", region, account) as cloudtrail:
            await _call(cloudtrail)
            # botocore signs with the credentials object it was given (no public accessor).
            credentials.append(cloudtrail._request_signer._credentials)
    assert all(c is credentials[0] for c in credentials)
    assert len(sts_backends[account.id]["aws"].assumed_roles) == 1
    assert {c.region for c in emulator.lookup.calls(account.id)} == set(REGIONS)
    await clients.close()


async def test_a_leased_client_is_never_closed_under_its_call(emulator: Emulator) -> None:
    """A pool of one, churned by other account-regions while a lease is held and its call is
    in flight: the held client stays open, the pool holds the surplus until the lease ends."""
    clients = AwsClients(emulator.endpoint_url, pool_size=1)
    long_call_started = asyncio.Event()
    churned = asyncio.Event()

    async def long_poll() -> Any:
        async with clients.lease("cloudtrail", "us-east-1", _account(0)) as held:
            long_call_started.set()
            await churned.wait()  # the call is "in flight" while the others churn
            await _call(held)
            assert not _closed(held)
            return held

    task = asyncio.create_task(long_poll())
    await long_call_started.wait()
    others = []
    for n in range(1, 4):
        async with clients.lease("cloudtrail", "us-east-1", _account(n)) as other:
            await _call(other)
            others.append(other)
        assert clients.pool.live == 1  # the held one: each other one was closed after use
    assert all(_closed(o) for o in others)
    churned.set()
    held = await task
    assert clients.pool.live == 1 and not _closed(held)
    assert all(c.outcome == "ok" for c in emulator.lookup.calls())
    await clients.close()


async def test_close_waits_for_leases_in_flight(emulator: Emulator) -> None:
    """Stopping (or an endpoint change) closes idle clients at once and a leased one when its
    lease ends; a poller not yet stopped still gets a client, closed after its poll."""
    clients = AwsClients(emulator.endpoint_url)
    async with clients.lease("cloudtrail", "eu-west-1", _account(1)) as idle:
        await _call(idle)
    async with clients.lease("cloudtrail", "us-east-1", _account(0)) as held:
        await clients.close()
        assert _closed(idle) and not _closed(held)
        await _call(held)
    assert _closed(held) and clients.pool.live == 0
    async with clients.lease("cloudtrail", "us-east-1", _account(0)) as late:
        await _call(late)
    assert _closed(late) and clients.pool.live == 0


# moto warns that its AccessDenied has no STS error shape (it answers it all the same).
@pytest.mark.filterwarnings("ignore:Exception.STSClientError.:UserWarning")
async def test_an_account_whose_role_breaks_fails_alone(emulator: Emulator) -> None:
    clients = AwsClients(emulator.endpoint_url, pool_size=2)
    broken, working = _account(7), _account(8)
    require_roles_in([broken.id])  # AssumeRole into its (missing) read role is denied
    try:
        for _ in range(2):  # the failed lease leaves nothing held: it is tried again next poll
            with pytest.raises(ClientError) as denied:
                async with clients.lease("cloudtrail", "us-east-1", broken) as cloudtrail:
                    await _call(cloudtrail)
            assert denied.value.response["Error"]["Code"] == "AccessDenied"
        for region in REGIONS:
            async with clients.lease("cloudtrail", region, working) as cloudtrail:
                await _call(cloudtrail)
    finally:
        require_roles_in([])
    assert clients.pool.live == 2  # the broken account's client was evicted like any other
    assert {(c.account, c.region) for c in emulator.lookup.calls()} == {
        (working.id, r) for r in REGIONS
    }
    await clients.close()
    assert clients.pool.live == 0


async def test_two_leases_opening_one_key_at_once_share_a_client(emulator: Emulator) -> None:
    clients = AwsClients(emulator.endpoint_url)
    account = _account(3)

    async def lease() -> Any:
        async with clients.lease("cloudtrail", "us-east-1", account) as cloudtrail:
            await _call(cloudtrail)
            return cloudtrail

    first, second = await asyncio.gather(lease(), lease())
    assert first is second and clients.pool.live == 1
    await clients.close()
    assert _closed(first)


def test_a_pool_holds_at_least_one_client() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ClientPool(0)


@pytest.mark.slow  # polls every second, reloads, polls again
async def test_reload_and_stop_with_polls_in_flight_leak_no_client(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Every account-region is polled again after a reload (SIGHUP) restarted the pollers,
    and once the daemon stopped (SIGTERM) with polls running no client is left open."""
    accounts = [_account(n, REGIONS[:2]) for n in range(3)]
    config = write_config(
        tmp_path, endpoint_url=emulator.endpoint_url, queue_url=None, rules=break_glass_rules()
    )
    listed = ", ".join(
        f'{{id: "{a.id}", role_arn: "{a.role_arn}", regions: [{", ".join(a.regions)}]}}'
        for a in accounts
    )
    text = config.read_text()
    config.write_text(text.replace('accounts: [{id: "123456789012"}]', f"accounts: [{listed}]"))
    daemon = Daemon.load(config)
    pairs = {(a.id, r) for a in accounts for r in a.regions}
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.listening.wait(), 20)

        def polled_since(since: int) -> bool:
            return {(c.account, c.region) for c in emulator.lookup.calls()[since:]} == pairs

        await asyncio.to_thread(wait_for, lambda: polled_since(0), 30, "first polls")
        config.write_text(config.read_text().replace("overlap: 20m", "overlap: 19m"))
        assert await daemon.reload()
        after_reload = len(emulator.lookup.calls())
        await asyncio.to_thread(wait_for, lambda: polled_since(after_reload), 30, "polls again")
        assert daemon._aws is not None and daemon._aws.pool.live <= len(pairs)
    finally:
        daemon.stop.set()  # what SIGTERM does, whatever polls are running
        assert await asyncio.wait_for(task, 30) == 0
    assert daemon._aws.pool.live == 0


@pytest.mark.slow  # polls, reloads onto another endpoint, waits for the old pollers to stop
async def test_an_endpoint_change_closes_the_old_factorys_clients(
    emulator: Emulator, tmp_path: Path, closed_port: int
) -> None:
    config = write_config(
        tmp_path, endpoint_url=emulator.endpoint_url, queue_url=None, rules=break_glass_rules()
    )
    daemon = Daemon.load(config)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.listening.wait(), 20)
        await asyncio.to_thread(wait_for, lambda: emulator.lookup.calls(), 30, "a first poll")
        old = daemon._aws
        assert old is not None and old.pool.live == 1
        moved = config.read_text().replace(emulator.endpoint_url, f"http://127.0.0.1:{closed_port}")
        config.write_text(moved)
        assert await daemon.reload()
        await asyncio.to_thread(wait_for, lambda: old.pool.live == 0, 30, "old clients closed")
        assert daemon._aws is not old and not daemon._retired_aws
    finally:
        daemon.stop.set()
        assert await asyncio.wait_for(task, 30) == 0
