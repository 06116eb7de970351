"""Accounts from AWS Organizations and ``regions: all``: the pure resolution, the config form,
and a daemon watching a moto organization (accounts found, added while running, one broken)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from harness import wait_for

from watcher.accounts import resolve
from watcher.aws import AwsClients
from watcher.clock import utc_now
from watcher.config import parse_config
from watcher.daemon import Daemon
from watcher.emulator.records import api_call_record, iam_user_identity
from watcher.emulator.server import Emulator
from watcher.emulator.sts import require_roles_in
from watcher.errors import ConfigError
from watcher.organization import Member, members, org_accounts
from watcher.regions import enabled
from watcher.settings import Organization

# AWS answers a denied AssumeRole with AccessDenied, a code STS's service model has no shape for.
pytestmark = pytest.mark.filterwarnings("ignore:Exception.STSClientError.:UserWarning")

READ_ROLE = "breakglass-watcher-read"
TRUST = '{"Version": "2012-10-17", "Statement": []}'


def test_members_read_state_then_status() -> None:
    items = [
        {"Id": "111111111111", "State": "ACTIVE", "Status": "ACTIVE"},
        {"Id": "222222222222", "Status": "SUSPENDED"},
        {"Id": "333333333333", "State": "closed"},
        {"Arn": "no id"},
    ]
    assert members(items) == [
        Member("111111111111", "ACTIVE"),
        Member("222222222222", "SUSPENDED"),
        Member("333333333333", "CLOSED"),
    ]


def test_org_accounts_are_active_not_excluded_and_read_through_the_role() -> None:
    settings = Organization(
        role_name="ro", exclude=("333333333333",), include_management=False, regions=("eu-west-1",)
    )
    listed = [
        Member("333333333333", "ACTIVE"),
        Member("222222222222", "ACTIVE"),
        Member("111111111111", "ACTIVE"),
        Member("444444444444", "SUSPENDED"),
        Member("555555555555", "PENDING_CLOSURE"),
    ]
    accounts = org_accounts(settings, listed, management="111111111111")
    assert [(a.id, a.role_arn, a.regions) for a in accounts] == [
        ("222222222222", "arn:aws:iam::222222222222:role/ro", ("eu-west-1",))
    ]
    with_management = org_accounts(
        Organization(role_name="ro", all_regions=True), listed, "111111111111"
    )
    assert [a.id for a in with_management] == ["111111111111", "222222222222", "333333333333"]
    assert all(a.all_regions and a.regions == () for a in with_management)


def test_enabled_regions_leave_out_regions_not_opted_in() -> None:
    items = [
        {"RegionName": "us-east-1", "OptInStatus": "opt-in-not-required"},
        {"RegionName": "af-south-1", "OptInStatus": "not-opted-in"},
        {"RegionName": "ap-east-1", "OptInStatus": "opted-in"},
        {"RegionName": "eu-west-1"},
    ]
    assert enabled(items) == ("ap-east-1", "eu-west-1", "us-east-1")


def _config(accounts: str, regions: str = "") -> dict[str, Any]:
    import yaml

    text = f"rules: r\naccounts: {accounts}\nsources: {{lookup: {{}}}}\n{regions}"
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def test_config_takes_an_organization_and_regions_all(tmp_path: Path) -> None:
    config = parse_config(
        _config(
            f'{{organization: {{role_name: {READ_ROLE}, exclude: ["123456789012"], '
            "include_management: false, refresh: 5m}}",
            "regions: all",
        ),
        label="c.yaml",
        base_dir=tmp_path,
    )
    assert config.accounts == ()
    assert config.organization == Organization(
        role_name=READ_ROLE,
        exclude=("123456789012",),
        include_management=False,
        refresh=timedelta(minutes=5),
        regions=(),
        all_regions=True,
    )
    listed = parse_config(
        _config(
            '[{id: "123456789012", regions: all}, {id: "210987654321"}]', "regions: [eu-west-1]"
        ),
        label="c.yaml",
        base_dir=tmp_path,
    )
    assert [(a.all_regions, a.regions) for a in listed.accounts] == [
        (True, ()),
        (False, ("eu-west-1",)),
    ]


@pytest.mark.parametrize(
    ("accounts", "regions", "where", "reason"),
    [
        ("{organization: {}}", "", "accounts.organization.role_name", "is required"),
        ("{organization: {role_name: 'a b'}}", "", "accounts.organization.role_name", "not an IAM"),
        ("{organization: {role_name: r, exclude: [12]}}", "", "exclude[0]", "expected text"),
        ("{orgs: {}}", "", "accounts", "orgs"),
        ('[{id: "123456789012"}]', "regions: some", "regions", "list of regions or all"),
    ],
)
def test_config_problems_are_located(
    tmp_path: Path, accounts: str, regions: str, where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(accounts, regions), label="c.yaml", base_dir=tmp_path)
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "c.yaml" in text and where in text and reason in text


# -- against a moto organization -------------------------------------------------------------


@pytest.fixture
def organization(emulator: Emulator) -> Iterator[tuple[str, list[str]]]:
    """A moto organization with three member accounts, each with the read role except the
    last (its role is broken: AssumeRole into it is denied). Yields (management, members)."""
    orgs = boto3.client(
        "organizations", region_name="us-east-1", endpoint_url=emulator.endpoint_url
    )
    management = orgs.create_organization(FeatureSet="ALL")["Organization"]["MasterAccountId"]
    created = [
        orgs.create_account(AccountName=f"m{n}", Email=f"m{n}@example.com")["CreateAccountStatus"][
            "AccountId"
        ]
        for n in range(3)
    ]
    for account in [management, *created[:2]]:
        _create_read_role(emulator.endpoint_url, account)
    require_roles_in([management, *created])
    try:
        yield management, created
    finally:
        require_roles_in([])


def _create_read_role(endpoint_url: str, account: str) -> None:
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint_url)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
        RoleSessionName="setup",
    )["Credentials"]
    iam = boto3.client(
        "iam",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    iam.create_role(RoleName=READ_ROLE, AssumeRolePolicyDocument=TRUST)


@pytest.mark.slow
async def test_resolve_lists_the_organization_and_its_enabled_regions(
    emulator: Emulator, organization: tuple[str, list[str]], tmp_path: Path
) -> None:
    management, created = organization
    config = parse_config(
        _config(f"{{organization: {{role_name: {READ_ROLE}}}}}", "regions: all")
        | {"endpoint_url": emulator.endpoint_url},
        label="c.yaml",
        base_dir=tmp_path,
    )
    result = await resolve(AwsClients(emulator.endpoint_url), config, {})
    by_id = {a.id: a for a in result.accounts}
    assert result.management == management
    assert set(by_id) == {management, *created}
    working = by_id[created[0]]
    assert working.role_arn == f"arn:aws:iam::{created[0]}:role/{READ_ROLE}"
    assert "us-east-1" in working.regions and "eu-west-1" in working.regions
    # The broken account keeps only the home region (its poller will show the failure).
    assert by_id[created[2]].regions == ("us-east-1",)
    assert [(p.source, p.account, p.kind) for p in result.problems] == [
        ("regions", created[2], "auth")
    ]


def _org_config(folder: Path, endpoint_url: str) -> Path:
    (folder / "rules").mkdir()
    (folder / "rules" / "rules.yaml").write_text(
        """
