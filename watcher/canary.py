"""The canary: a harmless, logged call that travels the same path as a break-glass use.

Every ``canary.interval`` the daemon assumes the canary role (no permissions) in each chosen
account, with the send time in the session name. The role is watched like a break-glass role (it
is in the rendered EventBridge patterns and in the LookupEvents look-ups), so its ``AssumeRole``
records reach the watcher through EventBridge and LookupEvents; the daemon recognises them here
and exports when each source last delivered one instead of counting a break-glass use.

Pure logic (names, principals, reading a record) is separate from the one AWS call (``send``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from watcher.aws import AwsClients
from watcher.model import Principal, Rules, TrailEvent
from watcher.settings import Account, CanarySettings

#: ``canary-<unix seconds of the send>``; a session name is 2-64 characters of [\w+=,.@-].
SESSION_PREFIX = "canary-"
_SESSION = re.compile(r"canary-(\d{9,11})")
#: The shortest STS session; the canary never uses its credentials.
_SESSION_SECONDS = 900


def canary_name(account: str) -> str:
    """The canary principal's name for ``account`` (never a metric label of break-glass use)."""
    return f"{SESSION_PREFIX}{account}"


def canary_accounts(settings: CanarySettings, accounts: Sequence[Account]) -> list[Account]:
    """The configured accounts the canary is sent in."""
    if not settings.enabled:
        return []
    chosen = set(settings.accounts)
    return [a for a in accounts if not chosen or a.id in chosen]


def canary_principals(
    settings: CanarySettings, accounts: Sequence[Account]
) -> tuple[Principal, ...]:
    """One watched role per canary account, matched by the role's name like any role."""
    return tuple(
        Principal(
            name=canary_name(a.id),
            kind="role",
            account=a.id,
            iam_names=(settings.role_name.lower(),),
            max_days_between_drills=0,
        )
        for a in canary_accounts(settings, accounts)
    )


def with_canaries(rules: Rules, settings: CanarySettings, accounts: Sequence[Account]) -> Rules:
    """``rules`` plus the canary roles: what the EventBridge patterns must match."""
    return replace(rules, principals=rules.principals + canary_principals(settings, accounts))


def session_name(sent: datetime) -> str:
    return f"{SESSION_PREFIX}{int(sent.timestamp())}"


def sent_at(event: TrailEvent) -> datetime | None:
    """The send time a canary record carries in its session name (None: not one of ours)."""
    found = _SESSION.fullmatch(event.session_name or "")
    return None if found is None else datetime.fromtimestamp(int(found.group(1)), UTC)


def role_arn(account: str, role_name: str) -> str:
    return f"arn:aws:iam::{account}:role/{role_name}"


async def send(clients: AwsClients, account: Account, role_name: str, now: datetime) -> None:
    """Assume the canary role once in ``account`` (in its first region, as its reader)."""
    async with clients.client("sts", account.regions[0], account) as sts:
        await sts.assume_role(
            RoleArn=role_arn(account.id, role_name),
            RoleSessionName=session_name(now),
            DurationSeconds=_SESSION_SECONDS,
        )
