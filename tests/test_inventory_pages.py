"""The inventory over GetAccountAuthorizationDetails pages (issue 14): a page boundary anywhere,
throttles mid-listing, and the calls an account costs. Against moto, paged by the emulator as AWS
pages it (``watcher/emulator/iam.py``: moto alone answers in one page)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
from harness import ACCOUNT, ACCOUNT_TRUST, wait_for, write_config

from watcher import inventory
from watcher.aws import AwsClients
from watcher.daemon import Daemon
from watcher.emulator.server import Emulator
from watcher.inventory import (
    AccountError,
    AccountInventory,
    InventoryResult,
    Throttling,
    discover,
    inventory_account,
)
from watcher.model import Principal, Rules
from watcher.settings import Account, Config, Inventory

BG_USER = Principal("bg-user", "user", ACCOUNT, iam_names=("break-glass-admin",))
BG_ROLE = Principal("bg-role", "role", ACCOUNT, iam_names=("break-glass-admin-role",))
FAST = Throttling(attempts=3, base=0.001, cap=0.001)
THE_ACCOUNT = Account(ACCOUNT, ("us-east-1",))


@pytest.fixture
def iam(emulator: Emulator) -> Any:
    return boto3.client("iam", endpoint_url=emulator.endpoint_url, region_name="us-east-1")


def settings(endpoint: str) -> Config:
    return Config(
        rules_path=Path("/nonexistent/rules"),
        state_path=Path("/nonexistent/state.db"),
        accounts=(THE_ACCOUNT,),
        endpoint_url=endpoint,
        inventory=Inventory(),
    )


def fill(iam: Any) -> None:
    """Declared, pattern- and tag-discovered principals spread over the listing: one user and
    ten roles, the tagged one last."""
    iam.create_user(UserName="break-glass-admin")
    iam.create_login_profile(UserName="break-glass-admin", Password="Correct-horse-battery-1")
    iam.create_access_key(UserName="break-glass-admin")
    for n in range(4):
        iam.create_role(RoleName=f"app-{n}", AssumeRolePolicyDocument=ACCOUNT_TRUST)
    iam.create_role(RoleName="break-glass-admin-role", AssumeRolePolicyDocument=ACCOUNT_TRUST)
    iam.create_role(RoleName="team-emergency", AssumeRolePolicyDocument=ACCOUNT_TRUST)
    for n in range(4, 7):
        iam.create_role(RoleName=f"app-{n}", AssumeRolePolicyDocument=ACCOUNT_TRUST)
    iam.create_role(
        RoleName="ops-admin",
        AssumeRolePolicyDocument=ACCOUNT_TRUST,
        Tags=[{"Key": "breakglass", "Value": "true"}],
    )


async def run(endpoint: str, **kw: Any) -> InventoryResult:
    cfg = settings(endpoint)
    return await discover(AwsClients(endpoint), cfg, Rules((BG_USER, BG_ROLE), ()), **kw)


@pytest.mark.slow  # five inventory runs
async def test_a_page_boundary_anywhere_changes_nothing(
    emulator: Emulator, iam: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(iam)
    whole = await run(emulator.endpoint_url)
    assert emulator.iam.calls == 1
    assert [p.name for p in whole.principals] == [
        "bg-user",
        "bg-role",
        "ops-admin",
        "team-emergency",
    ]
    for size in (1, 2, 3, 5):  # pages end between user and roles, and inside the roles
        emulator.iam.clear()
        monkeypatch.setattr(inventory, "PAGE_SIZE", size)
        paged = await run(emulator.endpoint_url)
        assert (paged.principals, paged.facts, paged.errors) == (
            whole.principals,
            whole.facts,
            whole.errors,
        ), size
        assert emulator.iam.calls == -(-11 // size), size  # 11 entities


async def test_only_the_break_glass_users_cost_calls_of_their_own(
    emulator: Emulator, iam: Any
) -> None:
    fill(iam)
    for n in range(6):
        iam.create_user(UserName=f"person-{n}", Tags=[{"Key": "team", "Value": "dev"}])
    emulator.calls.start()
    result = await run(emulator.endpoint_url)
    calls = Counter(c.action for c in emulator.calls.calls())
    assert result.errors == () and len(result.principals) == 4
    assert calls == {
        "iam:GetAccountAuthorizationDetails": 1,  # names, tags, trust policies of all 17
        "iam:ListAccessKeys": 1,  # the one break-glass user's credentials
        "iam:GetAccessKeyLastUsed": 1,
        "iam:ListMFADevices": 1,
        "iam:GetLoginProfile": 1,
    }


async def test_a_throttled_page_is_asked_for_again_and_counted(
    emulator: Emulator, iam: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(iam)
    whole = await run(emulator.endpoint_url)
    monkeypatch.setattr(inventory, "PAGE_SIZE", 4)
    emulator.iam.clear()
    emulator.iam.throttle(2, after=1)  # the second page, twice
    throttled: list[str] = []
    result = await run(
        emulator.endpoint_url,
        throttling=Throttling(attempts=3, base=0.001, cap=0.001),
        on_throttle=throttled.append,
    )
    assert (result.principals, result.facts, result.errors) == (
        whole.principals,
        whole.facts,
        (),
    )
    assert throttled == [ACCOUNT, ACCOUNT]
    assert emulator.iam.calls == 3 + 2


@pytest.mark.slow  # three inventory runs
async def test_a_throttle_outlasting_the_retries_fails_the_account_not_its_principals(
    emulator: Emulator, iam: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(iam)
    first = await run(emulator.endpoint_url)
    monkeypatch.setattr(inventory, "PAGE_SIZE", 4)
    emulator.iam.throttle(100, after=1)  # the first page reads, the rest never does
    throttled: list[str] = []
    second = await run(
        emulator.endpoint_url, keep=first.discovered, throttling=FAST, on_throttle=throttled.append
    )
    # Nothing of the half-read listing is used: the principals on unread pages are not
    # "missing", the declared ones not failing, the discovered ones still watched.
    assert second.principals == first.principals
    assert second.facts == {}
    assert [(e.account, e.kind) for e in second.errors] == [(ACCOUNT, "throttled")]
    assert throttled == [ACCOUNT] * (FAST.attempts - 1)

    alone = await inventory_account(
        AwsClients(emulator.endpoint_url),
        THE_ACCOUNT,
        Inventory(),
        (BG_USER, BG_ROLE),
        keep=first.discovered,
        throttling=FAST,
    )
    assert isinstance(alone, AccountError) and alone.kind == "throttled"


async def test_new_discoveries_of_concurrent_accounts_never_share_a_name(
    emulator: Emulator, iam: Any
) -> None:
    fill(iam)
    watched = {"ops-admin"}  # another account's discovery, named while this one was read
    result = await inventory_account(
        AwsClients(emulator.endpoint_url),
        THE_ACCOUNT,
        Inventory(),
        (BG_USER, BG_ROLE),
        taken=lambda: watched,
    )
    assert isinstance(result, AccountInventory)
    assert [p.name for p in result.discovered] == [f"ops-admin-{ACCOUNT}", "team-emergency"]


def daemon_config(tmp_path: Path, endpoint: str) -> Path:
    config = write_config(
        tmp_path,
        endpoint_url=endpoint,
        queue_url=None,
        rules=f"""
