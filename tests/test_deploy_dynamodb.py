"""deploy/aws/dynamodb-table.yaml: created through moto's CloudFormation, the store runs on the
table it makes, and its policy grants exactly the calls the store makes.

moto's CloudFormation creates the table's keys, indexes and billing mode but ignores its
TimeToLiveSpecification, SSESpecification and point-in-time recovery: those are checked in the
template (tests/dynamo.py's tables, made from the same properties, switch TTL on by its own call).
"""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from dynamo import TEMPLATE
from stored import NOW, T0, big_batch
from test_deploy_aws import create_stack, load_template

from watcher.store.dynamodb import DynamoDbStore

#: IAM actions behind each operation the store sends (a transaction needs those of its items).
ACTIONS = {
    "batch_get_item": {"dynamodb:BatchGetItem"},
    "delete_item": {"dynamodb:DeleteItem"},
    "describe_table": {"dynamodb:DescribeTable"},
    "get_item": {"dynamodb:GetItem"},
    "put_item": {"dynamodb:PutItem"},
    "query": {"dynamodb:Query"},
    "transact_write_items": {"dynamodb:PutItem", "dynamodb:UpdateItem"},
    "update_item": {"dynamodb:UpdateItem"},
}


@pytest.mark.slow  # a stack in moto
async def test_the_stack_makes_a_table_the_store_works_on(moto_endpoint: str) -> None:
    outputs = create_stack(moto_endpoint, TEMPLATE, {"TableName": "bgw-state"})
    assert outputs["TableName"] == "bgw-state"
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    table = client.describe_table(TableName="bgw-state")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    store = DynamoDbStore("bgw-state", "us-east-1", endpoint_url=moto_endpoint)
    await store.open()
    try:
        # Every operation the store has, so its requests name every call it makes.
        await store.commit(big_batch(30), now=NOW)
        await store.set_checkpoints({"lookup:x": "1"})
        assert await store.checkpoint("lookup:x") == "1"
        await store.first_seen("exercise", "q", NOW)
        assert await store.first_seen_at("exercise", "q") == NOW
        assert await store.forget_first_seen("exercise", []) == 1
        assert await store.decide_window("q", T0, T0 + timedelta(hours=4), "detected", NOW)
        assert await store.drill_events_in("q", T0, T0 + timedelta(hours=4)) == 10
        assert len(await store.recent_events(5)) == 5
        assert sum((await store.totals()).events.values()) == 30
        await store.prune(NOW)
        used = set(store.requests)
    finally:
        await store.close()
    needed = set().union(*(ACTIONS[operation] for operation in used))
    (statement,) = load_template(TEMPLATE)["Resources"]["WatcherTablePolicy"]["Properties"][
        "PolicyDocument"
    ]["Statement"]
    assert set(statement["Action"]) == needed
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["Table", "Arn"]},
        {"Fn::Sub": "${Table.Arn}/index/*"},
    ]


def test_the_table_keeps_its_data() -> None:
    table = load_template(TEMPLATE)["Resources"]["Table"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    properties = table["Properties"]
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["DeletionProtectionEnabled"] is True
    assert properties["SSESpecification"]["SSEEnabled"] is True
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
