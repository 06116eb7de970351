"""Discovery and fact gathering against the real moto server, through aiobotocore."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from watcher.aws import AwsClients
from watcher.credentials import check_credentials
from watcher.inventory import AccountError, InventoryResult, discover
from watcher.model import Principal, Rules
from watcher.settings import Account, Config, Inventory
from watcher.sources.retry import error_kind

ACCOUNT = "123456789012"
OTHER = "111111111111"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "sts:AssumeRole",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        }
    ],
}
BG_USER = Principal("break-glass-admin", "user", ACCOUNT, iam_names=("break-glass-admin",))
BG_ROLE = Principal(
    "break-glass-admin-role",
    "role",
    ACCOUNT,
    iam_names=("break-glass-admin-role",),
    arn=f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role",
)


@pytest.fixture
def iam(moto_endpoint: str) -> Any:
    return boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")


def config(endpoint: str, *accounts: Account, inventory: Inventory | None = None) -> Config:
    return Config(
        rules_path=Path("/nonexistent/rules"),
        state_path=Path("/nonexistent/state.db"),
        accounts=accounts or (Account(ACCOUNT, ("us-east-1",)),),
        endpoint_url=endpoint,
        inventory=inventory or Inventory(),
    )


async def run(
    endpoint: str, *principals: Principal, cfg: Config | None = None, **kw: Any
) -> InventoryResult:
    cfg = cfg or config(endpoint)
    return await discover(AwsClients(cfg.endpoint_url), cfg, Rules(principals, ()), **kw)


def make_role(iam: Any, name: str, *, trust: dict[str, Any] = TRUST, **kw: Any) -> None:
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), **kw)


def make_user(
    iam: Any, name: str, *, key: bool = True, profile: bool = True, mfa: bool = True
) -> None:
    """A user as a healthy break-glass user has it, minus what the flags leave out."""
    iam.create_user(UserName=name)
    if profile:
        iam.create_login_profile(UserName=name, Password="Correct-horse-battery-1")
    if mfa:
        device = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"{name}-mfa")
        iam.enable_mfa_device(
            UserName=name,
            SerialNumber=device["VirtualMFADevice"]["SerialNumber"],
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
    if key:
        add_key(iam, name)


def add_key(iam: Any, user: str) -> str:
    key_id: str = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    return key_id


def checks(
    result: InventoryResult, principal: Principal, now: datetime | None = None
) -> dict[str, tuple[bool, str]]:
    found = check_credentials(
        principal,
        result.facts[principal.name],
        max_key_age=timedelta(days=90),
        now=now or datetime.now(UTC),
    )
    return {r.check: (r.ok, r.reason) for r in found}


async def test_declared_user_and_role_facts(moto_endpoint: str, iam: Any) -> None:
    make_user(iam, "Break-Glass-Admin", key=False)
    key_id = add_key(iam, "Break-Glass-Admin")
    make_role(iam, "break-glass-admin-role")
    result = await run(moto_endpoint, BG_USER, BG_ROLE)

    assert result.principals == (BG_USER, BG_ROLE)
    assert result.errors == ()
    facts = result.facts["break-glass-admin"]
    (user,) = facts.users
    assert user.name == "Break-Glass-Admin"
    assert user.login_profile
    assert user.mfa_devices == (f"arn:aws:iam::{ACCOUNT}:mfa/Break-Glass-Admin-mfa",)
    assert [(k.key_id, k.active, k.last_used) for k in user.access_keys] == [(key_id, True, None)]
    assert all(ok for ok, _ in checks(result, BG_USER).values())
    assert checks(result, BG_ROLE)["trust_policy"] == (
        True,
        f"assumable by arn:aws:iam::{ACCOUNT}:root; requires MFA",
    )


async def test_unhealthy_user_fails_each_check(moto_endpoint: str, iam: Any) -> None:
    make_user(iam, "break-glass-admin", key=False, profile=False, mfa=False)
    key_id = add_key(iam, "break-glass-admin")
    iam.update_access_key(UserName="break-glass-admin", AccessKeyId=key_id, Status="Inactive")
    result = await run(moto_endpoint, BG_USER)
    label = f"{key_id[:4]}…{key_id[-4:]}"
    assert checks(result, BG_USER) == {
        "exists": (True, "user break-glass-admin exists"),
        "access_key_active": (False, f"access key {label} inactive"),
        "access_key_age": (True, "no active access key"),
        "login_profile": (False, "no console login profile"),
        "mfa_device": (False, "no MFA device"),
    }


async def test_old_key_judged_from_a_later_now_and_last_use_is_read(
    moto_endpoint: str, iam: Any
) -> None:
    make_user(iam, "break-glass-admin", key=False)
    created = iam.create_access_key(UserName="break-glass-admin")["AccessKey"]
    boto3.client(
        "iam",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=created["AccessKeyId"],
        aws_secret_access_key=created["SecretAccessKey"],
    ).list_users()
    result = await run(moto_endpoint, BG_USER)
    (key,) = result.facts["break-glass-admin"].users[0].access_keys
    assert key.last_used is not None
    later = key.last_used + timedelta(days=132)
    assert checks(result, BG_USER, now=later)["access_key_age"] == (
        False,
        f"{key.key_id[:4]}…{key.key_id[-4:]} 132 days old (limit 90 days), last used 132 days ago",
    )


async def test_declared_role_that_does_not_exist_fails_exists(moto_endpoint: str) -> None:
    result = await run(moto_endpoint, BG_ROLE)
    assert checks(result, BG_ROLE) == {
        "exists": (False, "role break-glass-admin-role does not exist")
    }


async def test_trust_policy_open_to_anyone(moto_endpoint: str, iam: Any) -> None:
    open_trust = {
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]
    }
    make_role(iam, "break-glass-admin-role", trust=open_trust)
    result = await run(moto_endpoint, BG_ROLE)
    assert checks(result, BG_ROLE)["trust_policy"] == (False, "trust policy open to *")


async def test_discovery_by_name_pattern(moto_endpoint: str, iam: Any) -> None:
    make_user(iam, "Emergency+Ops")
    make_role(iam, "team-BREAK-GLASS")
    make_role(iam, "app-deployer")
    make_user(iam, "alice")
    make_role(
        iam,
        "AWSServiceRoleForEmergencyThing",
        Path="/aws-service-role/emergency.amazonaws.com/",
    )
    result = await run(moto_endpoint)
    assert [(p.name, p.kind, p.origin, p.arn) for p in result.principals] == [
        ("team-break-glass", "role", "discovered", f"arn:aws:iam::{ACCOUNT}:role/team-BREAK-GLASS"),
        ("emergency-ops", "user", "discovered", f"arn:aws:iam::{ACCOUNT}:user/Emergency+Ops"),
    ]
    assert result.principals[1].iam_names == ("emergency+ops",)
    assert result.facts["emergency-ops"].users[0].login_profile
    assert result.facts["team-break-glass"].roles[0].trust_policy == TRUST


async def test_declared_entities_are_not_discovered_again(moto_endpoint: str, iam: Any) -> None:
    make_user(iam, "break-glass-admin")
    make_role(iam, "break-glass-a")
    make_role(iam, "break-glass-b")
    by_pattern = Principal("bg-roles", "role", ACCOUNT, name_pattern="break-glass-*")
    result = await run(moto_endpoint, BG_USER, by_pattern)
    assert result.principals == (BG_USER, by_pattern)
    assert sorted(r.name for r in result.facts["bg-roles"].roles) == [
        "break-glass-a",
        "break-glass-b",
    ]


async def test_declared_pattern_matching_nothing(moto_endpoint: str) -> None:
    by_pattern = Principal("bg-roles", "role", ACCOUNT, name_pattern="break-glass-*")
    result = await run(moto_endpoint, by_pattern)
    assert checks(result, by_pattern) == {"exists": (False, "no role matches 'break-glass-*'")}


async def test_discovery_by_tag(moto_endpoint: str, iam: Any) -> None:
    make_role(iam, "ops-admin", Tags=[{"Key": "BreakGlass", "Value": "TRUE"}])
    make_role(iam, "ops-other", Tags=[{"Key": "breakglass", "Value": "false"}])
    make_user(iam, "carol")
    iam.tag_user(
        UserName="carol",
        Tags=[{"Key": "breakglass", "Value": "true"}, {"Key": "team", "Value": "sec"}],
    )
    result = await run(moto_endpoint)
    assert [(p.name, p.kind) for p in result.principals] == [
        ("ops-admin", "role"),
        ("carol", "user"),
    ]

    no_tags = config(moto_endpoint, inventory=Inventory(tags={}))
    assert (await run(moto_endpoint, cfg=no_tags)).principals == ()


@pytest.mark.slow  # 120 IAM roles in moto
async def test_pagination_reaches_roles_beyond_the_first_page(moto_endpoint: str, iam: Any) -> None:
    for n in range(120):
        make_role(iam, f"app-{n:03}")
    first = iam.list_roles()
    assert first["IsTruncated"] and len(first["Roles"]) == 100
    second_page = iam.list_roles(Marker=first["Marker"])["Roles"]
    late = second_page[-1]["RoleName"]
    iam.tag_role(RoleName=late, Tags=[{"Key": "breakglass", "Value": "true"}])
    result = await run(moto_endpoint)
    assert [p.iam_names for p in result.principals] == [(late,)]


async def test_discovered_principals_are_bounded_per_account(moto_endpoint: str, iam: Any) -> None:
    for name in ("emergency-c", "emergency-a", "emergency-b"):
        make_role(iam, name)
    result = await run(moto_endpoint, max_discovered=2)
    # Oldest first: a decoy created to crowd the bound is younger than what it would hide.
    assert [p.name for p in result.principals] == ["emergency-a", "emergency-c"]
    assert result.truncated == {ACCOUNT: 1}


async def test_discovered_names_never_clash(moto_endpoint: str, iam: Any) -> None:
    make_role(iam, "emergency")
    make_user(iam, "emergency")
    make_user(iam, "break-glass-admin")
    declared = Principal("emergency", "user", ACCOUNT, iam_names=("someone-else",))
    result = await run(moto_endpoint, declared)
    assert [(p.name, p.kind, p.origin) for p in result.principals] == [
        ("emergency", "user", "declared"),
        ("emergency-123456789012", "role", "discovered"),
        ("break-glass-admin", "user", "discovered"),
        ("emergency-user-123456789012", "user", "discovered"),
    ]


async def test_account_read_through_its_role(moto_endpoint: str, iam: Any) -> None:
    make_user(iam, "emergency-home")
    creds = boto3.client("sts", endpoint_url=moto_endpoint, region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{OTHER}:role/setup", RoleSessionName="setup"
    )["Credentials"]
    other_iam = boto3.client(
        "iam",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    make_user(other_iam, "break-glass-remote")
    account = Account(OTHER, ("eu-west-1",), role_arn=f"arn:aws:iam::{OTHER}:role/watcher-reader")
    result = await run(moto_endpoint, cfg=config(moto_endpoint, account))
    assert [(p.name, p.account, p.arn) for p in result.principals] == [
        ("break-glass-remote", OTHER, f"arn:aws:iam::{OTHER}:user/break-glass-remote")
    ]


async def test_root_principal_gets_account_mfa(moto_endpoint: str) -> None:
    root = Principal("root", "root", ACCOUNT)
    result = await run(moto_endpoint, root)
    assert checks(result, root) == {"mfa_device": (False, "no MFA device on the root user")}


async def test_unreachable_account_is_a_failed_source_not_a_failed_check(closed_port: int) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}"
    stray = Principal("stray", "user", "999999999999", iam_names=("x",))
    result = await run(endpoint, BG_USER, stray)
    assert result.principals == (BG_USER, stray)
    assert result.facts == {}
    assert [(e.account, e.kind) for e in result.errors] == [
        ("999999999999", "other"),
        (ACCOUNT, "network"),
    ]
    assert "not in the config's accounts" in result.errors[0].message
    assert isinstance(result.errors[1], AccountError) and result.errors[1].message


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "ListUsers")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("Throttling"), "throttled"),
        (client_error("AccessDenied"), "auth"),
        (client_error("ExpiredToken"), "auth"),
        (client_error("ServiceFailure"), "other"),
        (EndpointConnectionError(endpoint_url="http://x"), "network"),
        (NoCredentialsError(), "auth"),
        (ValueError("a bug"), None),
    ],
)
def test_error_kind(exc: BaseException, kind: str | None) -> None:
    assert error_kind(exc) == kind