principals:
  - name: bg-user
    match: {{user_name: break-glass-admin}}
    account: "{ACCOUNT}"
""",
    )
    config.write_text(config.read_text().replace("inventory: {enabled: false}", "inventory: {}"))
    return config


def sample(daemon: Daemon, name: str, **labels: str) -> float | None:
    return daemon.registry.get_sample_value(name, labels)


async def test_the_daemon_counts_a_retried_throttle_and_keeps_the_source_up(
    emulator: Emulator, iam: Any, tmp_path: Path
) -> None:
    fill(iam)
    daemon = Daemon.load(daemon_config(tmp_path, emulator.endpoint_url))
    emulator.iam.throttle(1)
    (account,) = daemon.watching.accounts
    await daemon._inventory(account)
    source = {"source": "iam", "account": ACCOUNT, "region": "global"}
    assert sample(daemon, "breakglass_source_errors_total", **source, kind="throttled") == 1
    assert sample(daemon, "breakglass_source_up", **source) == 1
    assert sample(daemon, "breakglass_credential_check", principal="bg-user", check="exists") == 1


async def test_a_role_whose_tags_are_changed_to_hide_it_stays_watched_by_the_daemon(
    emulator: Emulator, iam: Any, tmp_path: Path
) -> None:
    fill(iam)
    daemon = Daemon.load(daemon_config(tmp_path, emulator.endpoint_url))
    (account,) = daemon.watching.accounts
    await daemon._inventory(account)
    assert "ops-admin" in {p.name for p in daemon.watched_principals}
    iam.tag_role(RoleName="ops-admin", Tags=[{"Key": "breakglass", "Value": "no"}])
    iam.tag_role(RoleName="ops-admin", Tags=[{"Key": "owner", "Value": "someone-else"}])
    await daemon._inventory(account)
    assert "ops-admin" in {p.name for p in daemon.watched_principals}
    info = sample(
        daemon, "breakglass_principal_info", principal="ops-admin", kind="role", origin="discovered"
    )
    assert info == 1
    assert sample(daemon, "breakglass_credential_check", principal="ops-admin", check="exists") == 1


def test_a_principal_of_an_account_not_watched_is_reported_once(
    emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = daemon_config(tmp_path, emulator.endpoint_url)
    rules = tmp_path / "rules" / "rules.yaml"
    rules.write_text(
        rules.read_text()
        + """  - name: stray
    match: {user_name: someone}
    account: "999999999999"
"""
    )
    with caplog.at_level("WARNING", logger="watcher.daemon"):
        daemon = Daemon.load(config)
        daemon._set_rules(daemon._loaded_rules)  # as after each inventory that changed anything
    (warning,) = [r for r in caplog.records if "not in accounts" in r.message]
    assert warning.__dict__["accounts"] == ["999999999999"]


async def test_discoveries_close_together_are_watched_together_soon_after(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The first account's discovery is watched at once; the next ones, read within
    ``REBUILD_EVERY`` of it, together once that time has passed (one rebuild, not one each)."""
    daemon = Daemon.load(daemon_config(tmp_path, emulator.endpoint_url))
    daemon._rebuild_every = 0.3

    def discovered(name: str) -> None:
        found = Principal(name, "role", ACCOUNT, iam_names=(name,), origin="discovered")
        daemon._discovered = (*daemon._discovered, found)
        daemon._discoveries_changed()

    def watched() -> set[str]:
        return {p.name for p in daemon.watched_principals}

    discovered("first")
    assert "first" in watched()
    discovered("second")
    discovered("third")
    assert not {"second", "third"} & watched()
    await asyncio.to_thread(wait_for, lambda: {"second", "third"} <= watched(), 5, "the rebuild")
