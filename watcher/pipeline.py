"""Drift checks of the delivery pipeline, each a pass/fail with a reason (``breakglass_pipeline_
check``), and the depth and age of the queue and its dead-letter queue.

What is checked, and why:

- ``eventbridge_rule``: every rule named in ``checks.eventbridge_rules`` (or, if none is named,
  every rule of the default bus that targets the queue) exists, is in state
  ``ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS`` (with plain ``ENABLED`` EventBridge skips
  read-only management events such as ``AssumeRole`` and ``ConsoleLogin``) and targets the queue.
- ``trail_logging``: per watched account and region, a trail that applies to the region (its
  home region, or a multi-region trail) is logging. EventBridge's documentation requires exactly
  that for "AWS API Call via CloudTrail" events: "you must enable a CloudTrail trail with
  logging"; it asks for no particular event selector, so none is checked.
- ``queue`` / ``dead_letter_queue``: the queue exists and has a redrive policy whose dead-letter
  queue exists.

The evaluation of AWS answers is pure (``*_result`` functions); ``run_checks`` makes the calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from watcher.aws import AwsClients
from watcher.settings import Account, Config
from watcher.sources.retry import RETRYABLE, classify_error
from watcher.sources.sqs import EventBridgeSettings, queue_account

ALL_MANAGEMENT_EVENTS = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
QUEUE, DEAD_LETTER = "events", "dead-letter"
#: The ``queue`` label of each queue, and the SQS attributes summed as its depth.
_DEPTH = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


@dataclass(frozen=True, slots=True)
class Check:
    """One check's result; ``resource`` names what was checked (a rule, a queue, a region)."""

    check: str
    account: str
    region: str
    resource: str
    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    messages: int
    oldest_age_seconds: float | None


@dataclass(frozen=True, slots=True)
class PipelineReport:
    checks: list[Check]
    queues: list[QueueStats]


def rule_result(
    name: str,
    described: dict[str, Any] | None,
    target_arns: Sequence[str],
    queue_arn: str,
    account: str,
    region: str,
) -> Check:
    """The ``eventbridge_rule`` check of one rule from DescribeRule (None: no such rule) and
    its targets."""

    def result(ok: bool, reason: str = "") -> Check:
        return Check("eventbridge_rule", account, region, name, ok, reason)

    if described is None:
        return result(False, f"EventBridge rule {name} does not exist")
    state = described.get("State")
    if state != ALL_MANAGEMENT_EVENTS:
        return result(
            False,
            f"EventBridge rule {name} is {state}, not {ALL_MANAGEMENT_EVENTS}: "
            "read-only calls such as AssumeRole and ConsoleLogin are not delivered",
        )
    if queue_arn not in target_arns:
        return result(False, f"EventBridge rule {name} does not target the queue {queue_arn}")
    return result(True)


def trail_result(
    trails: Sequence[dict[str, Any]], logging: dict[str, bool], account: str, region: str
) -> Check:
    """``trail_logging`` from DescribeTrails (shadow trails included) and each trail's
    ``IsLogging`` (by trail ARN)."""
    applying = [t for t in trails if t.get("IsMultiRegionTrail") or t.get("HomeRegion") == region]
    if any(logging.get(str(t.get("TrailARN")), False) for t in applying):
        return Check("trail_logging", account, region, "cloudtrail", True)
    if not applying:
        reason = f"no CloudTrail trail applies to {region}: EventBridge gets no CloudTrail events"
    else:
        names = ", ".join(sorted(str(t.get("Name")) for t in applying))
        reason = f"no trail of {region} is logging ({names}): EventBridge gets no CloudTrail events"
    return Check("trail_logging", account, region, "cloudtrail", False, reason)


def _not_found(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "TrailNotFoundException",
    }


async def _rules(
    clients: AwsClients, names: Sequence[str], queue_arn: str, account: str, region: str
) -> list[Check]:
    async with clients.client("events", region) as events:
        if not names:
            answer = await events.list_rule_names_by_target(TargetArn=queue_arn)
            names = list(answer.get("RuleNames", []))
            if not names:
                reason = f"no EventBridge rule of the default bus targets the queue {queue_arn}"
                return [Check("eventbridge_rule", account, region, "any", False, reason)]
        checks = []
        for name in names:
            try:
                described: dict[str, Any] | None = await events.describe_rule(Name=name)
                targets = (await events.list_targets_by_rule(Rule=name)).get("Targets", [])
            except ClientError as exc:
                if not _not_found(exc):
                    raise
                described, targets = None, []
            arns = [str(t.get("Arn")) for t in targets]
            checks.append(rule_result(name, described, arns, queue_arn, account, region))
        return checks


async def _trail(clients: AwsClients, account: Account, region: str) -> Check:
    async with clients.client("cloudtrail", region, account) as cloudtrail:
        trails = (await cloudtrail.describe_trails(includeShadowTrails=True)).get("trailList", [])
        logging: dict[str, bool] = {}
        for trail in trails:
            arn = str(trail.get("TrailARN"))
            status = await cloudtrail.get_trail_status(Name=arn)
            logging[arn] = bool(status.get("IsLogging"))
    return trail_result(trails, logging, account.id, region)


