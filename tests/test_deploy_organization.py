"""deploy/aws/organization-stacksets.yaml: the reader role and the forwarder in every account of
an organization, through service-managed StackSets, and the management account's reader role.

moto's CloudFormation has no ``AWS::CloudFormation::StackSet`` resource, so the test creates
each StackSet of the template through moto's StackSet API with the template's own properties
(permission model, auto-deployment, capabilities, parameters, targets) and the templates the
StackSet points to. moto's service-managed StackSet also deploys to the management account,
which AWS skips; the test reads the member accounts.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from test_deploy_aws import (
    AWS_DIR,
    READER,
    _actions,
    _cfn_lint,
    create_stack,
    for_moto,
    load_template,
)

from watcher.accounts import resolve
from watcher.aws import AwsClients
from watcher.config import parse_config
from watcher.emulator.server import Emulator

STACKSETS = AWS_DIR / "organization-stacksets.yaml"
FORWARDER = AWS_DIR / "forwarder.yaml"
WATCHER_ROLE = "arn:aws:iam::123456789012:role/breakglass-watcher"
PATTERN = json.dumps({"source": ["aws.sts"], "detail": {"eventName": ["AssumeRole"]}})


def test_cfn_lint_finds_nothing_in_the_stacksets() -> None:
    result = _cfn_lint(STACKSETS)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout


def _stack_set(
    cloudformation: Any, resource: dict[str, Any], template: Path, values: dict[str, Any]
) -> None:
    """Create one StackSet resource of the template through the StackSet API."""
    properties = resource["Properties"]
    parameters = {
        p["ParameterKey"]: values[p["ParameterValue"]["Ref"]] for p in properties["Parameters"]
    }
    cloudformation.create_stack_set(
        StackSetName=properties["StackSetName"],
        TemplateBody=json.dumps(for_moto(load_template(template), parameters)),
        PermissionModel=properties["PermissionModel"],
        AutoDeployment=properties["AutoDeployment"],
        Capabilities=properties["Capabilities"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    (group,) = properties["StackInstancesGroup"]
    regions = group["Regions"]
    cloudformation.create_stack_instances(
        StackSetName=properties["StackSetName"],
        DeploymentTargets={"OrganizationalUnitIds": values["OrganizationalUnitIds"]},
        Regions=values[regions["Ref"]] if isinstance(regions, dict) else [values["ReaderRegion"]],
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
async def test_stacksets_put_the_reader_and_forwarders_into_every_member(
    emulator: Emulator, tmp_path: Path
) -> None:
    endpoint = emulator.endpoint_url
    orgs = boto3.client("organizations", region_name="us-east-1", endpoint_url=endpoint)
    orgs.create_organization(FeatureSet="ALL")
    root = orgs.list_roots()["Roots"][0]["Id"]
    members = [
        orgs.create_account(AccountName=f"m{n}", Email=f"m{n}@example.com")["CreateAccountStatus"][
            "AccountId"
        ]
        for n in range(2)
    ]
    template = load_template(STACKSETS)
    values = {
        "OrganizationalUnitIds": [root],
        "WatcherRoleArn": WATCHER_ROLE,
        "ReaderRegion": template["Parameters"]["ReaderRegion"]["Default"],
        "ForwarderRegions": ["us-east-1", "eu-west-1"],
        "CentralEventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/default",
        "EventPattern": PATTERN,
    }
    cloudformation = boto3.client("cloudformation", region_name="us-east-1", endpoint_url=endpoint)
    resources = template["Resources"]
    _stack_set(cloudformation, resources["ReaderStackSet"], READER, values)
    _stack_set(cloudformation, resources["ForwarderStackSet"], FORWARDER, values)

    forwarders = cloudformation.list_stack_instances(StackSetName="breakglass-watcher-forwarder")
    placed = {(s["Account"], s["Region"]) for s in forwarders["Summaries"]}
    assert {(m, r) for m in members for r in values["ForwarderRegions"]} <= placed

    # The watcher reads every member through the role the StackSet created.
    role_name = template["Outputs"]["ReaderRoleName"]["Value"]
    config = parse_config(
        {
            "rules": "r",
            "endpoint_url": endpoint,
            "regions": "all",
            "accounts": {"organization": {"role_name": role_name}},
            "sources": {"lookup": {}},
        },
        label="c.yaml",
        base_dir=tmp_path,
    )
    result = await resolve(AwsClients(endpoint), config, {})
    by_id = {a.id: a for a in result.accounts}
    assert set(members) <= set(by_id) and not result.problems
    assert all("eu-west-1" in by_id[m].regions for m in members)


def test_the_management_accounts_reader_may_list_the_organization(moto_endpoint: str) -> None:
    outputs = create_stack(
        moto_endpoint, READER, {"WatcherRoleArn": WATCHER_ROLE, "ReadOrganization": "true"}
    )
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")
    role = outputs["ReaderRoleArn"].rsplit("/", 1)[-1]
    policies = iam.list_role_policies(RoleName=role)["PolicyNames"]
    assert sorted(policies) == ["breakglass-watcher-list-organization", "breakglass-watcher-read"]
    granted: set[str] = set()
    for policy in policies:
        document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
        if isinstance(document, str):  # moto stores str(dict); see test_deploy_aws.py
            document = ast.literal_eval(document)
        granted |= set().union(*(_actions(s) for s in document["Statement"]))
    assert {"organizations:ListAccounts", "organizations:DescribeOrganization"} <= granted
