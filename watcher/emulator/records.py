"""Builders of real-shaped CloudTrail records, EventBridge envelopes and LookupEvents items.

Modelled on the examples of the AWS CloudTrail User Guide ("CloudTrail userIdentity element",
"AWS Management Console sign-in events", the IAM guide's STS examples). Details that matter to
the watcher and are easy to get wrong:

- a failed ``ConsoleLogin`` of an IAM user carries no ``arn`` (only ``accountId``/``userName``),
  has ``errorMessage`` "Failed authentication" and no ``errorCode``;
- ``ConsoleLogin``/``SwitchRole`` have ``eventType`` "AwsConsoleSignIn"; the assumed-role ARN never
  carries the role's path, ``sessionContext.sessionIssuer.arn`` does;
- ``invokedBy`` lives inside ``userIdentity``;
- ``AssumeRole*`` are read-only management events; a cross-account call is recorded in both
  accounts with different ``eventID`` and the same ``sharedEventID``.

Ids passed in are used as given; ids not passed are random, except the derived ones
(``principalId``, ``requestID``, the envelope ``id``), which are hashes of the inputs so equal
inputs build equal records.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from watcher.clock import iso_z

_USER_AGENT = "aws-cli/2.17.0 Python/3.12.4 Linux/6.8.0 exe/x86_64.ubuntu.24"
_CONSOLE_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_ASSUME_EVENTS = ("AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity")


def new_event_id() -> str:
    """A fresh CloudTrail event id (a UUID)."""
    return str(uuid.uuid4())


def new_access_key_id(temporary: bool) -> str:
    """A fresh access key id: ``ASIA…`` (temporary, STS) or ``AKIA…`` (long-term)."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return ("ASIA" if temporary else "AKIA") + body


def _unique_id(prefix: str, seed: str) -> str:
    """An IAM unique id (``AIDA…``, ``AROA…``) derived from ``seed``: stable for one entity."""
    digest = base64.b32encode(hashlib.sha256(seed.encode()).digest()).decode()
    return prefix + digest[:17]