principals:
  - name: bg-user
    match: {user_name: break-glass-admin}
    account: any
"""
    )
    config = folder / "config.yaml"
    config.write_text(
        f"""rules: rules
state: state.db
listen: 127.0.0.1:0
endpoint_url: {endpoint_url}
regions: [us-east-1]
accounts: {{organization: {{role_name: {READ_ROLE}, refresh: 1s}}}}
sources: {{lookup: {{interval: 1s, overlap: 20m}}}}
inventory: {{enabled: false}}
"""
    )
    return config


@pytest.mark.slow
async def test_daemon_watches_the_organization_and_picks_up_a_new_account(
    emulator: Emulator, organization: tuple[str, list[str]], tmp_path: Path
) -> None:
    """Every member is polled through its read role; a break-glass use in a member is found
    by the org-wide rule;
    an account created while running is polled without a restart; the member whose read role
    is missing fails alone while the others keep succeeding."""
    management, created = organization
    working, _, broken = created
    emulator.lookup.add(
        api_call_record(
            identity=iam_user_identity(working, "break-glass-admin", "AKIABREAKGLASS000001"),
            event_name="ListUsers",
            event_source="iam.amazonaws.com",
            account=working,
            event_time=utc_now() - timedelta(minutes=2),
            event_id="org-use-1",
        )
    )
    daemon = Daemon.load(_org_config(tmp_path, emulator.endpoint_url))
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.listening.wait(), 20)

        async def stored() -> list[tuple[str, str]]:
            return [(e["event_id"], e["principal"]) for e in await daemon.store.recent_events(10)]

        # The org-wide rule (account: any) names the member's own principal.
        use = ("org-use-1", f"bg-user@{working}")
        for _ in range(200):
            if use in await stored():
                break
            await asyncio.sleep(0.1)
        assert use in await stored()
        polled = {s.labels[1] for s in daemon.sources}
        assert polled == {management, *created}

        orgs = boto3.client(
            "organizations", region_name="us-east-1", endpoint_url=emulator.endpoint_url
        )
        added = orgs.create_account(AccountName="late", Email="late@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        _create_read_role(emulator.endpoint_url, added)
        await asyncio.to_thread(
            wait_for, lambda: ("lookup", added, "us-east-1") in daemon._last_success, 30, "new"
        )
        ok = {key[1] for key in daemon._last_success}
        assert ok >= {management, working, added} and broken not in ok
        errors = daemon.registry.get_sample_value(
            "breakglass_source_errors_total",
            {"source": "lookup", "account": broken, "region": "us-east-1", "kind": "auth"},
        )
        assert errors is not None and errors >= 1
    finally:
        daemon.stop.set()
        assert await asyncio.wait_for(task, 30) == 0


async def test_unready_until_the_organization_is_listed(emulator: Emulator, tmp_path: Path) -> None:
    """No organization to list (moto: not in use): no accounts, so not ready; listed: ready."""
    daemon = Daemon.load(_org_config(tmp_path, emulator.endpoint_url))
    await daemon._resolve_accounts()
    assert daemon.readiness().checks["organization"] is False
    assert daemon.sources == []
    boto3.client(
        "organizations", region_name="us-east-1", endpoint_url=emulator.endpoint_url
    ).create_organization(FeatureSet="ALL")
    await daemon._resolve_accounts()
    assert daemon.readiness().checks["organization"] is True
    assert [s.labels[0] for s in daemon.sources] == ["lookup"]
