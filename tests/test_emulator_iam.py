"""The emulator pages GetAccountAuthorizationDetails as AWS documents it (``emulator/iam.py``);
moto alone answers everything in one page, whatever ``MaxItems``."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from watcher.emulator.server import Emulator


@pytest.fixture
def iam(emulator: Emulator) -> Any:
    # One attempt: boto3's own retries would hide an injected throttle.
    return boto3.client(
        "iam",
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )


def names(page: dict[str, Any]) -> list[str]:
    return [u["UserName"] for u in page["UserDetailList"]] + [
        r["RoleName"] for r in page["RoleDetailList"]
    ]


def test_pages_end_anywhere_and_markers_lead_on(iam: Any) -> None:
    iam.create_user(UserName="u0")
    for n in range(4):
        iam.create_role(RoleName=f"r{n}", AssumeRolePolicyDocument="{}")
    first = iam.get_account_authorization_details(Filter=["User", "Role"], MaxItems=3)
    assert first["IsTruncated"] and names(first) == ["u0", "r0", "r1"]
    second = iam.get_account_authorization_details(
        Filter=["User", "Role"], MaxItems=3, Marker=first["Marker"]
    )
    assert not second["IsTruncated"] and "Marker" not in second
    assert names(second) == ["r2", "r3"]
    whole = iam.get_account_authorization_details(Filter=["User", "Role"])  # 100 by default
    assert names(whole) == ["u0", "r0", "r1", "r2", "r3"] and not whole["IsTruncated"]


def test_bad_max_items_and_markers_are_refused(iam: Any) -> None:
    iam.create_user(UserName="u0")
    iam.create_user(UserName="u1")
    marker = iam.get_account_authorization_details(Filter=["User"], MaxItems=1)["Marker"]
    for params in (
        {"MaxItems": 1001},
        {"Marker": "not-a-marker"},
        {"Marker": marker, "Filter": ["Role"]},  # a marker of another listing
    ):
        with pytest.raises(ClientError) as failed:
            iam.get_account_authorization_details(**params)
        assert failed.value.response["Error"]["Code"] == "ValidationError"


def test_throttle_after_some_calls(iam: Any, emulator: Emulator) -> None:
    emulator.iam.throttle(1, after=1)
    iam.get_account_authorization_details()
    with pytest.raises(ClientError) as failed:
        iam.get_account_authorization_details()
    error = failed.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "Throttling",
        400,
    )
    iam.get_account_authorization_details()
    assert emulator.iam.calls == 3
