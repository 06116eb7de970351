"""Every identification case of docs/design.md "Identification", on real-shaped records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    aws_service_identity,
    console_login_record,
    iam_user_identity,
    root_identity,
    switch_role_record,
)
from watcher.events import normalise
from watcher.identify import PrincipalIndex, identify, match
from watcher.model import Principal

ACCOUNT = "123456789012"
OTHER = "210987654321"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/emergency/BreakGlassRole"
T = datetime(2026, 10, 1, 12, 5, tzinfo=UTC)

USER = Principal("bg-user", "user", ACCOUNT, iam_names=("breakglassadmin",))
ROLE_P = Principal("bg-role", "role", ACCOUNT, iam_names=("breakglassrole",), arn=ROLE)
ROOT = Principal("bg-root", "root", ACCOUNT)
PATTERN = Principal("found", "user", ACCOUNT, name_pattern="*emergency*", origin="discovered")
INDEX = PrincipalIndex([USER, ROLE_P, ROOT, PATTERN])


def who(record: dict[str, Any]) -> str | None:
    found = identify(normalise(record, "test"), INDEX)
    return found.name if found else None


def call(identity: dict[str, Any], name: str = "ListBuckets", **kw: Any) -> dict[str, Any]:
    kw.setdefault("event_source", "s3.amazonaws.com")
    kw.setdefault("account", ACCOUNT)
    return api_call_record(identity=identity, event_name=name, event_time=T, **kw)


def user(name: str, account: str = ACCOUNT, key: str = "AKIAEXAMPLE") -> dict[str, Any]:
    return iam_user_identity(account, name, key)


def session(role_arn: str, name: str = "s", mfa: bool = False) -> dict[str, Any]:
    return assumed_role_identity(role_arn, name, "ASIAEXAMPLE", mfa=mfa)


def assume(caller: dict[str, Any], role_arn: str = ROLE, **kw: Any) -> dict[str, Any]:
    return assume_role_record(
        caller=caller, role_arn=role_arn, session_name="s", event_time=T, **kw
    )


@pytest.mark.parametrize("name", ["BreakGlassAdmin", "breakglassadmin", "BREAKGLASSADMIN"])
def test_iam_user_by_account_and_name_in_any_case(name: str) -> None:
    assert who(call(user(name))) == "bg-user"


@pytest.mark.parametrize(
    "identity",
    [
        user("BreakGlassAdmin-Backup"),  # a longer name is another user
        user("Backup-BreakGlassAdmin"),
        user("BreakGlass"),  # a prefix is not the name
        user("BreakGlassAdmin", account=OTHER),  # same name, other account
        session(f"arn:aws:iam::{OTHER}:role/emergency/BreakGlassRole"),
        session(f"arn:aws:iam::{ACCOUNT}:role/BreakGlassRole2"),
        root_identity(OTHER),
        aws_service_identity("cloudformation.amazonaws.com"),
        {"type": "AWSAccount", "principalId": "AIDAX", "accountId": ACCOUNT},
    ],
)
def test_others_are_not_break_glass(identity: dict[str, Any]) -> None:
    assert who(call(identity)) is None


def test_console_logins_of_the_user() -> None:
    for success in (True, False):
        record = console_login_record(
            identity=user("BreakGlassAdmin"), success=success, mfa_used=False, event_time=T
        )
        assert who(record) == "bg-user"
    failed = console_login_record(
        identity=user("BreakGlassAdmin"), success=False, mfa_used=False, event_time=T
    )
    del failed["userIdentity"]["accountId"]  # only recipientAccountId left to tell the account
    assert "arn" not in failed["userIdentity"] and who(failed) == "bg-user"
    other = console_login_record(
        identity=user("BreakGlassAdmin", account=OTHER), success=False, mfa_used=False, event_time=T
    )
    assert who(other) is None


def test_user_without_user_name_is_matched_by_arn() -> None:
    identity = user("BreakGlassAdmin")
    del identity["userName"]
    identity["arn"] = f"arn:aws:iam::{ACCOUNT}:user/admins/BreakGlassAdmin"
    assert who(call(identity)) == "bg-user"


def test_role_session_by_session_issuer_or_assumed_role_arn() -> None:
    identity = session(ROLE)
    assert "emergency" not in identity["arn"]  # the assumed-role ARN has no path
    assert who(call(identity)) == "bg-role"
    del identity["sessionContext"]
    assert who(call(identity)) == "bg-role"
    identity["arn"] = f"arn:aws:sts::{ACCOUNT}:assumed-role/breakglassrole/x"
    assert who(call(identity)) == "bg-role"


def test_console_switch_role() -> None:
    record = switch_role_record(
        user_name="carol", user_account=ACCOUNT, role_arn=ROLE, event_time=T
    )
    assert who(record) == "bg-role"


@pytest.mark.parametrize(
    "event_name", ["AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity"]
)
def test_assuming_the_role(event_name: str) -> None:
    caller = (
        user("alice") if event_name == "AssumeRole" else {"type": "SAMLUser", "accountId": ACCOUNT}
    )
    record = assume(caller, event_name=event_name)
    found = match(normalise(record, "t"), INDEX)
    assert found is not None and found.principal is ROLE_P and found.requested


def test_assuming_the_role_without_a_path_or_from_another_account() -> None:
    assert (
        who(
            assume(
                user("alice", account=OTHER),
                f"arn:aws:iam::{ACCOUNT}:role/BreakGlassRole",
                account=OTHER,
            )
        )
        == "bg-role"
    )
    assert who(assume(user("alice"), f"arn:aws:iam::{OTHER}:role/BreakGlassRole")) is None


def test_failed_assume_is_a_use() -> None:
    assert who(assume(user("mallory"), error_code="AccessDenied")) == "bg-role"


def test_acting_break_glass_identity_wins_over_the_requested_role() -> None:
    other_bg = Principal("bg-role-2", "role", ACCOUNT, iam_names=("otherbg",))
    index = PrincipalIndex([USER, ROLE_P, other_bg])
    record = assume(session(f"arn:aws:iam::{ACCOUNT}:role/OtherBG"))
    found = match(normalise(record, "t"), index)
    assert found is not None and found.principal is other_bg and not found.requested
    by_user = match(normalise(assume(user("BreakGlassAdmin")), "t"), index)
    assert by_user is not None and by_user.principal is USER


def test_root_of_a_declared_account() -> None:
    assert who(call(root_identity(ACCOUNT))) == "bg-root"
    login = console_login_record(
        identity=root_identity(ACCOUNT), success=False, mfa_used=False, event_time=T
    )
    assert who(login) == "bg-root"
    assert who(call(root_identity(ACCOUNT), invoked_by="support.amazonaws.com")) is None
    service_event = call(root_identity(ACCOUNT), event_type="AwsServiceEvent")
    assert who(service_event) is None


def test_services_acting_for_a_principal() -> None:
    # A service calling on a non-root principal's behalf is still that principal's use ...
    assert who(call(session(ROLE), invoked_by="cloudformation.amazonaws.com")) == "bg-role"
    # ... but AWS service events and AWSService identities are not.
    assert who(call(session(ROLE), event_type="AwsServiceEvent")) is None
    service = call(
        aws_service_identity("sts.amazonaws.com"),
        "AssumeRole",
        event_source="sts.amazonaws.com",
        request_parameters={"roleArn": ROLE, "roleSessionName": "x"},
    )
    assert who(service | {"eventType": "AwsServiceEvent"}) is None


def test_reading_or_referencing_the_role_is_not_a_use() -> None:
    auditor = session(f"arn:aws:iam::{ACCOUNT}:role/Auditor")
    get_role = call(
        auditor,
        "GetRole",
        event_source="iam.amazonaws.com",
        request_parameters={"roleName": "BreakGlassRole"},
    )
    assert who(get_role) is None
    pass_role = call(
        auditor,
        "CreateStack",
        event_source="cloudformation.amazonaws.com",
        request_parameters={"roleARN": ROLE, "stackName": "x"},
    )
    assert who(pass_role) is None
    simulate = call(
        auditor,
        "SimulatePrincipalPolicy",
        event_source="iam.amazonaws.com",
        request_parameters={"policySourceArn": ROLE},
    )
    assert who(simulate) is None
    not_sts = call(
        auditor,
        "AssumeRole",
        event_source="example.amazonaws.com",
        request_parameters={"roleArn": ROLE},
    )
    assert who(not_sts) is None


def test_federated_user_of_the_break_glass_user() -> None:
    identity: dict[str, Any] = {
        "type": "FederatedUser",
        "principalId": f"{ACCOUNT}:x",
        "arn": f"arn:aws:sts::{ACCOUNT}:federated-user/x",
        "accountId": ACCOUNT,
        "accessKeyId": "ASIAFED",
        "sessionContext": {
            "sessionIssuer": {
                "type": "IAMUser",
                "arn": f"arn:aws:iam::{ACCOUNT}:user/BreakGlassAdmin",
                "accountId": ACCOUNT,
                "userName": "BreakGlassAdmin",
            },
            "attributes": {"mfaAuthenticated": "false"},
        },
    }
    assert who(call(identity)) == "bg-user"
    identity["sessionContext"]["sessionIssuer"]["arn"] = f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert who(call(identity)) is None


def test_name_patterns_within_account_and_kind() -> None:
    assert who(call(user("Emergency-Ops"))) == "found"
    assert who(call(user("emergency", account=OTHER))) is None
    assert (
        who(call(session(f"arn:aws:iam::{ACCOUNT}:role/emergency-role"))) is None
    )  # kind user only
    assert who(call(user("BreakGlassAdmin"))) == "bg-user"  # exact names first


def test_exact_names_take_precedence_over_patterns() -> None:
    wide = Principal("wide", "role", ACCOUNT, name_pattern="*")
    index = PrincipalIndex([wide, ROLE_P])
    found = identify(normalise(call(session(ROLE)), "t"), index)
    assert found is ROLE_P
    found = identify(normalise(call(session(f"arn:aws:iam::{ACCOUNT}:role/Anything")), "t"), index)
    assert found is wide
