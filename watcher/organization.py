"""Accounts of an AWS Organization: ``accounts: {organization: ...}`` in the config.

``organizations:ListAccounts`` (paginated) is asked from the management account or a delegated
administrator (``management_role_arn``, else ambient credentials). Every ACTIVE account is
watched through the role ``role_name`` in it; suspended, closed and pending accounts are not.
``org_accounts`` is the pure part: what the listing means for the config.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from watcher.aws import AwsClients
from watcher.settings import Account, Organization

ORGANIZATIONS_REGION = "us-east-1"  # Organizations' one endpoint in the aws partition
ACTIVE = "ACTIVE"


@dataclass(frozen=True, slots=True)
class Member:
    """One account of the organization as ListAccounts shows it."""

    id: str
    state: str


def members(items: Iterable[Mapping[str, Any]]) -> list[Member]:
    """The members of ListAccounts pages' ``Accounts`` items. ``State`` (2025) is read where
    given, else the older ``Status``; an item without an id is skipped."""
    found = []
    for item in items:
        account = item.get("Id")
        if isinstance(account, str):
            state = item.get("State") or item.get("Status") or ""
            found.append(Member(account, str(state).upper()))
    return found


def role_arn(account: str, role_name: str) -> str:
    return f"arn:aws:iam::{account}:role/{role_name}"


def org_accounts(
    settings: Organization, listed: Iterable[Member], management: str | None
) -> tuple[Account, ...]:
    """The accounts to watch: active, not excluded, the management account only if asked."""
    excluded = set(settings.exclude)
    if not settings.include_management and management is not None:
        excluded.add(management)
    return tuple(
        Account(
            id=member.id,
            regions=() if settings.all_regions else settings.regions,
            role_arn=role_arn(member.id, settings.role_name),
            all_regions=settings.all_regions,
        )
        for member in sorted(listed, key=lambda m: m.id)
        if member.state == ACTIVE and member.id not in excluded
    )


async def list_members(clients: AwsClients, settings: Organization) -> tuple[list[Member], str]:
    """Every account of the organization, and the management account's id."""
    reader = None
    if settings.management_role_arn is not None:
        owner = settings.management_role_arn.split(":")[4]
        reader = Account(owner, (), role_arn=settings.management_role_arn)
    async with clients.client("organizations", ORGANIZATIONS_REGION, reader) as organizations:
        described = await organizations.describe_organization()
        management = str(described["Organization"]["MasterAccountId"])
        items: list[Mapping[str, Any]] = []
        async for page in organizations.get_paginator("list_accounts").paginate():
            items += page.get("Accounts", [])
    return members(items), management
