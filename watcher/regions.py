"""``regions: all``: the regions enabled in an account, from ``ec2:DescribeRegions``.

Without ``AllRegions`` DescribeRegions lists the regions the account can use: those enabled by
default and the opt-in regions it opted into. (``account:ListRegions`` says the same but is
asked of the management account; DescribeRegions works through each account's read role.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from watcher.aws import AwsClients
from watcher.settings import Account

HOME_REGION = "us-east-1"
_ENABLED = {"opt-in-not-required", "opted-in"}


def enabled(items: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The enabled regions among DescribeRegions' ``Regions`` items, sorted."""
    return tuple(
        sorted(
            str(item["RegionName"])
            for item in items
            if "RegionName" in item and item.get("OptInStatus", "opt-in-not-required") in _ENABLED
        )
    )


async def enabled_regions(clients: AwsClients, account: Account) -> tuple[str, ...]:
    """The regions enabled in ``account``, read through its role."""
    async with clients.client("ec2", HOME_REGION, account) as ec2:
        answer = await ec2.describe_regions()
    return enabled(answer.get("Regions", []))
