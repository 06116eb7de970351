"""AwsClients against moto: ambient credentials, the assume-role path, one attempt per call."""

from __future__ import annotations

import json
import ssl
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.sts.models import sts_backends

from watcher.aws import ROLE_SESSION_NAME, AwsClients
from watcher.emulator.server import Emulator
from watcher.settings import Account

READER = "arn:aws:iam::111111111111:role/breakglass-watcher-reader"


async def test_ambient_credentials_act_in_the_default_account(moto_endpoint: str) -> None:
    async with AwsClients(moto_endpoint).client("sts", "us-east-1") as sts:
        me = await sts.get_caller_identity()
    assert me["Account"] == "123456789012"


def _create_reader_role(endpoint_url: str) -> None:
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint_url)

    def in_reader_account(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = "111111111111"

    iam.meta.events.register("before-sign", in_reader_account)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(
        RoleName="breakglass-watcher-reader", AssumeRolePolicyDocument=json.dumps(trust)
    )


async def test_an_account_with_a_role_is_read_through_that_role(emulator: Emulator) -> None:
    _create_reader_role(emulator.endpoint_url)
    clients = AwsClients(emulator.endpoint_url)
    account = Account(id="111111111111", regions=("eu-west-1",), role_arn=READER)
    async with clients.client("sts", "eu-west-1", account) as sts:
        me = await sts.get_caller_identity()
    assert me["Account"] == "111111111111"
    assert me["Arn"] == (
        f"arn:aws:sts::111111111111:assumed-role/breakglass-watcher-reader/{ROLE_SESSION_NAME}"
    )

    # The role's credentials are cached: later clients assume nothing again.
    async with clients.client("cloudtrail", "eu-west-1", account) as cloudtrail:
        await cloudtrail.lookup_events()
    [call] = emulator.lookup.calls()
    assert (call.account, call.region) == ("111111111111", "eu-west-1")
    async with clients.client("sts", "eu-west-1", account) as sts:
        await sts.get_caller_identity()
    # moto's server runs in this process: its STS backend lists every assumption.
    assert len(sts_backends["111111111111"]["aws"].assumed_roles) == 1


async def test_an_account_without_a_role_uses_ambient_credentials(moto_endpoint: str) -> None:
    account = Account(id="123456789012", regions=("us-east-1",))
    async with AwsClients(moto_endpoint).client("sts", "us-east-1", account) as sts:
        me = await sts.get_caller_identity()
    assert me["Arn"].endswith(":user/moto")


async def test_botocore_does_not_retry_behind_our_back(emulator: Emulator) -> None:
    emulator.lookup.force_throttles(1)
    async with AwsClients(emulator.endpoint_url).client("cloudtrail", "us-east-1") as cloudtrail:
        with pytest.raises(ClientError) as caught:
            await cloudtrail.lookup_events()
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert len(emulator.lookup.calls()) == 1


async def test_every_client_shares_one_tls_context(emulator: Emulator) -> None:
    """Each client would otherwise load the CA bundle into a TLS context of its own (about
    0.8 MB each). Read from aiobotocore's HTTP session and aiohttp's connector (no public
    accessor): this breaks loudly if an aiobotocore upgrade stops calling the override."""
    clients = AwsClients(emulator.endpoint_url)
    contexts = []
    for region, account in [("us-east-1", None), ("eu-west-1", "111111111111")]:
        role = f"arn:aws:iam::{account}:role/r" if account else None
        owner = Account(account, (region,), role_arn=role) if account else None
        async with clients.client("cloudtrail", region, owner) as cloudtrail:
            await cloudtrail.lookup_events()
            [session] = cloudtrail._endpoint.http_session._sessions.values()
            contexts.append(session.connector._ssl)
    assert isinstance(contexts[0], ssl.SSLContext) and contexts[1] is contexts[0]
