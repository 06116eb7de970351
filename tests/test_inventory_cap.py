"""Discovery cannot be crowded, untagged or deleted into silence (issue 12, point 3).

An attacker with ``iam:CreateRole`` created 50 roles named ``aaa-emergency-NN``; discovery kept
the first 50 matches by name and dropped the real break-glass user, whose series vanished and
whose next use was not counted. Here the same attack runs against moto: a principal once watched
stays watched, new discoveries past the bound are counted (metric, log, failed audit check),
and a principal that leaves IAM (or loses its tag) fails its ``exists`` check instead of
disappearing.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from harness import (
    ACCOUNT,
    ACCOUNT_TRUST,
    break_glass_rules,
    running_daemon,
    user_calls,
    wait_for,
    write_config,
)

from watcher.aws import AwsClients
from watcher.credentials import check_credentials
from watcher.emulator.server import Emulator
from watcher.inventory import InventoryResult, discover
from watcher.model import Principal, Rules
from watcher.settings import Account, Config, Inventory

DECOYS = 55


@pytest.fixture
def iam(moto_endpoint: str) -> Any:
    return boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")


def settings(endpoint: str) -> Config:
    return Config(
        rules_path=Path("/nonexistent/rules"),
        state_path=Path("/nonexistent/state.db"),
        accounts=(Account(ACCOUNT, ("us-east-1",)),),
        endpoint_url=endpoint,
        inventory=Inventory(),
    )


async def inventory(endpoint: str, keep: tuple[Principal, ...] = ()) -> InventoryResult:
    cfg = settings(endpoint)
    return await discover(AwsClients(endpoint), cfg, Rules((), ()), keep=keep)


def create_decoys(iam: Any) -> None:
    for n in range(DECOYS):
        iam.create_role(RoleName=f"aaa-emergency-{n:02}", AssumeRolePolicyDocument=ACCOUNT_TRUST)


def exists_check(result: InventoryResult, name: str) -> tuple[bool, str]:
    principal = next(p for p in result.principals if p.name == name)
    (check,) = [
        c
        for c in check_credentials(
            principal, result.facts[name], max_key_age=timedelta(days=90), now=datetime.now(UTC)
        )
        if c.check == "exists"
    ]
    return check.ok, check.reason


async def test_decoys_created_later_never_evict_a_watched_principal(
    moto_endpoint: str, iam: Any, caplog: pytest.LogCaptureFixture
) -> None:
    iam.create_user(UserName="emergency-user")
    first = await inventory(moto_endpoint)
    assert [p.name for p in first.principals] == ["emergency-user"]
    create_decoys(iam)
    with caplog.at_level(logging.WARNING, logger="watcher.inventory"):
        second = await inventory(moto_endpoint, keep=first.discovered)
    names = [p.name for p in second.principals]
    assert names[0] == "emergency-user" and len(names) == 50
    assert second.truncated == {ACCOUNT: DECOYS - 49}
    assert exists_check(second, "emergency-user") == (True, "user emergency-user exists")
    (warning,) = [r for r in caplog.records if r.message.startswith("discovery bound reached")]
    assert (warning.__dict__["account"], warning.__dict__["unwatched"]) == (ACCOUNT, 6)


async def test_decoys_created_first_are_younger_than_what_they_would_hide(
    moto_endpoint: str, iam: Any
) -> None:
    iam.create_user(UserName="emergency-user")  # the real one, created long before
    create_decoys(iam)  # then the attack, before the watcher ever ran
    result = await inventory(moto_endpoint)
    assert "emergency-user" in [p.name for p in result.principals]
    assert result.truncated == {ACCOUNT: DECOYS + 1 - 50}


async def test_a_principal_deleted_or_untagged_in_iam_is_reported_not_unwatched(
    moto_endpoint: str, iam: Any
) -> None:
    iam.create_user(UserName="emergency-user")
    iam.create_role(
        RoleName="ops-admin",
        AssumeRolePolicyDocument=ACCOUNT_TRUST,
        Tags=[{"Key": "breakglass", "Value": "true"}],
    )
    first = await inventory(moto_endpoint)
    assert sorted(p.name for p in first.principals) == ["emergency-user", "ops-admin"]
    iam.delete_user(UserName="emergency-user")
    iam.untag_role(RoleName="ops-admin", TagKeys=["breakglass"])
    second = await inventory(moto_endpoint, keep=first.discovered)
    assert second.principals == first.principals
    assert exists_check(second, "emergency-user") == (False, "user emergency-user does not exist")
    assert exists_check(second, "ops-admin") == (True, "role ops-admin exists")
    assert second.truncated == {}


async def test_an_unreadable_account_keeps_its_discovered_principals(
    moto_endpoint: str, iam: Any
) -> None:
    iam.create_user(UserName="emergency-user")
    first = await inventory(moto_endpoint)
    unreachable = "http://127.0.0.1:9"  # discard port: connection refused
    cfg = settings(unreachable)
    second = await discover(AwsClients(unreachable), cfg, Rules((), ()), keep=first.discovered)
    assert second.principals == first.principals and second.errors
    assert "emergency-user" not in second.facts  # a failed source, not a failed check


def test_the_daemon_keeps_counting_a_discovered_user_through_the_attack(
    tmp_path: Path, emulator: Emulator
) -> None:
    iam = boto3.client("iam", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
    iam.create_user(UserName="emergency-user")
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=None,
        rules=break_glass_rules(),
        # One LookupEvents query per watched principal: 50 of them take 33 s a poll at the
        # default 1.5 calls/s (AWS allows 2). Faster here, on both sides, to keep the test short.
        lookup_settings="{interval: 1s, overlap: 20m, rate_per_second: 100}",
    )
    emulator.lookup.rate_per_second = 100  # the emulator fixture resets it for the next test
    config.write_text(
        config.read_text().replace("inventory: {enabled: false}", "inventory: {interval: 1s}")
    )
    before = datetime.now(UTC) - timedelta(minutes=1)

    def use(n: int) -> None:
        for record in user_calls([n], lambda _: before, tag="use"):
            record["userIdentity"]["userName"] = "emergency-user"
            record["userIdentity"]["arn"] = f"arn:aws:iam::{ACCOUNT}:user/emergency-user"
            emulator.lookup.add(record)

    with running_daemon(config) as daemon:
        wait_for(
            lambda: daemon.metric("breakglass_principal_info", principal="emergency-user") == 1,
            what="the user to be discovered",
        )
        use(1)
        wait_for(
            lambda: daemon.metric("breakglass_events_total", principal="emergency-user") == 1,
            what="its first use",
        )
        create_decoys(iam)
        wait_for(
            lambda: (
                daemon.metric("breakglass_inventory_unwatched_principals", account=ACCOUNT)
                == DECOYS - 49
            ),
            what="the bound to be reported",
        )
        assert daemon.metric("breakglass_principal_info", principal="emergency-user") == 1
        use(2)
        wait_for(
            lambda: daemon.metric("breakglass_events_total", principal="emergency-user") == 2,
            what="its second use, counted after the attack",
        )
        assert any(
            line.get("message", "").startswith("discovery bound reached")
            and line.get("unwatched") == DECOYS - 49
            for line in daemon.log_lines()
        )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
