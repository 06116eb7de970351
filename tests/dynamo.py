"""The DynamoDB state table in moto, made from deploy/aws/dynamodb-table.yaml's own properties.

Tests and benchmarks create it with ``create_table`` (a plain CreateTable with the template's
keys, indexes and billing mode, then its TTL setting); ``test_deploy_dynamodb.py`` also creates
the whole stack through moto's CloudFormation.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "aws" / "dynamodb-table.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads the short forms (``!Ref x``) as plain tagged values; the table needs none."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: node.value})


def table_properties() -> dict[str, Any]:
    template = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    properties: dict[str, Any] = template["Resources"]["Table"]["Properties"]
    return properties


def create_table(endpoint: str, name: str | None = None, region: str = "us-east-1") -> str:
    """Create a state table (a fresh name unless given); returns its name."""
    name = name or f"watcher-{uuid.uuid4().hex[:12]}"
    p = table_properties()
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
    client.create_table(
        TableName=name,
        AttributeDefinitions=p["AttributeDefinitions"],
        KeySchema=p["KeySchema"],
        GlobalSecondaryIndexes=p["GlobalSecondaryIndexes"],
        BillingMode=p["BillingMode"],
    )
    client.update_time_to_live(TableName=name, TimeToLiveSpecification=p["TimeToLiveSpecification"])
    return name
