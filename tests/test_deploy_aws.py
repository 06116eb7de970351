"""deploy/aws: cfn-lint, the CloudFormation stacks created in moto, and the IAM policies.

The stacks are created through moto's CloudFormation and then sent CloudTrail events with
``put_events``. Only events of the break-glass principals may reach the queue. moto differs from
AWS in two ways, and ``for_moto`` changes the template for exactly these, nothing else:

- moto's CloudFormation has no model for ``AWS::SQS::QueuePolicy``,
  ``AWS::Events::EventBusPolicy`` or ``AWS::CloudWatch::Alarm`` (it logs "No Moto
  CloudFormation support" and skips them).
  They are dropped, and the queue policy is checked statically instead. moto's SQS does not
  enforce queue policies anyway.
- moto runs ``json.dumps`` on ``EventPattern`` even when the value is already a JSON string, and
  then fails to parse the result. AWS accepts a string: the resource schema types it
  ``["string", "object"]``. So when a test passes the ``EventPattern`` parameter, the template's
  ``Ref`` to it is replaced by the parsed JSON.
"""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from watcher.emulator.infra import account_client
from watcher.model import Principal, Rules
from watcher.render import eventbridge_pattern_json, eventbridge_patterns
from watcher.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent
AWS_DIR = ROOT / "deploy" / "aws"
CENTRAL = AWS_DIR / "eventbridge-to-sqs.yaml"
FORWARDER = AWS_DIR / "forwarder.yaml"
READER = AWS_DIR / "reader-role.yaml"
WATCHER_POLICY = AWS_DIR / "watcher-policy.json"
K8S_CONFIG = ROOT / "deploy" / "kubernetes" / "config" / "config.yaml"

ACCOUNT = "123456789012"  # moto's default account; also the manifests' example account
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"
USER_NAME = "break-glass-admin"
DECOY_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/deploy-pipeline"
MOTO_UNSUPPORTED = {
    "AWS::SQS::QueuePolicy",
    "AWS::Events::EventBusPolicy",
    "AWS::CloudWatch::Alarm",
}
API_CALL = "AWS API Call via CloudTrail"
SIGN_IN = "AWS Console Sign In via CloudTrail"

Template = dict[str, Any]


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short forms (``!Ref x``) into long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> Template:
    template: Template = yaml.load(path.read_text(), Loader=_CfnLoader)
    return template


def for_moto(template: Template, parameters: dict[str, str]) -> Template:
    """The template with the two moto-only changes described in the module docstring."""
    result = copy.deepcopy(template)
    result["Resources"] = {
        name: resource
        for name, resource in result["Resources"].items()
        if resource["Type"] not in MOTO_UNSUPPORTED
    }
    for resource in result["Resources"].values():
        properties = resource.get("Properties", {})
        pattern = properties.get("EventPattern", {})
        if_args = pattern.get("Fn::If")
        if if_args and if_args[1] == {"Ref": "EventPattern"} and parameters.get("EventPattern"):
            if_args[1] = json.loads(parameters["EventPattern"])
        name = pattern.get("Ref")
        if name and parameters.get(name):
            properties["EventPattern"] = json.loads(parameters[name])
    return result


def create_stack(
    endpoint: str,
    path: Path,
    parameters: dict[str, str],
    region: str = "us-east-1",
    account: str | None = None,
) -> dict[str, str]:
    """Create the stack in moto (in ``account``, else moto's default); returns its outputs."""
    cloudformation = account_client(endpoint, "cloudformation", region, account)
    name = f"{path.stem}-{uuid.uuid4().hex[:8]}"
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(for_moto(load_template(path), parameters)),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


CENTRAL_PARAMETERS = {"BreakGlassRoleArns": ROLE_ARN, "BreakGlassUserNames": USER_NAME}


