"""The EventBridge pattern, proven against moto's EventBridge: what reaches the queue."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from watcher.emulator.infra import RULE_STATE, create_pipeline, deliver
from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    console_login_record,
    iam_user_identity,
    root_identity,
)
from watcher.errors import ConfigError
from watcher.events import normalise
from watcher.identify import PrincipalIndex, identify
from watcher.model import Principal, Rules
from watcher.render import (
    MAX_PATTERN_CHARS,
    eventbridge_pattern,
    eventbridge_pattern_json,
    eventbridge_patterns,
)

ACCOUNT = "123456789012"
OTHER = "210987654321"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/emergency/Break-Glass-Admin"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

RULES = Rules(
    principals=(
        Principal("bg-user", "user", ACCOUNT, iam_names=("break-glass-user",)),
        Principal("bg-admin", "role", ACCOUNT, iam_names=("break-glass-admin",), arn=ROLE),
        Principal("root", "root", ACCOUNT),
        Principal(
            "emergency-users", "user", ACCOUNT, name_pattern="*emergency*", origin="declared"
        ),
    ),
    exercises=(),
)


def _call(identity: dict[str, Any], event_id: str, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_name": "ListBuckets",
        "event_source": "s3.amazonaws.com",
        "account": identity.get("accountId", ACCOUNT),
        "event_time": T0,
        "event_id": event_id,
    }
    fields.update(extra)
    return api_call_record(identity=identity, **fields)


def _records() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(break-glass records, records that must not reach the queue, records the compacted
    pattern forwards and the daemon drops)."""
    auditor = iam_user_identity(ACCOUNT, "auditor", "AKIAAUDITOR000000000")
    wanted = [
        _call(iam_user_identity(ACCOUNT, "Break-Glass-User"), "user-call"),
        console_login_record(
            identity=iam_user_identity(ACCOUNT, "break-glass-user"),
            success=False,
            mfa_used=False,
            event_time=T0,
            event_id="user-failed-login",
        ),
        _call(assumed_role_identity(ROLE, "drill", "ASIASESSION000000001"), "session-call"),
        assume_role_record(
            caller=auditor,
            role_arn=ROLE,
            session_name="drill",
            event_time=T0,
            event_id="assume",
        ),
        assume_role_record(
            caller=iam_user_identity(OTHER, "someone"),
            role_arn=ROLE.replace("Break-Glass-Admin", "break-glass-admin"),
            session_name="x",
            event_time=T0,
            account=OTHER,
            event_id="assume-callers-copy",
        ),
        console_login_record(
            identity=root_identity(ACCOUNT),
            success=True,
            mfa_used=True,
            event_time=T0,
            event_id="root-login",
        ),
        _call(iam_user_identity(ACCOUNT, "ops-emergency-1"), "pattern-user"),
    ]
    decoys = [
        _call(iam_user_identity(ACCOUNT, "break-glass-user-old"), "longer-name"),
        _call(
            auditor,
            "auditor-reads-role",
            event_name="GetRole",
            event_source="iam.amazonaws.com",
            request_parameters={"roleName": "Break-Glass-Admin"},
        ),
        _call(root_identity(OTHER), "other-root"),
        _call(
            assumed_role_identity(
                f"arn:aws:iam::{ACCOUNT}:role/admin", "x", "ASIAOTHER00000000001"
            ),
            "other-role-session",
        ),
        assume_role_record(
            caller=auditor,
            role_arn=f"arn:aws:iam::{ACCOUNT}:role/not-break-glass-admin",
            session_name="x",
            event_time=T0,
            event_id="assume-other-role",
        ),
    ]
    # Names are matched across accounts; the daemon compares the account.
    widened = [_call(iam_user_identity(OTHER, "break-glass-user"), "other-account-user")]
    return wanted, decoys, widened


def _drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(json.loads(m["Body"]) for m in messages)


def test_only_break_glass_events_reach_the_queue(moto_endpoint: str) -> None:
    pipeline = create_pipeline(moto_endpoint, RULES)
    events = boto3.client("events", region_name="us-east-1", endpoint_url=moto_endpoint)
    assert events.describe_rule(Name=pipeline.rule_name)["State"] == RULE_STATE

    wanted, decoys, widened = _records()
    for record in wanted + decoys + widened:
        deliver(moto_endpoint, record)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)
    bodies = _drain(sqs, pipeline.queue_url)

    assert sorted(b["detail"]["eventID"] for b in bodies) == sorted(
        r["eventID"] for r in wanted + widened
    )
    index = PrincipalIndex(RULES.principals)
    assert [identify(normalise(r, "x"), index) for r in widened] == [None]
    login = next(b for b in bodies if b["detail"]["eventID"] == "root-login")
    assert login["source"] == "aws.signin"
    assert login["detail-type"] == "AWS Console Sign In via CloudTrail"


