"""The record builders produce what AWS documents (the parts the watcher relies on)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    aws_service_identity,
    console_login_record,
    eventbridge_envelope,
    iam_user_identity,
    lookup_item,
    new_access_key_id,
    new_event_id,
    root_identity,
    switch_role_record,
)

T = datetime(2026, 10, 1, 12, 5, 7, tzinfo=UTC)
ROLE = "arn:aws:iam::123456789012:role/ops/break-glass-admin-role"


def test_ids_have_aws_shapes() -> None:
    assert new_access_key_id(temporary=True).startswith("ASIA")
    assert len(new_access_key_id(temporary=False)) == 20
    assert new_access_key_id(temporary=False).startswith("AKIA")
    assert len(new_event_id()) == 36 and new_event_id() != new_event_id()


def test_assumed_role_identity_drops_the_path_from_the_session_arn() -> None:
    identity = assumed_role_identity(ROLE, "s1", "ASIAEXAMPLE", mfa=True, source_identity="ann")
    assert identity["arn"] == "arn:aws:sts::123456789012:assumed-role/break-glass-admin-role/s1"
    issuer = identity["sessionContext"]["sessionIssuer"]
    assert issuer["arn"] == ROLE and issuer["userName"] == "break-glass-admin-role"
    assert identity["principalId"] == issuer["principalId"] + ":s1"
    assert issuer["principalId"].startswith("AROA")
    assert identity["sessionContext"]["attributes"]["mfaAuthenticated"] == "true"
    assert identity["sessionContext"]["sourceIdentity"] == "ann"


def test_assume_role_record_success_and_failure() -> None:
    caller = iam_user_identity("111122223333", "alice", "AKIAEXAMPLE")
    ok = assume_role_record(
        caller=caller,
        role_arn=ROLE,
        session_name="x",
        event_time=T,
        issued_access_key_id="ASIAISSUED",
        mfa_serial="arn:aws:iam::111122223333:mfa/alice",
        event_id="e1",
        shared_event_id="s1",
    )
    assert ok["eventTime"] == "2026-10-01T12:05:07Z"
    assert ok["recipientAccountId"] == "123456789012"
    assert ok["responseElements"]["credentials"]["accessKeyId"] == "ASIAISSUED"
    assert ok["requestParameters"]["serialNumber"].endswith(":mfa/alice")
    assert ok["resources"] == [{"accountId": "123456789012", "type": "AWS::IAM::Role", "ARN": ROLE}]
    assert ok["readOnly"] is True and ok["sharedEventID"] == "s1"
    denied = assume_role_record(
        caller=caller, role_arn=ROLE, session_name="x", event_time=T, error_code="AccessDenied"
    )
    assert denied["responseElements"] is None and denied["errorCode"] == "AccessDenied"
    with pytest.raises(ValueError, match="not a role ARN"):
        assume_role_record(
            caller=caller, role_arn="arn:aws:iam::1:user/x", session_name="x", event_time=T
        )


def test_failed_iam_user_console_login_has_no_arn() -> None:
    identity = iam_user_identity("123456789012", "break-glass-admin", "AKIAEXAMPLE")
    failed = console_login_record(identity=identity, success=False, mfa_used=False, event_time=T)
    assert "arn" not in failed["userIdentity"]
    assert failed["userIdentity"]["accessKeyId"] == ""
    assert failed["errorMessage"] == "Failed authentication" and "errorCode" not in failed
    assert failed["responseElements"] == {"ConsoleLogin": "Failure"}
    assert failed["eventType"] == "AwsConsoleSignIn"
    ok = console_login_record(
        identity=root_identity("123456789012"), success=True, mfa_used=True, event_time=T
    )
    assert ok["userIdentity"]["arn"] == "arn:aws:iam::123456789012:root"
    assert ok["additionalEventData"]["MFAUsed"] == "Yes"


def test_switch_role_record() -> None:
    record = switch_role_record(
        user_name="bob", user_account="111122223333", role_arn=ROLE, event_time=T
    )
    assert record["requestParameters"] is None
    assert record["userIdentity"]["arn"].endswith("assumed-role/break-glass-admin-role/bob")
    assert record["recipientAccountId"] == "123456789012"
    assert record["additionalEventData"]["SwitchFrom"] == "arn:aws:iam::111122223333:user/bob"


def test_service_calls_put_invoked_by_in_the_identity() -> None:
    record = api_call_record(
        identity=root_identity("123456789012"),
        event_name="PutObject",
        event_source="s3.amazonaws.com",
        account="123456789012",
        event_time=T,
        invoked_by="cloudtrail.amazonaws.com",
    )
    assert record["userIdentity"]["invokedBy"] == "cloudtrail.amazonaws.com"
    assert aws_service_identity("config.amazonaws.com")["type"] == "AWSService"


def test_envelope_and_lookup_item() -> None:
    login = console_login_record(
        identity=iam_user_identity("123456789012", "u"),
        success=True,
        mfa_used=False,
        event_time=T,
        event_id="e9",
    )
    envelope = eventbridge_envelope(login)
    assert envelope["detail-type"] == "AWS Console Sign In via CloudTrail"
    assert envelope["source"] == "aws.signin" and "account" not in envelope
    assert envelope["detail"] is login and envelope == eventbridge_envelope(login)
    assert eventbridge_envelope(login, account="123456789012")["account"] == "123456789012"
    caller = iam_user_identity("123456789012", "alice", "AKIAEXAMPLE")
    assume = assume_role_record(
        caller=caller, role_arn=ROLE, session_name="s", event_time=T, issued_access_key_id="ASIAK"
    )
    assert eventbridge_envelope(assume)["detail-type"] == "AWS API Call via CloudTrail"
    item = lookup_item(assume)
    assert item["EventTime"] == T.replace(microsecond=0)
    assert item["AccessKeyId"] == "AKIAEXAMPLE" and item["Username"] == "alice"
    assert {"ResourceType": "AWS::IAM::AccessKey", "ResourceName": "ASIAK"} in item["Resources"]
    assert {"ResourceType": "AWS::IAM::Role", "ResourceName": ROLE} in item["Resources"]
    assert json.loads(item["CloudTrailEvent"]) == assume