def record(
    event_name: str,
    identity: dict[str, Any],
    *,
    event_source: str = "sts.amazonaws.com",
    request: dict[str, Any] | None = None,
    event_type: str = "AwsApiCall",
) -> dict[str, Any]:
    """A CloudTrail record as EventBridge carries it in ``detail``."""
    return {
        "eventVersion": "1.09",
        "userIdentity": {"accountId": ACCOUNT} | identity,
        "eventTime": "2026-11-26T14:05:00Z",
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.17",
        "requestParameters": request,
        "responseElements": None,
        "eventID": str(uuid.uuid4()),
        "readOnly": event_name.startswith(("Get", "List", "Describe", "AssumeRole")),
        "eventType": event_type,
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }


def iam_user(name: str) -> dict[str, Any]:
    return {
        "type": "IAMUser",
        "principalId": "AIDAEXAMPLE",
        "arn": f"arn:aws:iam::{ACCOUNT}:user/{name}",
        "userName": name,
    }


def assume_role(role_arn: str, caller: str = "alice") -> dict[str, Any]:
    return record(
        "AssumeRole",
        iam_user(caller),
        request={"roleArn": role_arn, "roleSessionName": "break-glass-exercise-1"},
    )


def session_call(role_arn: str) -> dict[str, Any]:
    role_name = role_arn.rsplit("/", 1)[-1]
    identity = {
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLE:break-glass-exercise-1",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/break-glass-exercise-1",
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": "AROAEXAMPLE",
                "arn": role_arn,
                "accountId": ACCOUNT,
                "userName": role_name,
            },
            "attributes": {"mfaAuthenticated": "false"},
        },
    }
    return record("ListBuckets", identity, event_source="s3.amazonaws.com")


def console_login(identity: dict[str, Any]) -> dict[str, Any]:
    login = record("ConsoleLogin", identity, event_source="signin.amazonaws.com")
    login["responseElements"] = {"ConsoleLogin": "Success"}
    login["additionalEventData"] = {"MFAUsed": "Yes"}
    return login


ROOT_IDENTITY = {
    "type": "Root",
    "principalId": ACCOUNT,
    "arn": f"arn:aws:iam::{ACCOUNT}:root",
}


def entry(detail: dict[str, Any], source: str | None = None) -> dict[str, str]:
    """A put_events entry shaped like CloudTrail's delivery to EventBridge."""
    service = detail["eventSource"].split(".", 1)[0]
    detail_type = SIGN_IN if detail["eventName"] == "ConsoleLogin" else API_CALL
    return {
        "Source": source or f"aws.{service}",
        "DetailType": detail_type,
        "Detail": json.dumps(detail),
    }


