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
from watcher.model import Principal, Rules
from watcher.render import MAX_PATTERN_CHARS, eventbridge_pattern, eventbridge_pattern_json

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


def _records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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
        _call(iam_user_identity(OTHER, "break-glass-user"), "other-account-user"),
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
    return wanted, decoys


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

    wanted, decoys = _records()
    for record in wanted + decoys:
        deliver(moto_endpoint, record)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)
    bodies = _drain(sqs, pipeline.queue_url)

    assert sorted(b["detail"]["eventID"] for b in bodies) == sorted(r["eventID"] for r in wanted)
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
    users = alternatives[0]["userIdentity"]
    assert users["accountId"] == [ACCOUNT]
    assert users["userName"] == [
        {"equals-ignore-case": "break-glass-user"},
        {"wildcard": "*emergency*"},
    ]
    assert {
        "eventName": [{"prefix": "AssumeRole"}],
        "requestParameters": {
            "roleArn": [{"suffix": {"equals-ignore-case": "/break-glass-admin"}}]
        },
    } in alternatives
    assert {"userIdentity": {"type": ["Root"], "accountId": [ACCOUNT]}} in alternatives
    assert json.loads(eventbridge_pattern_json(RULES)) == pattern


def test_glob_classes_widen_to_wildcards() -> None:
    rules = Rules(
        principals=(Principal("p", "role", ACCOUNT, name_pattern="bg-?[0-9]*"),), exercises=()
    )
    [session, assume] = eventbridge_pattern(rules)["detail"]["$or"]
    issuer = session["userIdentity"]["sessionContext"]["sessionIssuer"]
    assert issuer["userName"] == [{"wildcard": "bg-*"}]
    assert assume["requestParameters"]["roleArn"] == [{"wildcard": "*/bg-*"}]


def test_nothing_to_match_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no principals"):
        eventbridge_pattern(Rules(principals=(), exercises=()))


def test_a_pattern_over_the_size_limit_is_an_error() -> None:
    many = tuple(
        Principal(f"u{i}", "user", ACCOUNT, iam_names=(f"break-glass-user-{i:04}",))
        for i in range(200)
    )
    with pytest.raises(ConfigError, match=str(MAX_PATTERN_CHARS)):
        eventbridge_pattern(Rules(principals=many, exercises=()))