async def _depth(sqs: Any, cloudwatch: Any, url: str, label: str, now: datetime) -> QueueStats:
    attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_DEPTH)))[
        "Attributes"
    ]
    messages = sum(int(attributes.get(name, 0)) for name in _DEPTH)
    name = url.rstrip("/").rsplit("/", 1)[-1]
    # SQS reports the oldest message's age only as a CloudWatch metric.
    answer = await cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": name}],
        StartTime=now - timedelta(minutes=15),
        EndTime=now,
        Period=60,
        Statistics=["Maximum"],
    )
    points = sorted(answer.get("Datapoints", []), key=lambda p: p["Timestamp"])
    age = float(points[-1]["Maximum"]) if points else None
    return QueueStats(label, messages, age)


async def _queues(
    clients: AwsClients, queue_url: str, account: str, region: str, now: datetime
) -> tuple[list[Check], list[QueueStats], str | None]:
    """The queue checks, the depth of both queues, and the queue's ARN (None: no queue)."""
    checks: list[Check] = []
    stats: list[QueueStats] = []
    async with (
        clients.client("sqs", region) as sqs,
        clients.client("cloudwatch", region) as cloudwatch,
    ):
        try:
            answer = await sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["QueueArn", "RedrivePolicy"]
            )
        except ClientError as exc:
            if not _not_found(exc):
                raise
            reason = f"the queue {queue_url} does not exist"
            checks.append(Check("queue", account, region, QUEUE, False, reason))
            return checks, stats, None
        attributes = answer["Attributes"]
        queue_arn = str(attributes["QueueArn"])
        checks.append(Check("queue", account, region, QUEUE, True))
        stats.append(await _depth(sqs, cloudwatch, queue_url, QUEUE, now))
        redrive = attributes.get("RedrivePolicy")
        dlq_arn = str(json.loads(redrive).get("deadLetterTargetArn", "")) if redrive else ""
        if not dlq_arn:
            reason = "the queue has no redrive policy: undeliverable messages are lost"
            checks.append(Check("dead_letter_queue", account, region, DEAD_LETTER, False, reason))
            return checks, stats, queue_arn
        _, _, _, _, owner, name = dlq_arn.split(":", 5)
        try:
            dlq_url = (await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=owner))[
                "QueueUrl"
            ]
        except ClientError as exc:
            if not _not_found(exc):
                raise
            reason = f"the dead-letter queue {dlq_arn} does not exist"
            checks.append(Check("dead_letter_queue", account, region, DEAD_LETTER, False, reason))
            return checks, stats, queue_arn
        checks.append(Check("dead_letter_queue", account, region, DEAD_LETTER, True))
        stats.append(await _depth(sqs, cloudwatch, dlq_url, DEAD_LETTER, now))
    return checks, stats, queue_arn


async def run_checks(
    clients: AwsClients,
    *,
    queue_url: str | None,
    queue_account: str,
    queue_region: str,
    rule_names: Sequence[str],
    accounts: Sequence[Account],
    now: datetime,
) -> PipelineReport:
    """Every check: the queue and its rules (when EventBridge is a source), and the trail of
    every watched account and region."""
    checks: list[Check] = []
    stats: list[QueueStats] = []
    if queue_url is not None:
        try:
            found, stats, queue_arn = await _queues(
                clients, queue_url, queue_account, queue_region, now
            )
            checks += found
            if queue_arn is not None:
                checks += await _rules(clients, rule_names, queue_arn, queue_account, queue_region)
        except RETRYABLE as exc:
            reason = f"cannot read the queue or its rules ({classify_error(exc)}): {exc}"
            checks.append(Check("queue", queue_account, queue_region, QUEUE, False, reason))
    for account in accounts:
        for region in account.regions:
            try:
                checks.append(await _trail(clients, account, region))
            except RETRYABLE as exc:
                reason = f"cannot read the trails ({classify_error(exc)}): {exc}"
                checks.append(
                    Check("trail_logging", account.id, region, "cloudtrail", False, reason)
                )
    return PipelineReport(checks, stats)


async def check_config(config: Config, now: datetime) -> PipelineReport:
    """Every check the config calls for: the queue of ``sources.eventbridge`` (if enabled) and
    its rules, and the trails of every account and region."""
    eventbridge = config.sources.get("eventbridge")
    queue_url = region = owner = None
    if isinstance(eventbridge, EventBridgeSettings):
        queue_url, region = eventbridge.queue_url, eventbridge.region
        owner = queue_account(queue_url)
    return await run_checks(
        AwsClients(config.endpoint_url),
        queue_url=queue_url,
        queue_account=owner or "",
        queue_region=region or "",
        rule_names=config.checks.eventbridge_rules,
        accounts=config.accounts,
        now=now,
    )
