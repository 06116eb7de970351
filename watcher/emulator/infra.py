"""Build the EventBridge → SQS pipeline in an emulator endpoint and deliver records through it.

For tests and the demo (sync boto3). The production resources come from the CloudFormation
template in ``deploy/``; this mirrors it: a dead-letter queue, the main queue with a redrive
policy and a queue policy letting the rule send, and the rule with
``ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS`` (moto stores that state as given; it routes
events whatever the state) whose pattern comes from :mod:`watcher.render`.

:func:`deliver` stands in for CloudTrail: it puts a record on the bus the way EventBridge receives
it (``source`` ``aws.<service>``). Real EventBridge refuses ``aws.*`` sources from customers'
``PutEvents``; moto accepts them, which is what makes this stand-in possible.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3

from watcher.emulator.records import eventbridge_envelope
from watcher.model import Rules
from watcher.render import eventbridge_pattern_json

RULE_STATE = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"


@dataclass(frozen=True, slots=True)
class Pipeline:
    """What :func:`create_pipeline` made."""

    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    rule_name: str
    rule_arn: str
    region: str


def account_client(endpoint_url: str, service: str, region: str, account: str | None) -> Any:
    """A boto3 client of the emulator acting in ``account`` (None: moto's default account)."""
    client = boto3.client(service, region_name=region, endpoint_url=endpoint_url)
    if account is not None:
        # moto's way of choosing the account a request acts in.
        def as_account(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = account

        client.meta.events.register("before-sign", as_account)
    return client


def create_pipeline(
    endpoint_url: str,
    rules: Rules,
    *,
    region: str = "us-east-1",
    name: str = "breakglass-watcher",
    account: str | None = None,
    max_receive_count: int = 5,
    visibility_timeout: int = 30,
) -> Pipeline:
    """Create the DLQ, the queue, the rule (pattern from ``rules``) and its SQS target."""
    sqs = account_client(endpoint_url, "sqs", region, account)
    events = account_client(endpoint_url, "events", region, account)
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    rule_arn = events.put_rule(
        Name=name,
        EventPattern=eventbridge_pattern_json(rules),
        State=RULE_STATE,
        Description="Break-glass CloudTrail events for breakglass-watcher",
    )["RuleArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventBridgeRuleSends",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    events.put_targets(Rule=name, Targets=[{"Id": "watcher-queue", "Arn": queue_arn}])
    return Pipeline(queue_url, queue_arn, dlq_url, dlq_arn, name, rule_arn, region)


def deliver(
    endpoint_url: str,
    record: dict[str, Any],
    account: str | None = None,
    *,
    region: str = "us-east-1",
) -> None:
    """Put ``record`` on ``account``'s default bus in ``region`` as CloudTrail's EventBridge
    integration would (source, detail-type and time from the record)."""
    deliver_many(endpoint_url, [record], account, region=region)


def deliver_many(
    endpoint_url: str,
    records: Sequence[dict[str, Any]],
    account: str | None = None,
    *,
    region: str = "us-east-1",
) -> None:
    """:func:`deliver` for many records: one client, ten entries a ``PutEvents`` call."""
    events = account_client(endpoint_url, "events", region, account)
    for first in range(0, len(records), 10):
        entries = []
        for record in records[first : first + 10]:
            envelope = eventbridge_envelope(record)
            entries.append(
                {
                    "Source": envelope["source"],
                    "DetailType": envelope["detail-type"],
                    "Detail": json.dumps(record),
                    "Time": datetime.fromisoformat(str(record["eventTime"])),
                }
            )
        answer = events.put_events(Entries=entries)
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"put_events refused records: {answer['Entries']}")
