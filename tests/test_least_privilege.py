"""The IAM policies grant exactly the AWS calls the watcher makes, proven by recording them.

The watcher runs its real code against the emulator while moto's recorder logs every signed
request (``watcher/emulator/calls.py``): the daemon with both sources, the inventory (a declared
user, role and root principal, discovery by name and tag), the canary and the drift checks,
then ``audit``. Which identity made a call is read from its access key: the watcher's own
credentials, or the session of the account's reader role (``role_arn``). Two runs cover both
kinds of account (with and without ``role_arn``) and both ways of finding the rules.

- ``deploy/aws/watcher-policy.json`` must grant exactly the calls made with the watcher's own
  credentials in either run (it also reads accounts that have no ``role_arn``);
- the reader role of ``deploy/aws/reader-role.yaml`` exactly the calls made with its session.

Not a call the watcher makes, so granted without being recorded: ``kms:Decrypt``, which SQS
uses on the receiver's behalf for a queue encrypted with a customer key.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from harness import ACCOUNT, write_config

from watcher.audit import audit
from watcher.clock import utc_now
from watcher.daemon import Daemon
from watcher.emulator.calls import Call
from watcher.emulator.infra import create_pipeline
from watcher.emulator.records import api_call_record, eventbridge_envelope, iam_user_identity
from watcher.emulator.server import Emulator
from watcher.rules import parse_rules

ROOT = Path(__file__).resolve().parent.parent
WATCHER_POLICY = ROOT / "deploy" / "aws" / "watcher-policy.json"
READER = ROOT / "deploy" / "aws" / "reader-role.yaml"
#: The watcher's own access key in these tests (tests/conftest.py sets it for the process).
OWN_KEY = "testing"
IMPLICIT = {"kms:Decrypt"}
READER_ARN = f"arn:aws:iam::{ACCOUNT}:role/breakglass-watcher-reader"
RULES = f"""
principals:
  - name: bg-user
    match: {{user_name: break-glass-admin}}
    account: "{ACCOUNT}"
  - name: bg-role
    match: {{role_arn: "arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"}}
  - name: root
    match: {{root_of_account: "{ACCOUNT}"}}
