"""Writes the sample CloudTrail inputs of this folder (reproducibly: same bytes every run).

    .venv/bin/python examples/cloudtrail/generate.py [FOLDER]

The story, against ``rules/break-glass.yaml`` (account 123456789012, the ``quarterly-drill``
window opens 2026-10-01 14:00 Berlin = 12:00 UTC for four hours):

- ``123456789012_CloudTrail_us-east-1_20261001T1215Z.json.gz``: a CloudTrail log file of the
  role's account. Alice, from the identity account, assumes ``break-glass-admin-role`` as
  session ``break-glass-exercise-2026q4`` at 14:07 Berlin time and looks around: a drill. Around
  it, noise that is *not* a break-glass use: an auditor's ``GetRole`` of the role, a user called
  ``break-glass-admin-backup``, an AWS service event, other roles' sessions.
- ``lookup-events-20261001.json``: what ``aws cloudtrail lookup-events`` returned for the same
  hour: it overlaps the log file (same ``eventID``s), so replaying both reports each event once.
- ``eventbridge-20261114.jsonl``: EventBridge envelopes, one a line, as the SQS queue receives
  them. The identity account's copy of Alice's cross-account ``AssumeRole`` (another
  ``eventID``, the same ``sharedEventID``: counted once), then on 14 November at 03:13 Berlin
  time a console sign-in of ``break-glass-admin`` and what that console session did, and
  Mallory's denied attempt to assume the role: unexpected uses, the last one a failure.
"""

from __future__ import annotations

import gzip
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    aws_service_identity,
    console_login_record,
    eventbridge_envelope,
    iam_user_identity,
    lookup_item,
)

ACCOUNT = "123456789012"
IDENTITY_ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"
SESSION = "break-glass-exercise-2026q4"
DRILL_KEY = "ASIAQNZGKDRILL2026Q4"
CONSOLE_KEY = "ASIAQNZGKCONSOLE1114"
SHARED = "5b1e4c3a-8f0d-4c55-9a51-1f2e3d4c5b6a"
LOG_NAME = "123456789012_CloudTrail_us-east-1_20261001T1215Z.json.gz"
LOOKUP_NAME = "lookup-events-20261001.json"
EVENTBRIDGE_NAME = "eventbridge-20261114.jsonl"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _call(
    identity: dict[str, Any], name: str, source: str, when: str, eid: str, **kw: Any
) -> dict[str, Any]:
    kw.setdefault("account", ACCOUNT)
    return api_call_record(
        identity=identity,
        event_name=name,
        event_source=source,
        event_time=_at(when),
        event_id=eid,
        **kw,
    )


def drill_records() -> list[dict[str, Any]]:
    """The log file's records, in the order CloudTrail wrote them."""
    alice = iam_user_identity(IDENTITY_ACCOUNT, "alice", "AKIAQNZGKALICE000001", mfa=True)
    session = assumed_role_identity(
        ROLE, SESSION, DRILL_KEY, mfa=True, creation_date=_at("2026-10-01T12:07:12Z")
    )
    auditor = assumed_role_identity(
        f"arn:aws:iam::{ACCOUNT}:role/security-audit", "audit-bot", "ASIAQNZGKAUDIT000001"
    )
    app = assumed_role_identity(
        f"arn:aws:iam::{ACCOUNT}:role/app-orders", "i-0a1b2c3d4e5f", "ASIAQNZGKAPP0000001"
    )
    backup = iam_user_identity(ACCOUNT, "break-glass-admin-backup", "AKIAQNZGKBACKUP00001")
    return [
        _call(
            app,
            "GetObject",
            "s3.amazonaws.com",
            "2026-10-01T12:01:05Z",
            "c0a80001-0000-4000-8000-000000000001",
            region="eu-central-1",
        ),
        _call(
            auditor,
            "GetRole",
            "iam.amazonaws.com",
            "2026-10-01T12:02:40Z",
            "c0a80001-0000-4000-8000-000000000002",
            request_parameters={"roleName": "break-glass-admin-role"},
        ),
        _call(
            backup,
            "ListBuckets",
            "s3.amazonaws.com",
            "2026-10-01T12:04:00Z",
            "c0a80001-0000-4000-8000-000000000003",
        ),
        assume_role_record(
            caller=alice,
            role_arn=ROLE,
            session_name=SESSION,
            event_time=_at("2026-10-01T12:07:12Z"),
            source_ip="203.0.113.45",
            issued_access_key_id=DRILL_KEY,
            mfa_serial=f"arn:aws:iam::{IDENTITY_ACCOUNT}:mfa/alice",
            event_id="c0a80001-0000-4000-8000-000000000004",
            shared_event_id=SHARED,
        ),
        _call(
            session,
            "GetCallerIdentity",
            "sts.amazonaws.com",
            "2026-10-01T12:07:30Z",
            "c0a80001-0000-4000-8000-000000000005",
            source_ip="203.0.113.45",
        ),
        _call(
            aws_service_identity("cloudtrail.amazonaws.com"),
            "PutObject",
            "s3.amazonaws.com",
            "2026-10-01T12:08:00Z",
            "c0a80001-0000-4000-8000-000000000006",
            event_type="AwsServiceEvent",
            source_ip="cloudtrail.amazonaws.com",
        ),
        _call(
            session,
            "ListUsers",
            "iam.amazonaws.com",
            "2026-10-01T12:09:14Z",
            "c0a80001-0000-4000-8000-000000000007",
            source_ip="203.0.113.45",
        ),
        _call(
            session,
            "GetAccountAuthorizationDetails",
            "iam.amazonaws.com",
            "2026-10-01T12:11:51Z",
            "c0a80001-0000-4000-8000-000000000008",
            source_ip="203.0.113.45",
        ),
        _call(
            app,
            "PutObject",
            "s3.amazonaws.com",
            "2026-10-01T12:12:33Z",
            "c0a80001-0000-4000-8000-000000000009",
            region="eu-central-1",
            read_only=False,
        ),
    ]