def test_a_forged_custom_source_does_not_match(moto_endpoint: str) -> None:
    pipeline = create_pipeline(moto_endpoint, RULES)
    record = _call(iam_user_identity(ACCOUNT, "break-glass-user"), "forged")
    events = boto3.client("events", region_name="us-east-1", endpoint_url=moto_endpoint)
    events.put_events(
        Entries=[
            {
                "Source": "my.app",
                "DetailType": "AWS API Call via CloudTrail",
                "Detail": json.dumps(record),
            }
        ]
    )
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)
    assert _drain(sqs, pipeline.queue_url) == []


def test_pattern_shape() -> None:
    pattern = eventbridge_pattern(RULES)
    assert pattern["source"] == [{"prefix": "aws."}]
    assert "detail-type" not in pattern
    alternatives = pattern["detail"]["$or"]
    names = [{"equals-ignore-case": "break-glass-user"}, {"wildcard": "*emergency*"}]
    assert {"userIdentity": {"type": ["IAMUser"], "userName": names}} in alternatives
    assert {
        "userIdentity": {
            "type": ["FederatedUser"],
            "sessionContext": {"sessionIssuer": {"userName": names}},
        }
    } in alternatives
    assert {
        "eventName": [{"prefix": "AssumeRole"}],
        "requestParameters": {
            "roleArn": [{"suffix": {"equals-ignore-case": "/break-glass-admin"}}]
        },
    } in alternatives
    # A denied assume call names the role only in errorMessage: every failed one is forwarded.
    assert {"eventName": [{"prefix": "AssumeRole"}], "errorCode": [{"exists": True}]} in (
        alternatives
    )
    # Console sign-in records of role sessions (SwitchRole) have no session context.
    assert {
        "userIdentity": {
            "type": ["AssumedRole"],
            "sessionContext": {"sessionIssuer": {"type": [{"exists": False}]}},
        }
    } in alternatives
    assert {"userIdentity": {"type": ["Root"], "accountId": [ACCOUNT]}} in alternatives
    assert {"eventName": ["AssumeRoot"]} in alternatives
    assert json.loads(eventbridge_pattern_json(RULES)) == pattern


def test_glob_classes_widen_to_wildcards() -> None:
    rules = Rules(
        principals=(Principal("p", "role", ACCOUNT, name_pattern="bg-?[0-9]*"),), exercises=()
    )
    *_, session, assume = eventbridge_pattern(rules)["detail"]["$or"]
    issuer = session["userIdentity"]["sessionContext"]["sessionIssuer"]
    assert issuer["userName"] == [{"wildcard": "bg-*"}]
    assert assume["requestParameters"]["roleArn"] == [{"wildcard": "*/bg-*"}]


def test_nothing_to_match_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no principals"):
        eventbridge_pattern(Rules(principals=(), exercises=()))


def _compact(pattern: dict[str, Any]) -> int:
    return len(json.dumps(pattern, separators=(",", ":")))


def _roles(count: int, *, accounts: int = 1, distinct: bool = True) -> Rules:
    """``count`` break-glass roles, one per account, named like real ones (22 characters)."""
    return Rules(
        principals=tuple(
            Principal(
                f"r{i}",
                "role",
                f"{100000000000 + i % accounts:012d}",
                iam_names=(f"break-glass-admin-{i:04}" if distinct else "break-glass-admin",),
            )
            for i in range(count)
        ),
        exercises=(),
    )


def test_the_same_role_name_in_every_account_is_one_small_pattern() -> None:
    """Names are compacted across accounts: 1000 accounts' break-glass role is one name."""
    [pattern] = eventbridge_patterns(_roles(1000, accounts=1000, distinct=False))
    assert _compact(pattern) < 600


def test_distinct_names_spread_over_as_many_patterns_as_needed() -> None:
    """The measured limit: 34 distinct 22-character role names (with the fixed alternatives:
    denied assumes, role console sign-ins) fit one 4096-character pattern (41 such user names,
    264 root accounts); 200 such roles need 6 patterns."""
    assert len(eventbridge_patterns(_roles(34))) == 1
    assert len(eventbridge_patterns(_roles(35))) == 2
    many = _roles(200)
    patterns = eventbridge_patterns(many)
    assert len(patterns) == 6
    assert all(_compact(p) <= MAX_PATTERN_CHARS for p in patterns)
    matched = set()
    for p in patterns:
        for alt in p["detail"]["$or"]:
            for m in alt.get("requestParameters", {}).get("roleArn", []):
                matched.add(m["suffix"]["equals-ignore-case"])
    assert matched == {f"/break-glass-admin-{i:04}" for i in range(200)}
    # The fixed alternatives are in the first pattern only.
    assert [
        {"eventName": [{"prefix": "AssumeRole"}], "errorCode": [{"exists": True}]}
        in p["detail"]["$or"]
        for p in patterns
    ] == [True] + [False] * 5


def test_one_pattern_is_refused_when_several_are_needed() -> None:
    with pytest.raises(ConfigError, match="render eventbridge-patterns"):
        eventbridge_pattern(_roles(200))


def test_a_principal_too_large_for_any_pattern_is_an_error() -> None:
    huge = Rules(
        principals=(Principal("p", "role", ACCOUNT, iam_names=("x" * 4000,)),), exercises=()
    )
    with pytest.raises(ConfigError, match=r"principals\.p"):
        eventbridge_patterns(huge)