def _derived_uuid(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


def _role_parts(role_arn: str) -> tuple[str, str]:
    """``(account, role name)`` of ``arn:aws:iam::ACCOUNT:role[/path]/NAME``."""
    parts = role_arn.split(":", 5)
    if len(parts) != 6 or not parts[5].startswith("role/"):
        raise ValueError(f"not a role ARN: {role_arn!r}")
    return parts[4], parts[5].rsplit("/", 1)[1]


def iam_user_identity(
    account: str, user_name: str, access_key_id: str | None = None, mfa: bool = False
) -> dict[str, Any]:
    """An IAM user's ``userIdentity``; with ``mfa`` a console/MFA session's context is added."""
    identity: dict[str, Any] = {
        "type": "IAMUser",
        "principalId": _unique_id("AIDA", f"{account}:user/{user_name.lower()}"),
        "arn": f"arn:aws:iam::{account}:user/{user_name}",
        "accountId": account,
        "accessKeyId": access_key_id or "",
        "userName": user_name,
    }
    if mfa:
        identity["sessionContext"] = {
            "sessionIssuer": {},
            "webIdFederationData": {},
            "attributes": {"creationDate": "2026-01-01T00:00:00Z", "mfaAuthenticated": "true"},
        }
    return identity


def assumed_role_identity(
    role_arn: str,
    session_name: str,
    access_key_id: str,
    *,
    mfa: bool = False,
    source_identity: str | None = None,
    creation_date: datetime | None = None,
) -> dict[str, Any]:
    """The ``userIdentity`` of a call made with a role session's temporary credentials."""
    account, role_name = _role_parts(role_arn)
    role_id = _unique_id("AROA", role_arn.lower())
    created = iso_z(creation_date, timespec="seconds") if creation_date else "2026-01-01T00:00:00Z"
    context: dict[str, Any] = {
        "sessionIssuer": {
            "type": "Role",
            "principalId": role_id,
            "arn": role_arn,
            "accountId": account,
            "userName": role_name,
        },
        "webIdFederationData": {},
        "attributes": {"creationDate": created, "mfaAuthenticated": "true" if mfa else "false"},
    }
    if source_identity is not None:
        context["sourceIdentity"] = source_identity
    return {
        "type": "AssumedRole",
        "principalId": f"{role_id}:{session_name}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}",
        "accountId": account,
        "accessKeyId": access_key_id,
        "sessionContext": context,
    }


def root_identity(account: str, access_key_id: str | None = None) -> dict[str, Any]:
    """The account root user's ``userIdentity`` (``principalId`` is the account id)."""
    return {
        "type": "Root",
        "principalId": account,
        "arn": f"arn:aws:iam::{account}:root",
        "accountId": account,
        "accessKeyId": access_key_id or "",
    }


def aws_service_identity(service: str) -> dict[str, Any]:
    """An AWS service acting itself, e.g. ``aws_service_identity("config.amazonaws.com")``."""
    return {"type": "AWSService", "invokedBy": service}


def _record(
    *,
    identity: dict[str, Any],
    event_time: datetime,
    event_source: str,
    event_name: str,
    region: str,
    source_ip: str,
    user_agent: str,
    request_parameters: dict[str, Any] | None,
    response_elements: dict[str, Any] | None,
    event_id: str | None,
    read_only: bool,
    event_type: str,
    account: str,
    version: str = "1.09",
) -> dict[str, Any]:
    eid = event_id or new_event_id()
    return {
        "eventVersion": version,
        "userIdentity": identity,
        "eventTime": iso_z(event_time, timespec="seconds"),
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
        "requestParameters": request_parameters,
        "responseElements": response_elements,
        "requestID": _derived_uuid("request:" + eid),
        "eventID": eid,
        "readOnly": read_only,
        "eventType": event_type,
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }


def api_call_record(
    *,
    identity: dict[str, Any],
    event_name: str,
    event_source: str,
    account: str,
    event_time: datetime,
    region: str = "us-east-1",
    source_ip: str = "203.0.113.10",
    event_id: str | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    request_parameters: dict[str, Any] | None = None,
    response_elements: dict[str, Any] | None = None,
    read_only: bool = True,
    invoked_by: str | None = None,
    event_type: str = "AwsApiCall",
    shared_event_id: str | None = None,
) -> dict[str, Any]:
    """Any API call (or ``AwsServiceEvent``); ``invoked_by`` goes to ``userIdentity.invokedBy``."""
    if invoked_by is not None:
        identity = {**identity, "invokedBy": invoked_by}
        source_ip = invoked_by
        user_agent = invoked_by
    else:
        user_agent = _USER_AGENT
    record = _record(
        identity=identity,
        event_time=event_time,
        event_source=event_source,
        event_name=event_name,
        region=region,
        source_ip=source_ip,
        user_agent=user_agent,
        request_parameters=request_parameters,
        response_elements=response_elements,
        event_id=event_id,
        read_only=read_only,
        event_type=event_type,
        account=account,
    )
    if error_code is not None:
        record["errorCode"] = error_code
        record["errorMessage"] = error_message or f"{error_code} occurred"
    if shared_event_id is not None:
        record["sharedEventID"] = shared_event_id
    return record


def assume_role_record(
    *,
    caller: dict[str, Any],
    role_arn: str,
    session_name: str,
    event_time: datetime,
    account: str | None = None,
    region: str = "us-east-1",
    source_ip: str = "203.0.113.10",
    issued_access_key_id: str | None = None,
    mfa_serial: str | None = None,
    source_identity: str | None = None,
    error_code: str | None = None,
    event_id: str | None = None,
    shared_event_id: str | None = None,
    event_name: str = "AssumeRole",
) -> dict[str, Any]:
    """An ``AssumeRole``-family call by ``caller`` (a ``userIdentity``) for ``role_arn``.

    On success the response carries the issued ``ASIA…`` key and the assumed-role user; on
    error (``error_code``, e.g. "AccessDenied") ``responseElements`` is null.
    """
    if event_name not in _ASSUME_EVENTS:
        raise ValueError(f"not an assume call: {event_name}")
    role_account, role_name = _role_parts(role_arn)
    params: dict[str, Any] = {"roleArn": role_arn, "roleSessionName": session_name}
    if mfa_serial is not None:
        params["serialNumber"] = mfa_serial
        params["tokenCode"] = "HIDDEN_DUE_TO_SECURITY_REASONS"
    if source_identity is not None:
        params["sourceIdentity"] = source_identity
    response: dict[str, Any] | None = None
    if error_code is None:
        key = issued_access_key_id or new_access_key_id(temporary=True)
        expiration = event_time.astimezone(UTC).replace(microsecond=0)
        response = {
            "credentials": {
                "accessKeyId": key,
                "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLE",
                "expiration": expiration.strftime("%b %d, %Y, %I:%M:%S %p"),
            },
            "assumedRoleUser": {
                "assumedRoleId": f"{_unique_id('AROA', role_arn.lower())}:{session_name}",
                "arn": f"arn:aws:sts::{role_account}:assumed-role/{role_name}/{session_name}",
            },
        }
        if source_identity is not None:
            response["sourceIdentity"] = source_identity
    record = api_call_record(
        identity=caller,
        event_name=event_name,
        event_source="sts.amazonaws.com",
        account=account or role_account,
        event_time=event_time,
        region=region,
        source_ip=source_ip,
        event_id=event_id,
        error_code=error_code,
        error_message=(
            f"User: {caller.get('arn', 'unknown')} is not authorized to perform: "
            f"sts:{event_name} on resource: {role_arn}"
            if error_code
            else None
        ),
        request_parameters=params,
        response_elements=response,
        read_only=True,
        shared_event_id=shared_event_id,
    )
    record["resources"] = [
        {"accountId": role_account, "type": "AWS::IAM::Role", "ARN": role_arn},
    ]
    return record


def console_login_record(
    *,
    identity: dict[str, Any],
    success: bool,
    mfa_used: bool,
    event_time: datetime,
    account: str | None = None,
    source_ip: str = "203.0.113.10",
    event_id: str | None = None,
) -> dict[str, Any]:
    """A ``ConsoleLogin`` of an IAM user or root (``identity`` as the builders above make it).

    A sign-in uses no access key and has no session context yet; a failed IAM-user login also
    drops ``arn`` from the identity, as AWS does.
    """
    identity = {k: v for k, v in identity.items() if k != "sessionContext"}
    if "accessKeyId" in identity:
        identity["accessKeyId"] = ""
    if not success and identity.get("type") == "IAMUser":
        del identity["arn"]
    record = _sign_in_record(
        "ConsoleLogin",
        identity,
        account or str(identity.get("accountId", "")),
        success=success,
        event_time=event_time,
        source_ip=source_ip,
        event_id=event_id,
        additional={
            "LoginTo": (
                "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true"
            ),
            "MobileVersion": "No",
            "MFAUsed": "Yes" if mfa_used else "No",
        },
    )
    if not success:
        record["errorMessage"] = "Failed authentication"
    return record


def switch_role_record(
    *,
    user_name: str,
    user_account: str,
    role_arn: str,
    event_time: datetime,
    success: bool = True,
    mfa: bool = False,
    source_ip: str = "203.0.113.10",
    event_id: str | None = None,
) -> dict[str, Any]:
    """A console ``SwitchRole`` by IAM user ``user_name`` into ``role_arn``.

    The identity is already the target role's session (session name = the user's name, no
    access key), ``requestParameters`` is null, the response says "Success"/"Failure".
    """
    role_account, _ = _role_parts(role_arn)
    identity = assumed_role_identity(role_arn, user_name, "", mfa=mfa, creation_date=event_time)
    return _sign_in_record(
        "SwitchRole",
        identity,
        role_account,
        success=success,
        event_time=event_time,
        source_ip=source_ip,
        event_id=event_id,
        additional={
            "SwitchFrom": f"arn:aws:iam::{user_account}:user/{user_name}",
            "RedirectTo": "https://console.aws.amazon.com/console/home",
        },
    )


def _sign_in_record(
    event_name: str,
    identity: dict[str, Any],
    account: str,
    *,
    success: bool,
    event_time: datetime,
    source_ip: str,
    event_id: str | None,
    additional: dict[str, str],
) -> dict[str, Any]:
    """A console sign-in event as ``signin.amazonaws.com`` records it: no request parameters,
    the result under ``responseElements[event_name]``, no request id."""
    record = _record(
        identity=identity,
        event_time=event_time,
        event_source="signin.amazonaws.com",
        event_name=event_name,
        region="us-east-1",
        source_ip=source_ip,
        user_agent=_CONSOLE_AGENT,
        request_parameters=None,
        response_elements={event_name: "Success" if success else "Failure"},
        event_id=event_id,
        read_only=False,
        event_type="AwsConsoleSignIn",
        account=account,
        version="1.08",
    )
    record["additionalEventData"] = additional
    del record["requestID"]
    return record


def eventbridge_envelope(record: dict[str, Any], *, account: str | None = None) -> dict[str, Any]:
    """What an EventBridge rule delivers to SQS for ``record``; ``account`` only if given (moto
    omits it)."""
    source = str(record["eventSource"]).split(".", 1)[0]
    detail_type = (
        "AWS Console Sign In via CloudTrail"
        if source == "signin"
        else "AWS API Call via CloudTrail"
    )
    envelope: dict[str, Any] = {
        "version": "0",
        "id": _derived_uuid("envelope:" + str(record["eventID"])),
        "detail-type": detail_type,
        "source": "aws." + source,
    }
    if account is not None:
        envelope["account"] = account
    envelope.update(
        time=record["eventTime"],
        region=record["awsRegion"],
        resources=[],
        detail=record,
    )
    return envelope


def _lookup_username(record: dict[str, Any]) -> str | None:
    identity = record.get("userIdentity") or {}
    kind = identity.get("type")
    if kind == "IAMUser":
        return identity.get("userName")
    if kind == "AssumedRole":
        return str(identity.get("arn", "")).rsplit("/", 1)[-1] or None
    if kind == "Root":
        return "root"
    return None


def _lookup_resources(record: dict[str, Any]) -> list[dict[str, str]]:
    resources = [
        {"ResourceType": r["type"], "ResourceName": r["ARN"]} for r in record.get("resources") or []
    ]
    response = record.get("responseElements") or {}
    if record.get("eventName") in _ASSUME_EVENTS and "credentials" in response:
        resources.append(
            {
                "ResourceType": "AWS::IAM::AccessKey",
                "ResourceName": response["credentials"]["accessKeyId"],
            }
        )
        resources.append(
            {
                "ResourceType": "AWS::STS::AssumedRole",
                "ResourceName": response["assumedRoleUser"]["arn"],
            }
        )
    return resources


def lookup_item(record: dict[str, Any]) -> dict[str, Any]:
    """One ``Events[]`` item of a LookupEvents response (as botocore parses it: ``EventTime`` is
    a datetime; ``CloudTrailEvent`` the record as a JSON string)."""
    item: dict[str, Any] = {
        "EventId": record["eventID"],
        "EventName": record["eventName"],
        "ReadOnly": "true" if record.get("readOnly") else "false",
    }
    key = (record.get("userIdentity") or {}).get("accessKeyId")
    if key:
        item["AccessKeyId"] = key
    item["EventTime"] = datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )
    item["EventSource"] = record["eventSource"]
    username = _lookup_username(record)
    if username:
        item["Username"] = username
    item["Resources"] = _lookup_resources(record)
    item["CloudTrailEvent"] = json.dumps(record, separators=(",", ":"))
    return item