def lookup_response(records: list[dict[str, Any]]) -> dict[str, Any]:
    """LookupEvents output (``aws cloudtrail lookup-events``) for the role's hour: newest first,
    ``EventTime`` as the CLI prints it."""
    wanted = [r for r in records if r["eventID"][-2:] in ("02", "04", "05", "07")]
    events = []
    for record in sorted(wanted, key=lambda r: r["eventTime"], reverse=True):
        item = lookup_item(record)
        item["EventTime"] = item["EventTime"].isoformat()
        events.append(item)
    return {"Events": events}


def eventbridge_records() -> list[dict[str, Any]]:
    caller_copy = assume_role_record(
        caller=iam_user_identity(IDENTITY_ACCOUNT, "alice", "AKIAQNZGKALICE000001", mfa=True),
        role_arn=ROLE,
        session_name=SESSION,
        event_time=_at("2026-10-01T12:07:12Z"),
        account=IDENTITY_ACCOUNT,
        source_ip="203.0.113.45",
        issued_access_key_id=DRILL_KEY,
        mfa_serial=f"arn:aws:iam::{IDENTITY_ACCOUNT}:mfa/alice",
        event_id="d1b2c3d4-0000-4000-8000-000000000001",
        shared_event_id=SHARED,
    )
    admin = iam_user_identity(ACCOUNT, "break-glass-admin")
    console = iam_user_identity(ACCOUNT, "break-glass-admin", CONSOLE_KEY, mfa=True)
    mallory = iam_user_identity(ACCOUNT, "mallory", "AKIAQNZGKMALLORY0001")
    login_at = _at("2026-11-14T03:13:40+01:00")
    return [
        caller_copy,
        _call(
            mallory,
            "ListRoles",
            "iam.amazonaws.com",
            "2026-11-14T02:10:02Z",
            "d1b2c3d4-0000-4000-8000-000000000002",
            source_ip="198.51.100.66",
        ),
        console_login_record(
            identity=admin,
            success=True,
            mfa_used=True,
            event_time=login_at,
            source_ip="198.51.100.23",
            event_id="d1b2c3d4-0000-4000-8000-000000000003",
        ),
        _call(
            console,
            "CreateAccessKey",
            "iam.amazonaws.com",
            (login_at + timedelta(minutes=2)).isoformat(),
            "d1b2c3d4-0000-4000-8000-000000000004",
            source_ip="198.51.100.23",
            read_only=False,
            request_parameters={"userName": "deploy-bot"},
        ),
        assume_role_record(
            caller=mallory,
            role_arn=ROLE,
            session_name="totally-legit",
            event_time=_at("2026-11-14T02:20:00Z"),
            source_ip="198.51.100.66",
            error_code="AccessDenied",
            event_id="d1b2c3d4-0000-4000-8000-000000000005",
        ),
    ]


def write_examples(folder: Path) -> list[Path]:
    """Write the three sample files into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    records = drill_records()
    log = folder / LOG_NAME
    with log.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        out.write(json.dumps({"Records": records}, separators=(",", ":")).encode())
    lookup = folder / LOOKUP_NAME
    lookup.write_text(json.dumps(lookup_response(records), indent=2) + "\n")
    envelopes = folder / EVENTBRIDGE_NAME
    lines = [
        json.dumps(eventbridge_envelope(r, account=r["recipientAccountId"]))
        for r in eventbridge_records()
    ]
    envelopes.write_text("\n".join(lines) + "\n")
    return [log, lookup, envelopes]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for path in write_examples(target):
        print(path)