"""


def _setup(emulator: Emulator, folder: Path) -> str:
    """IAM principals of every kind the inventory reads, a trail, and the queue and rule."""
    folder.mkdir()
    kwargs: dict[str, Any] = {"region_name": "us-east-1", "endpoint_url": emulator.endpoint_url}
    iam = boto3.client("iam", **kwargs)
    iam.create_user(UserName="break-glass-admin")
    iam.create_login_profile(UserName="break-glass-admin", Password="Correct-horse-battery-1")
    iam.create_access_key(UserName="break-glass-admin")
    iam.create_user(UserName="ops-oncall", Tags=[{"Key": "breakglass", "Value": "true"}])
    iam.create_role(
        RoleName="ops-tagged-role",
        AssumeRolePolicyDocument="{}",
        Tags=[{"Key": "breakglass", "Value": "true"}],
    )
    for role in (
        "break-glass-admin-role",
        "breakglass-watcher-canary",
        "breakglass-watcher-reader",
    ):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
    boto3.client("s3", **kwargs).create_bucket(Bucket="trail-logs")
    cloudtrail = boto3.client("cloudtrail", **kwargs)
    cloudtrail.create_trail(Name="trail", S3BucketName="trail-logs", IsMultiRegionTrail=True)
    cloudtrail.start_logging(Name="trail")
    pipeline = create_pipeline(
        emulator.endpoint_url, parse_rules([("rules.yaml", yaml.safe_load(RULES))])
    )
    # One message to receive and delete: an ordinary call, no break-glass use.
    record = api_call_record(
        identity=iam_user_identity(ACCOUNT, "alice"),
        event_source="s3.amazonaws.com",
        event_name="ListBuckets",
        account=ACCOUNT,
        event_time=utc_now(),
    )
    boto3.client("sqs", **kwargs).send_message(
        QueueUrl=pipeline.queue_url, MessageBody=json.dumps(eventbridge_envelope(record))
    )
    return pipeline.queue_url


async def _run_watcher(config: Path) -> None:
    """Every job of the daemon once (each runs at start), then ``audit``."""
    daemon = Daemon.load(config)
    value = daemon.registry.get_sample_value
    task = asyncio.create_task(daemon.run())
    try:
        labels = {"source": "iam", "account": ACCOUNT, "region": "global"}
        for _ in range(300):
            done = (
                value("breakglass_source_up", labels) == 1
                and value("breakglass_canary_sent_timestamp_seconds", {"account": ACCOUNT})
                and daemon.readiness().ready
                and any(
                    f.name == "breakglass_pipeline_check" and f.samples
                    for f in daemon.registry.collect()
                )
            )
            if done:
                break
            await asyncio.sleep(0.1)
        assert done, "not every job ran"
    finally:
        daemon.stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    await audit(daemon.config, daemon.rules, now=utc_now())


async def _recorded(
    emulator: Emulator, tmp_path: Path, *, role_arn: bool, names: bool
) -> list[Call]:
    queue_url = _setup(emulator, tmp_path)
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=queue_url,
        rules=RULES,
        extra="canary: {interval: 1h}\n"
        + ("checks: {eventbridge_rules: [breakglass-watcher]}" if names else "checks: {}"),
    )
    text = config.read_text().replace("inventory: {enabled: false}", "inventory: {}")
    if role_arn:
        text = text.replace(
            f'accounts: [{{id: "{ACCOUNT}"}}]',
            f'accounts: [{{id: "{ACCOUNT}", role_arn: "{READER_ARN}"}}]',
        )
    config.write_text(text)
    emulator.calls.start()
    try:
        await _run_watcher(config)
        return emulator.calls.calls()
    finally:
        emulator.calls.stop()


def _granted(statements: list[dict[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        found = statement["Action"]
        actions |= {found} if isinstance(found, str) else set(found)
    return actions


def _reader_statements() -> list[dict[str, Any]]:
    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation's short-form tags, read as plain values.
    for tag in ("!Ref", "!Sub", "!GetAtt", "!If", "!Not", "!Equals"):
        Loader.add_multi_constructor(tag, lambda loader, suffix, node: None)
        Loader.add_constructor(
            tag,
            lambda loader, node: (
                loader.construct_sequence(node)
                if isinstance(node, yaml.SequenceNode)
                else loader.construct_scalar(node)  # type: ignore[arg-type]
            ),
        )
    template = yaml.load(READER.read_text(), Loader=Loader)
    (policy,) = template["Resources"]["ReaderRole"]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = []
    for statement in policy["PolicyDocument"]["Statement"]:
        if isinstance(statement, list):  # !If [Condition, statement, AWS::NoValue]
            statement = statement[1]
        statements.append(statement)
    return statements


@pytest.mark.slow
async def test_the_policies_grant_exactly_the_calls_the_watcher_makes(
    emulator: Emulator, tmp_path: Path
) -> None:
    with_reader = await _recorded(emulator, tmp_path / "a", role_arn=True, names=True)
    emulator.reset()
    own_only = await _recorded(emulator, tmp_path / "b", role_arn=False, names=False)

    own = {c.action for c in with_reader + own_only if c.access_key == OWN_KEY}
    reader = {c.action for c in with_reader if c.access_key != OWN_KEY}
    assert reader, "the reader role was never used"
    assert "iam:GetAccountSummary" in own | reader  # the root principal's MFA check

    watcher_policy = json.loads(WATCHER_POLICY.read_text())["Statement"]
    assert _granted(watcher_policy) - IMPLICIT == own, "deploy/aws/watcher-policy.json"
    # Granted for a setting this run does not use: `regions: all` reads the enabled regions
    # (tests/test_organization.py exercises that call).
    only_with_settings = {"ec2:DescribeRegions"}
    granted = _granted(_reader_statements())
    assert reader <= granted, "deploy/aws/reader-role.yaml"
    assert granted - reader == only_with_settings, "deploy/aws/reader-role.yaml"
