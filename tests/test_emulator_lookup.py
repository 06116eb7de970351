"""The LookupEvents emulator through moto's server and the production aiobotocore client."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from watcher.aws import AwsClients
from watcher.emulator.lookup import INTERNAL_FAILURE, Fault
from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    console_login_record,
    iam_user_identity,
    root_identity,
)
from watcher.emulator.server import Emulator

ACCOUNT = "123456789012"
OTHER = "210987654321"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
Client = Any


async def _all(client: Client, **params: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async for page in client.get_paginator("lookup_events").paginate(**params):
        events.extend(page["Events"])
    return events


def _ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["EventId"] for e in events]


@pytest.fixture
async def cloudtrail(emulator: Emulator) -> Any:
    async with AwsClients(emulator.endpoint_url).client("cloudtrail", "us-east-1") as client:
        yield client


async def test_each_lookup_attribute_selects_what_aws_would(
    emulator: Emulator, cloudtrail: Client
) -> None:
    emulator.lookup.rate_per_second = 1000
    alice = iam_user_identity(ACCOUNT, "alice", "AKIAALICE0000000000A")
    assume = assume_role_record(
        caller=alice,
        role_arn=ROLE,
        session_name="drill-1",
        event_time=T0,
        issued_access_key_id="ASIASESSION000000001",
        event_id="assume",
    )
    session_call = api_call_record(
        identity=assumed_role_identity(ROLE, "drill-1", "ASIASESSION000000001"),
        event_name="ListBuckets",
        event_source="s3.amazonaws.com",
        account=ACCOUNT,
        event_time=T0 + timedelta(minutes=1),
        event_id="session-call",
    )
    login = console_login_record(
        identity=alice, success=False, mfa_used=False, event_time=T0, event_id="login"
    )
    root_call = api_call_record(
        identity=root_identity(ACCOUNT),
        event_name="CreateUser",
        event_source="iam.amazonaws.com",
        account=ACCOUNT,
        event_time=T0,
        read_only=False,
        event_id="root",
    )
    elsewhere = api_call_record(
        identity=alice,
        event_name="ListUsers",
        event_source="iam.amazonaws.com",
        account=ACCOUNT,
        event_time=T0,
        region="eu-west-1",
        event_id="other-region",
    )
    other_account = api_call_record(
        identity=iam_user_identity(OTHER, "alice"),
        event_name="ListUsers",
        event_source="iam.amazonaws.com",
        account=OTHER,
        event_time=T0,
        event_id="other-account",
    )
    for record in (assume, session_call, login, root_call, elsewhere, other_account):
        emulator.lookup.add(record)

    async def by(key: str, value: str) -> set[str]:
        found = await _all(
            cloudtrail, LookupAttributes=[{"AttributeKey": key, "AttributeValue": value}]
        )
        return set(_ids(found))

    assert await by("Username", "alice") == {"assume", "login"}  # the caller of AssumeRole
    assert await by("Username", "drill-1") == {"session-call"}  # a session: its name
    assert await by("Username", "root") == {"root"}
    assert await by("ResourceName", ROLE) == {"assume"}
    assert await by("AccessKeyId", "ASIASESSION000000001") == {"session-call"}
    assert await by("EventName", "ConsoleLogin") == {"login"}
    assert await by("EventId", "root") == {"root"}
    assert await by("ReadOnly", "false") == {"login", "root"}
    assert await by("EventSource", "s3.amazonaws.com") == {"session-call"}
    assert await by("ResourceType", "AWS::IAM::Role") == {"assume"}
    assert set(_ids(await _all(cloudtrail))) == {"assume", "session-call", "login", "root"}

    [item] = await _all(
        cloudtrail, LookupAttributes=[{"AttributeKey": "EventId", "AttributeValue": "assume"}]
    )
    assert item["EventTime"] == T0  # botocore parsed the wire timestamp back
    assert json.loads(item["CloudTrailEvent"]) == assume


async def test_time_bounds_are_inclusive_and_results_newest_first(
    emulator: Emulator, cloudtrail: Client
) -> None:
    emulator.lookup.rate_per_second = 1000
    alice = iam_user_identity(ACCOUNT, "alice")
    for minute in range(5):
        emulator.lookup.add(
            api_call_record(
                identity=alice,
                event_name="GetUser",
                event_source="iam.amazonaws.com",
                account=ACCOUNT,
                event_time=T0 + timedelta(minutes=minute),
                event_id=f"m{minute}",
            )
        )
    found = await _all(
        cloudtrail, StartTime=T0 + timedelta(minutes=1), EndTime=T0 + timedelta(minutes=3)
    )
    assert _ids(found) == ["m3", "m2", "m1"]


async def test_paging_over_many_events_with_one_timestamp(
    emulator: Emulator, cloudtrail: Client
) -> None:
    emulator.lookup.rate_per_second = 1000
    alice = iam_user_identity(ACCOUNT, "alice")
    for i in range(120):
        emulator.lookup.add(
            api_call_record(
                identity=alice,
                event_name="GetUser",
                event_source="iam.amazonaws.com",
                account=ACCOUNT,
                event_time=T0 + timedelta(seconds=i // 60),
                event_id=f"e{i:03}",
            )
        )
    pages = [
        page
        async for page in cloudtrail.get_paginator("lookup_events").paginate(
            StartTime=T0, EndTime=T0 + timedelta(hours=1)
        )
    ]
    assert [len(p["Events"]) for p in pages] == [50, 50, 20]
    ids = [e["EventId"] for p in pages for e in p["Events"]]
    assert sorted(ids) == [f"e{i:03}" for i in range(120)]
    times = [e["EventTime"] for p in pages for e in p["Events"]]
    assert times == sorted(times, reverse=True)

    small = await cloudtrail.lookup_events(MaxResults=7)
    assert len(small["Events"]) == 7 and "NextToken" in small


async def test_a_token_is_bound_to_its_parameters(emulator: Emulator, cloudtrail: Client) -> None:
    emulator.lookup.rate_per_second = 1000
    alice = iam_user_identity(ACCOUNT, "alice")
    for _ in range(3):
        emulator.lookup.add(
            api_call_record(
                identity=alice,
                event_name="GetUser",
                event_source="iam.amazonaws.com",
                account=ACCOUNT,
                event_time=T0,
            )
        )
    first = await cloudtrail.lookup_events(MaxResults=1, StartTime=T0, EndTime=T0)
    with pytest.raises(ClientError) as caught:
        await cloudtrail.lookup_events(
            MaxResults=1,
            StartTime=T0,
            EndTime=T0 + timedelta(seconds=1),
            NextToken=first["NextToken"],
        )
    assert caught.value.response["Error"]["Code"] == "InvalidNextTokenException"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (
            {
                "LookupAttributes": [
                    {"AttributeKey": "Username", "AttributeValue": "a"},
                    {"AttributeKey": "EventName", "AttributeValue": "b"},
                ]
            },
            "InvalidLookupAttributesException",
        ),
        (
            {"LookupAttributes": [{"AttributeKey": "Colour", "AttributeValue": "a"}]},
            "InvalidLookupAttributesException",
        ),
        ({"StartTime": T0, "EndTime": T0 - timedelta(seconds=1)}, "InvalidTimeRangeException"),
        ({"MaxResults": 51}, "InvalidMaxResultsException"),
    ],
)
async def test_invalid_requests_get_the_documented_errors(
    emulator: Emulator, cloudtrail: Client, params: dict[str, Any], code: str
) -> None:
    emulator.lookup.rate_per_second = 1000
    with pytest.raises(ClientError) as caught:
        await cloudtrail.lookup_events(**params)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_calls_over_the_rate_are_throttled_and_logged(
    emulator: Emulator, cloudtrail: Client
) -> None:
    emulator.lookup.rate_per_second = 2
    outcomes = []
    for _ in range(3):
        try:
            await cloudtrail.lookup_events()
            outcomes.append("ok")
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert exc.response["Error"]["Message"] == "Rate exceeded"
            outcomes.append(exc.response["Error"]["Code"])
    assert outcomes == ["ok", "ok", "ThrottlingException"]
    calls = emulator.lookup.calls(ACCOUNT, "us-east-1")
    assert [c.outcome for c in calls] == outcomes
    assert calls[0].at <= calls[1].at <= calls[2].at
    assert emulator.lookup.calls(ACCOUNT, "eu-west-1") == []

    # Another region of the same account has its own budget.
    async with AwsClients(emulator.endpoint_url).client("cloudtrail", "eu-west-1") as eu:
        await eu.lookup_events()
    assert [c.outcome for c in emulator.lookup.calls(region="eu-west-1")] == ["ok"]


async def test_injected_faults(emulator: Emulator, cloudtrail: Client) -> None:
    emulator.lookup.rate_per_second = 1000
    emulator.lookup.force_throttles(2)
    emulator.lookup.inject(INTERNAL_FAILURE)
    codes = []
    for _ in range(3):
        with pytest.raises(ClientError) as caught:
            await cloudtrail.lookup_events()
        codes.append(
            (
                caught.value.response["Error"]["Code"],
                caught.value.response["ResponseMetadata"]["HTTPStatusCode"],
            )
        )
    assert codes == [("ThrottlingException", 400)] * 2 + [("InternalFailure", 500)]
    await cloudtrail.lookup_events()

    emulator.lookup.inject(Fault("AccessDeniedException", "no"), times=None)
    for _ in range(2):
        with pytest.raises(ClientError):
            await cloudtrail.lookup_events()
    emulator.lookup.clear_faults()
    await cloudtrail.lookup_events()


async def test_events_appear_after_the_delivery_delay(
    emulator: Emulator, cloudtrail: Client
) -> None:
    emulator.lookup.rate_per_second = 1000
    emulator.lookup.delivery_delay = 3.0  # long enough for a loaded machine
    emulator.lookup.add(
        api_call_record(
            identity=iam_user_identity(ACCOUNT, "alice"),
            event_name="GetUser",
            event_source="iam.amazonaws.com",
            account=ACCOUNT,
            event_time=T0,
            event_id="late",
        )
    )
    assert (await cloudtrail.lookup_events())["Events"] == []
    async with asyncio.timeout(15):
        while True:  # the store's clock is real: wait for the delay to pass
            if (await cloudtrail.lookup_events())["Events"]:
                break
            await asyncio.sleep(0.05)
    assert len(emulator.lookup.calls()) >= 2