def deliver(endpoint: str, queue_url: str, entries: list[dict[str, str]], region: str) -> list[str]:
    """Put the events on the default bus of ``region``; the eventIDs that reached the queue."""
    events = boto3.client("events", endpoint_url=endpoint, region_name=region)
    answer = events.put_events(Entries=entries)
    assert answer["FailedEntryCount"] == 0, answer
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    received: list[str] = []
    wait = 1  # moto delivers within put_events; after the first batch, only drain the queue
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        ).get("Messages", [])
        wait = 0
        if not batch:
            return received
        for message in batch:
            received.append(json.loads(message["Body"])["detail"]["eventID"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.mark.slow  # runs cfn-lint
def test_cfn_lint_finds_nothing() -> None:
    templates = sorted(AWS_DIR.glob("*.yaml"))
    assert {t.name for t in templates} == {
        "dynamodb-table.yaml",
        "eventbridge-to-sqs.yaml",
        "forwarder.yaml",
        "organization-stacksets.yaml",
        "reader-role.yaml",
    }
    result = _cfn_lint(*templates)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.slow  # runs cfn-lint
def test_cfn_lint_rejects_a_wrong_rule_state(tmp_path: Path) -> None:
    """Guards the test above: cfn-lint knows the EventBridge rule states."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        CENTRAL.read_text().replace(
            "State: ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", "State: ENABLED_ALL", 1
        )
    )
    result = _cfn_lint(broken)
    assert result.returncode != 0
    assert "ENABLED_ALL" in result.stdout


def _cfn_lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow  # a stack in moto
def test_break_glass_assume_role_reaches_the_queue_and_a_decoy_does_not(
    moto_endpoint: str,
) -> None:
    outputs = create_stack(moto_endpoint, CENTRAL, CENTRAL_PARAMETERS)
    wanted, decoy = assume_role(ROLE_ARN), assume_role(DECOY_ROLE_ARN)
    received = deliver(
        moto_endpoint, outputs["QueueUrl"], [entry(wanted), entry(decoy)], "us-east-1"
    )
    assert received == [wanted["eventID"]]


@pytest.mark.slow  # every shape through moto's EventBridge to SQS
def test_sessions_and_sign_ins_are_forwarded_references_and_forgeries_are_not(
    moto_endpoint: str,
) -> None:
    outputs = create_stack(moto_endpoint, CENTRAL, CENTRAL_PARAMETERS)
    session = session_call(ROLE_ARN)
    sign_in = console_login(iam_user(USER_NAME))
    auditor = record(
        "GetRole",
        iam_user("auditor"),
        event_source="iam.amazonaws.com",
        request={"roleName": "break-glass-admin-role"},
    )
    other_sign_in = console_login(iam_user("alice"))
    other_session = session_call(DECOY_ROLE_ARN)
    forged = assume_role(ROLE_ARN)
    received = deliver(
        moto_endpoint,
        outputs["QueueUrl"],
        [
            entry(session),
            entry(sign_in),
            entry(auditor),
            entry(other_sign_in),
            entry(other_session),
            # Customers cannot send aws.* sources; a look-alike from elsewhere stays out.
            entry(forged, source="custom.cloudtrail"),
        ],
        "us-east-1",
    )
    assert sorted(received) == sorted([session["eventID"], sign_in["eventID"]])


def test_root_use_is_forwarded_unless_aws_acts_for_root(moto_endpoint: str) -> None:
    outputs = create_stack(moto_endpoint, CENTRAL, CENTRAL_PARAMETERS | {"MonitorRoot": "true"})
    sign_in = console_login(ROOT_IDENTITY)
    by_service = record(
        "PutBucketPolicy",
        ROOT_IDENTITY | {"invokedBy": "cloudformation.amazonaws.com"},
        event_source="s3.amazonaws.com",
    )
    service_event = record("CredentialChallenge", ROOT_IDENTITY, event_type="AwsServiceEvent")
    received = deliver(
        moto_endpoint,
        outputs["QueueUrl"],
        [entry(sign_in), entry(by_service), entry(service_event)],
        "us-east-1",
    )
    assert received == [sign_in["eventID"]]


@pytest.mark.slow  # a stack in moto
def test_root_monitoring_off_creates_no_root_rule(moto_endpoint: str) -> None:
    outputs = create_stack(moto_endpoint, CENTRAL, CENTRAL_PARAMETERS | {"MonitorRoot": "false"})
    received = deliver(
        moto_endpoint, outputs["QueueUrl"], [entry(console_login(ROOT_IDENTITY))], "us-east-1"
    )
    assert received == []
    events = boto3.client("events", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert len(events.list_rules()["Rules"]) == 1


def test_rules_queue_and_dead_letter_queue_settings(moto_endpoint: str) -> None:
    outputs = create_stack(moto_endpoint, CENTRAL, CENTRAL_PARAMETERS)
    events = boto3.client("events", endpoint_url=moto_endpoint, region_name="us-east-1")
    rules = events.list_rules()["Rules"]
    assert len(rules) == 2
    for rule in rules:
        # Plain ENABLED would skip read-only management events such as AssumeRole.
        assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
        (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert target["Arn"] == outputs["QueueArn"]
        assert target["DeadLetterConfig"]["Arn"] == outputs["DeadLetterQueueArn"]
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    attributes = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == outputs["DeadLetterQueueArn"]
    assert int(redrive["maxReceiveCount"]) >= 3
    assert attributes["SqsManagedSseEnabled"] == "true"
    assert attributes["MessageRetentionPeriod"] == "1209600"


def test_the_dead_letter_queue_raises_an_alarm() -> None:
    """Checked statically: moto's CloudFormation cannot create CloudWatch alarms."""
    alarm = load_template(CENTRAL)["Resources"]["DeadLetterQueueAlarm"]["Properties"]
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_forwarder_targets_have_a_dead_letter_queue_with_an_alarm(moto_endpoint: str) -> None:
    """Every forwarding target keeps what the central bus refuses, and an alarm says so (the
    alarm checked statically: moto's CloudFormation cannot create it)."""
    resources = load_template(FORWARDER)["Resources"]
    rules = [r for r in resources.values() if r["Type"] == "AWS::Events::Rule"]
    assert len(rules) == 5
    for rule in rules:
        for target in rule["Properties"]["Targets"]:
            assert target["DeadLetterConfig"] == {
                "Arn": {"Fn::GetAtt": ["ForwarderDeadLetterQueue", "Arn"]}
            }
    alarm = resources["ForwarderDeadLetterQueueAlarm"]["Properties"]
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ForwarderDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    (allow,) = resources["ForwarderDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    outputs = create_stack(
        moto_endpoint,
        FORWARDER,
        {
            "CentralEventBusArn": f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default",
            "BreakGlassRoleArns": ROLE_ARN,
            "BreakGlassUserNames": USER_NAME,
        },
        region="eu-west-1",
    )
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="eu-west-1")
    url = outputs["ForwarderDeadLetterQueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "1209600"


def test_outputs_match_the_example_config_and_the_watcher_policy(moto_endpoint: str) -> None:
    outputs = create_stack(moto_endpoint, CENTRAL, CENTRAL_PARAMETERS)
    config = yaml.safe_load(K8S_CONFIG.read_text())
    assert config["sources"]["eventbridge"]["queue_url"] == outputs["QueueUrl"]
    assert statement("ConsumeBreakGlassEventQueue")["Resource"] == outputs["QueueArn"]


def test_rendered_pattern_parameter_replaces_the_built_pattern(moto_endpoint: str) -> None:
    """`render eventbridge-pattern` output as the EventPattern parameter (names ignore case)."""
    pattern = eventbridge_pattern_json(load_rules(ROOT / "deploy" / "kubernetes" / "rules"))
    outputs = create_stack(
        moto_endpoint, CENTRAL, {"EventPattern": pattern, "MonitorRoot": "false"}
    )
    other_case = console_login(iam_user("Break-Glass-Admin"))
    assumed = assume_role(ROLE_ARN)
    decoy = assume_role(DECOY_ROLE_ARN)
    received = deliver(
        moto_endpoint,
        outputs["QueueUrl"],
        [entry(other_case), entry(assumed), entry(decoy)],
        "us-east-1",
    )
    assert sorted(received) == sorted([other_case["eventID"], assumed["eventID"]])


def test_rendered_patterns_take_one_rule_each(moto_endpoint: str) -> None:
    """Principals that need several patterns (issue 11, point 9): one rule per pattern."""
    roles = [f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-{i:03}" for i in range(90)]
    rules = Rules(
        principals=tuple(
            Principal(f"r{i}", "role", ACCOUNT, iam_names=(arn.rsplit("/", 1)[-1],), arn=arn)
            for i, arn in enumerate(roles)
        ),
        exercises=(),
    )
    patterns = [json.dumps(p) for p in eventbridge_patterns(rules)]
    assert len(patterns) == 3
    parameters = {"EventPattern": patterns[0], "EventPattern2": patterns[1]}
    parameters |= {"EventPattern3": patterns[2], "MonitorRoot": "false"}
    outputs = create_stack(moto_endpoint, CENTRAL, parameters)
    first, last = assume_role(roles[0]), assume_role(roles[-1])
    decoy = assume_role(DECOY_ROLE_ARN)
    received = deliver(
        moto_endpoint, outputs["QueueUrl"], [entry(first), entry(last), entry(decoy)], "us-east-1"
    )
    assert sorted(received) == sorted([first["eventID"], last["eventID"]])


def test_root_rule_forwards_the_console_acting_for_root(moto_endpoint: str) -> None:
    outputs = create_stack(moto_endpoint, CENTRAL, CENTRAL_PARAMETERS)
    console = record("StartLogging", ROOT_IDENTITY | {"invokedBy": "signin.amazonaws.com"})
    service = record("StartLogging", ROOT_IDENTITY | {"invokedBy": "support.amazonaws.com"})
    received = deliver(
        moto_endpoint, outputs["QueueUrl"], [entry(console), entry(service)], "us-east-1"
    )
    assert received == [console["eventID"]]


def test_forwarder_delivers_another_regions_events_to_the_central_queue(
    moto_endpoint: str,
) -> None:
    central = create_stack(moto_endpoint, CENTRAL, CENTRAL_PARAMETERS)
    create_stack(
        moto_endpoint,
        FORWARDER,
        CENTRAL_PARAMETERS | {"CentralEventBusArn": central["EventBusArn"]},
        region="eu-west-1",
    )
    wanted, decoy = session_call(ROLE_ARN), session_call(DECOY_ROLE_ARN)
    received = deliver(
        moto_endpoint, central["QueueUrl"], [entry(wanted), entry(decoy)], "eu-west-1"
    )
    assert received == [wanted["eventID"]]


def test_forwarder_matches_exactly_what_the_central_rules_match() -> None:
    central = load_template(CENTRAL)["Resources"]
    forwarder = load_template(FORWARDER)["Resources"]
    for rule in (
        "PrincipalsRule",
        "PrincipalsRule2",
        "PrincipalsRule3",
        "PrincipalsRule4",
        "RootRule",
    ):
        assert (
            forwarder[rule]["Properties"]["EventPattern"]
            == (central[rule]["Properties"]["EventPattern"])
        )
        assert forwarder[rule]["Properties"]["State"] == central[rule]["Properties"]["State"]
        assert forwarder[rule].get("Condition") == central[rule].get("Condition")


def test_queue_policy_admits_only_these_rules_over_tls() -> None:
    resources = load_template(CENTRAL)["Resources"]
    policy = resources["QueuePolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "Queue"}, {"Ref": "DeadLetterQueue"}]
    allow, only_rules, deny = policy["PolicyDocument"]["Statement"]
    assert allow["Effect"] == "Allow"
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        {"Fn::GetAtt": ["PrincipalsRule", "Arn"]},
        *(
            {
                "Fn::If": [
                    f"UsePattern{n}",
                    {"Fn::GetAtt": [f"PrincipalsRule{n}", "Arn"]},
                    {"Ref": "AWS::NoValue"},
                ]
            }
            for n in (2, 3, 4)
        ),
        {"Fn::If": ["WatchRoot", {"Fn::GetAtt": ["RootRule", "Arn"]}, {"Ref": "AWS::NoValue"}]},
    ]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # Issue 12: principals of the account with sqs:* must not inject records.
    assert (only_rules["Effect"], only_rules["Principal"], only_rules["Action"]) == (
        "Deny",
        "*",
        "sqs:SendMessage",
    )
    assert only_rules["Resource"] == allow["Resource"]
    assert (
        only_rules["Condition"]["ArnNotEquals"]["aws:SourceArn"]
        == (allow["Condition"]["ArnEquals"]["aws:SourceArn"])
    )
    assert only_rules["Condition"]["ArnNotLike"] == {
        "Fn::If": [
            "HasQueueWriters",
            {"aws:PrincipalArn": {"Ref": "QueueWriterRoleArns"}},
            {"Ref": "AWS::NoValue"},
        ]
    }


def test_bus_policies_exist_only_when_forwarding_is_allowed() -> None:
    resources = load_template(CENTRAL)["Resources"]
    bus_policies = {
        name: r for name, r in resources.items() if r["Type"] == "AWS::Events::EventBusPolicy"
    }
    assert {r["Condition"] for r in bus_policies.values()} == {
        "AllowOrganization",
        "AllowAccounts",
    }
    organization = bus_policies["OrganizationBusPolicy"]["Properties"]["Statement"]
    assert organization["Action"] == "events:PutEvents"
    assert organization["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": {"Ref": "ForwardingOrganizationId"}}
    }


def statement(sid: str) -> dict[str, Any]:
    (found,) = [s for s in json.loads(WATCHER_POLICY.read_text())["Statement"] if s["Sid"] == sid]
    result: dict[str, Any] = found
    return result


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def test_watcher_policy_grants_no_wildcard_action() -> None:
    """Which actions: tests/test_least_privilege.py derives them from the recorded calls."""
    policy = json.loads(WATCHER_POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    granted = set().union(*(_actions(s) for s in policy["Statement"]))
    assert not [a for a in granted if "*" in a]


def test_watcher_policy_scopes_resources() -> None:
    queue_arn = statement("ConsumeBreakGlassEventQueue")["Resource"]
    queue_name = load_template(CENTRAL)["Parameters"]["QueueName"]["Default"]
    assert queue_arn.startswith("arn:aws:sqs:") and queue_arn.endswith(f":{queue_name}")
    kms = statement("DecryptQueueMessagesIfSseKms")["Condition"]["StringEquals"]
    dlq_arn = statement("ConsumeDeadLetterQueueAsSecondChance")["Resource"]
    assert dlq_arn == f"{queue_arn}-dlq"  # the template's QueueName-dlq
    assert kms["kms:EncryptionContext:aws:sqs:arn"] == [queue_arn, dlq_arn]
    assert kms["kms:ViaService"].startswith("sqs.")
    reader_name = load_template(READER)["Parameters"]["RoleName"]["Default"]
    assert statement("AssumeReaderRolesOfWatchedAccounts")["Resource"] == (
        f"arn:aws:iam::*:role/{reader_name}"
    )
    # LookupEvents and GetAccountAuthorizationDetails have no resource-level permissions; the
    # per-user credential reads are scoped to the account's users.
    assert statement("ReadBreakGlassUsersCredentials")["Resource"] == (
        f"arn:aws:iam::{ACCOUNT}:user/*"
    )


def test_reader_role_grants_the_watcher_policy_reads(moto_endpoint: str) -> None:
    watcher_role = f"arn:aws:iam::{ACCOUNT}:role/breakglass-watcher"
    outputs = create_stack(
        moto_endpoint, READER, {"WatcherRoleArn": watcher_role}, region="us-east-1"
    )
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")
    role_name = outputs["ReaderRoleArn"].rsplit("/", 1)[-1]
    assert role_name == "breakglass-watcher-reader"
    trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    (trusted,) = trust["Statement"]
    assert trusted["Principal"] == {"AWS": watcher_role}
    (policy_name,) = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    if isinstance(document, str):
        # moto's CloudFormation stores an inline role policy as str(dict), a Python repr that
        # botocore cannot decode as JSON; AWS returns the JSON document.
        document = ast.literal_eval(document)
    # The stack deploys the template's policy (whose actions tests/test_least_privilege.py
    # derives from the recorded calls).
    granted = set().union(*(_actions(s) for s in document["Statement"]))
    assert "iam:GetAccountSummary" in granted and not [a for a in granted if "*" in a]
    canary = iam.get_role(RoleName="breakglass-watcher-canary")["Role"]
    (trusted,) = canary["AssumeRolePolicyDocument"]["Statement"]
    assert trusted["Principal"] == {"AWS": outputs["ReaderRoleArn"]}
    assert iam.list_role_policies(RoleName="breakglass-watcher-canary")["PolicyNames"] == []
    assert (
        iam.list_attached_role_policies(RoleName="breakglass-watcher-canary")["AttachedPolicies"]
        == []
    )
