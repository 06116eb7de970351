"""What the demo creates: the break-glass role and user and the EventBridge → SQS pipeline in
the emulator, the config and rules on disk, and the dummy credentials the process uses meanwhile.

The tests build the same world with :func:`set_up_demo`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import yaml

from watcher.canary import with_canaries
from watcher.clock import iso_z
from watcher.emulator.infra import Pipeline, create_pipeline
from watcher.model import Window
from watcher.rules import load_rules
from watcher.settings import Account, CanarySettings

REGION = "us-east-1"
ROLE_NAME = "break-glass-admin-role"
USER_NAME = "break-glass-admin"
ROLE_PRINCIPAL = "break-glass-admin-role"
USER_PRINCIPAL = "break-glass-admin"
DRILL_EXERCISE = "demo-drill"
SESSION_PATTERN = "break-glass-exercise*"
UNEXPECTED_SESSION = "admin-hotfix"  # does not match SESSION_PATTERN
PARTICIPANT = "demo-operator"
PERSON_LAST_DRILL = "breakglass_person_last_drill_timestamp_seconds"
SOURCE_IP = "127.0.0.1"
TRAIL_NAME = "organization-trail"
TRAIL_BUCKET = "cloudtrail-logs"

EMULATOR_ENV = {
    "AWS_ACCESS_KEY_ID": "demo-not-a-real-key",
    "AWS_SECRET_ACCESS_KEY": "demo-not-a-real-secret",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_CLEARED_ENV = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
)


@contextmanager
def emulator_environment() -> Iterator[None]:
    """Dummy AWS credentials for the emulator in this process, restored afterwards."""
    keys = (*EMULATOR_ENV, *_CLEARED_ENV)
    saved = {k: os.environ.get(k) for k in keys}
    for key in _CLEARED_ENV:
        os.environ.pop(key, None)
    os.environ.update(EMULATOR_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass(frozen=True, slots=True)
class DemoSetup:
    """What :func:`set_up_demo` created: AWS resources in the emulator and the files."""

    config_path: Path
    endpoint_url: str
    account: str
    region: str
    role_arn: str
    user_arn: str
    mfa_serial: str
    user_access_key_id: str
    user_secret_access_key: str = field(repr=False)
    pipeline: Pipeline = field(repr=False)
    window: Window = field(repr=False)


def set_up_demo(
    endpoint_url: str,
    folder: Path,
    *,
    now: datetime,
    port: int = 0,
    window_ahead: timedelta = timedelta(minutes=5),
    lookup_interval: str = "2s",
) -> DemoSetup:
    """Create the break-glass role and user and the EventBridge → SQS pipeline in the emulator,
    and write ``folder/config.yaml`` and ``folder/rules/`` for the daemon.

    The rules open a one-off window of :data:`DRILL_EXERCISE` from a minute before ``now`` to
    ``window_ahead`` after it, next to quarterly exercises like a real deployment's.
    """
    iam = boto3.client("iam", region_name=REGION, endpoint_url=endpoint_url)
    sts = boto3.client("sts", region_name=REGION, endpoint_url=endpoint_url)
    account = str(sts.get_caller_identity()["Account"])
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OperatorsOfThisAccountMayBreakGlass",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
            }
        ],
    }
    tags = [{"Key": "breakglass", "Value": "true"}]
    role_arn = iam.create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(trust),
        Description="Emergency administrator access",
        MaxSessionDuration=3600,
        Tags=tags,
    )["Role"]["Arn"]
    user_arn = iam.create_user(UserName=USER_NAME, Tags=tags)["User"]["Arn"]
    iam.create_login_profile(
        UserName=USER_NAME, Password=secrets.token_urlsafe(24), PasswordResetRequired=False
    )
    mfa_serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=USER_NAME)["VirtualMFADevice"][
        "SerialNumber"
    ]
    iam.enable_mfa_device(
        UserName=USER_NAME,
        SerialNumber=mfa_serial,
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )
    key = iam.create_access_key(UserName=USER_NAME)["AccessKey"]

    window = Window(DRILL_EXERCISE, now - timedelta(minutes=1), now + window_ahead)
    rules_dir = folder / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    _write_yaml(rules_dir / "break-glass.yaml", _rules_document(account, role_arn, window))
    # The canary role (no permissions) is watched and in the pattern, as deploy/aws sets it up.
    iam.create_role(
        RoleName=CanarySettings().role_name,
        AssumeRolePolicyDocument=json.dumps(trust),
        Description="breakglass-watcher canary; no permissions",
    )
    rules = with_canaries(
        load_rules(rules_dir, now=now), CanarySettings(enabled=True), [Account(account, (REGION,))]
    )
    pipeline = create_pipeline(endpoint_url, rules, region=REGION)
    _create_trail(endpoint_url)
    config_path = folder / "config.yaml"
    _write_yaml(
        config_path,
        _config_document(endpoint_url, account, pipeline.queue_url, port, lookup_interval),
    )
    return DemoSetup(
        config_path=config_path,
        endpoint_url=endpoint_url,
        account=account,
        region=REGION,
        role_arn=role_arn,
        user_arn=user_arn,
        mfa_serial=mfa_serial,
        user_access_key_id=key["AccessKeyId"],
        user_secret_access_key=key["SecretAccessKey"],
        pipeline=pipeline,
        window=window,
    )


def _create_trail(endpoint_url: str) -> None:
    """A logging multi-region trail, as every account the watcher reads has: the drift checks
    look for one (moto keeps the trail but records no events; the demo plays CloudTrail)."""
    boto3.client("s3", region_name=REGION, endpoint_url=endpoint_url).create_bucket(
        Bucket=TRAIL_BUCKET
    )
    cloudtrail = boto3.client("cloudtrail", region_name=REGION, endpoint_url=endpoint_url)
    cloudtrail.create_trail(Name=TRAIL_NAME, S3BucketName=TRAIL_BUCKET, IsMultiRegionTrail=True)
    cloudtrail.start_logging(Name=TRAIL_NAME)


def _rules_document(account: str, role_arn: str, window: Window) -> dict[str, Any]:
    return {
        "principals": [
            {"name": ROLE_PRINCIPAL, "match": {"role_arn": role_arn}},
            {"name": USER_PRINCIPAL, "match": {"user_name": USER_NAME}, "account": account},
        ],
        "exercises": [
            {
                "name": DRILL_EXERCISE,
                "principals": [ROLE_PRINCIPAL],
                "start": iso_z(window.start, timespec="seconds"),
                "end": iso_z(window.end, timespec="seconds"),
                "session_name": SESSION_PATTERN,
            },
            {
                "name": "quarterly-drill",
                "principals": [ROLE_PRINCIPAL],
                "schedule": "0 14 1 1,4,7,10 *",
                "duration": "4h",
                "timezone": "Europe/Berlin",
                "session_name": SESSION_PATTERN,
            },
            {
                "name": "quarterly-user-drill",
                "principals": [USER_PRINCIPAL],
                "schedule": "0 18 1 1,4,7,10 *",
                "duration": "2h",
                "timezone": "Europe/Berlin",
                "require_mfa": True,
            },
        ],
        # The drill's --participant sets SourceIdentity = this name: the drill is theirs.
        "people": [{"name": PARTICIPANT, "principals": [ROLE_PRINCIPAL, USER_PRINCIPAL]}],
    }


def _config_document(
    endpoint_url: str, account: str, queue_url: str, port: int, lookup_interval: str
) -> dict[str, Any]:
    return {
        "rules": "rules",
        "state": "state.db",
        "listen": f"127.0.0.1:{port}",
        "endpoint_url": endpoint_url,
        "regions": [REGION],
        "accounts": [{"id": account}],
        "sources": {
            "eventbridge": {"queue_url": queue_url, "region": REGION, "wait_seconds": 1},
            "lookup": {"interval": lookup_interval, "overlap": "5m", "lookback": "1h"},
        },
        "canary": {"interval": "10m"},
        "checks": {"interval": "1m"},
        "detection_grace": "1m",
        "retention": "1d",
    }


def _write_yaml(path: Path, document: dict[str, Any]) -> None:
    header = "# Written by `breakglass-watcher demo` for its embedded AWS emulator.\n"
    path.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
