"""A generated CloudTrail archive: real-shaped log files in CloudTrail's S3 key layout.

``AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_ID.json.gz``,
each file one minified ``{"Records":[...]}`` line, as CloudTrail writes them. The records are
built with ``records.py`` (role sessions, IAM users, AWS services, assume calls by deployers
and services, console sign-ins) and a small share are break-glass uses of ``BREAK_GLASS_ROLE``
and ``BREAK_GLASS_USER`` in ``ACCOUNT``: an assume call, the session's calls, a console sign-in,
some delivered twice (CloudTrail may). Records are rendered once as templates and stamped with
ids and times, so a million records take seconds.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from watcher.clock import iso_z
from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    aws_service_identity,
    console_login_record,
    iam_user_identity,
)

ACCOUNT = "123456789012"
OTHER_ACCOUNTS = ("210987654321", "345678901234")
REGIONS = ("us-east-1", "eu-central-1")
BREAK_GLASS_ROLE = "break-glass-admin-role"
BREAK_GLASS_USER = "break-glass-admin"
_ID = "00000000-0000-4000-8000-EVENTIDXXXXX"
T0 = datetime(2026, 10, 1, 10, 0, tzinfo=UTC)
"""The time of every record a template holds, until ``stamp`` sets its own."""
_T0_TEXT = "2026-10-01T10:00:00Z"
_FILE_SPAN = timedelta(minutes=5)  # CloudTrail delivers a file about every five minutes

try:
    from isal import igzip

    _compress: Callable[[bytes], bytes] = igzip.compress
except ImportError:  # only the writing is slower
    _compress = gzip.compress

Record = dict[str, Any]


def noise_record(rng: random.Random, account: str, region: str) -> Record:
    """One record of everyday activity: no break-glass principal in it."""
    roll = rng.random()
    if roll < 0.5:
        role = f"arn:aws:iam::{account}:role/app-{rng.randrange(40)}"
        identity = assumed_role_identity(role, f"i-{rng.randrange(10**8):08x}", "ASIANOISE")
    elif roll < 0.7:
        identity = iam_user_identity(account, f"user-{rng.randrange(200)}", "AKIANOISE")
    elif roll < 0.8:
        identity = aws_service_identity("ec2.amazonaws.com")
    elif roll < 0.95:
        return assume_role_record(
            caller=iam_user_identity(account, f"deployer-{rng.randrange(5)}", "AKIADEPLOY"),
            role_arn=f"arn:aws:iam::{account}:role/deploy-{rng.randrange(10)}",
            session_name=f"ci-{rng.randrange(1000)}",
            event_time=T0,
            event_id=_ID,
            region=region,
            issued_access_key_id="ASIADEPLOY",
        )
    else:
        return console_login_record(
            identity=iam_user_identity(account, f"user-{rng.randrange(200)}"),
            success=rng.random() < 0.9,
            mfa_used=True,
            event_time=T0,
            event_id=_ID,
        )
    name, source = rng.choice(
        [
            ("GetObject", "s3.amazonaws.com"),
            ("DescribeInstances", "ec2.amazonaws.com"),
            ("Decrypt", "kms.amazonaws.com"),
            ("GetCallerIdentity", "sts.amazonaws.com"),
            ("PutMetricData", "monitoring.amazonaws.com"),
            ("GetRole", "iam.amazonaws.com"),
        ]
    )
    return api_call_record(
        identity=identity,
        event_name=name,
        event_source=source,
        account=account,
        event_time=T0,
        event_id=_ID,
        region=region,
        # Reading the break-glass role is no use of it: the name is there, the record parsed.
        request_parameters={"roleName": BREAK_GLASS_ROLE if rng.random() < 0.02 else "app-1"}
        if name == "GetRole"
        else None,
        event_type="AwsServiceEvent" if identity["type"] == "AWSService" else "AwsApiCall",
    )


def break_glass_record(rng: random.Random, region: str) -> Record:
    """One break-glass use in ``ACCOUNT``: assuming the role, a session call, a sign-in."""
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{BREAK_GLASS_ROLE}"
    session = rng.choice(["break-glass-exercise-1", "incident-42"])
    roll = rng.random()
    if roll < 0.3:
        return assume_role_record(
            caller=iam_user_identity(ACCOUNT, "alice", "AKIAALICE"),
            role_arn=role_arn,
            session_name=session,
            event_time=T0,
            event_id=_ID,
            region=region,
            issued_access_key_id="ASIABREAKGLASS",
        )
    if roll < 0.9:
        return api_call_record(
            identity=assumed_role_identity(role_arn, session, "ASIABREAKGLASS"),
            event_name="ListUsers",
            event_source="iam.amazonaws.com",
            account=ACCOUNT,
            event_time=T0,
            event_id=_ID,
            region=region,
        )
    return console_login_record(
        identity=iam_user_identity(ACCOUNT, BREAK_GLASS_USER),
        success=rng.random() < 0.8,
        mfa_used=True,
        event_time=T0,
        event_id=_ID,
    )


@dataclass
class Archive:
    """What ``write_archive`` wrote."""

    files: int = 0
    records: int = 0
    break_glass: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0


def _templates(rng: random.Random, account: str, region: str) -> tuple[list[str], list[str]]:
    def text(record: Record) -> str:
        return json.dumps(record, separators=(",", ":"))

    noise = [text(noise_record(rng, account, region)) for _ in range(300)]
    uses = [text(break_glass_record(rng, region)) for _ in range(30)] if account == ACCOUNT else []
    return noise, uses


def stamp(template: str, number: int, when: datetime) -> str:
    """A record rendered by ``noise_record``/``break_glass_record`` (or an envelope of one),
    with event id number ``number`` and time ``when``."""
    event_time = iso_z(when, timespec="seconds")
    return template.replace(_ID[-12:], f"{number:012d}").replace(_T0_TEXT, event_time)


def _files(count: int, per_file: int) -> Iterator[tuple[str, str, datetime, int]]:
    """(account, region, file start, records) for ``count`` records, round robin."""
    accounts = (ACCOUNT, *OTHER_ACCOUNTS)
    slot = 0
    while count > 0:
        for account in accounts:
            for region in REGIONS:
                if count <= 0:
                    return
                size = min(per_file, count)
                count -= size
                yield account, region, T0 + slot * _FILE_SPAN, size
        slot += 1


def write_archive(
    root: Path, count: int, *, seed: int = 1, per_file: int = 1000, share: float = 0.005
) -> Archive:
    """``count`` records below ``root`` in CloudTrail's layout, about ``share`` of the records
    of ``ACCOUNT`` break-glass uses (5 % of those written twice)."""
    rng = random.Random(seed)
    templates = {
        (account, region): _templates(rng, account, region)
        for account in (ACCOUNT, *OTHER_ACCOUNTS)
        for region in REGIONS
    }
    archive = Archive()
    number = 0
    for account, region, start, size in _files(count, per_file):
        noise, uses = templates[account, region]
        lines = []
        for n in range(size):
            number += 1
            when = start + timedelta(seconds=n * 300 // size)
            use = bool(uses) and rng.random() < share * (1 + len(OTHER_ACCOUNTS))
            lines.append(stamp(rng.choice(uses if use else noise), number, when))
            if use:
                archive.break_glass += 1
                if rng.random() < 0.05:
                    lines.append(lines[-1])
        data = ('{"Records":[' + ",".join(lines) + "]}").encode()
        folder = root / "AWSLogs" / account / "CloudTrail" / region / start.strftime("%Y/%m/%d")
        folder.mkdir(parents=True, exist_ok=True)
        minute = start.strftime("%Y%m%dT%H%MZ")
        name = f"{account}_CloudTrail_{region}_{minute}_{rng.getrandbits(64):016x}.json.gz"
        compressed = _compress(data)
        (folder / name).write_bytes(compressed)
        archive.files += 1
        archive.records += len(lines)
        archive.raw_bytes += len(data)
        archive.stored_bytes += len(compressed)
    return archive
