"""The accounts the daemon watches: the config's list, plus its organization's accounts, with
``regions: all`` filled in. Resolved at start and every ``organization.refresh``.

A failure keeps what was known: an organization that cannot be listed keeps its last accounts,
an account whose regions cannot be read keeps its last regions (or only ``HOME_REGION`` if none
were ever read, so that its poller runs and shows the account's failure as that source's own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from watcher.aws import AwsClients
from watcher.organization import list_members, org_accounts
from watcher.regions import HOME_REGION, enabled_regions
from watcher.settings import Account, Config
from watcher.sources.retry import RETRYABLE, ErrorKind, classify_error

log = logging.getLogger(__name__)

#: The ``source`` label of the organization listing and of region discovery.
ORGANIZATION_SOURCE = "organization"
REGIONS_SOURCE = "regions"
CONCURRENCY = 8  # accounts whose regions are read at once


@dataclass(frozen=True, slots=True)
class Problem:
    """What could not be read: ``(source, account)`` and the error kind."""

    source: str
    account: str
    kind: ErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class Resolution:
    accounts: tuple[Account, ...]
    problems: tuple[Problem, ...]
    management: str | None = None


def needs_resolving(config: Config) -> bool:
    return config.organization is not None or any(a.all_regions for a in config.accounts)


def merge(listed: Sequence[Account], found: Sequence[Account]) -> tuple[Account, ...]:
    """The listed accounts, then the organization's that are not listed (a listed account's
    settings win)."""
    ids = {a.id for a in listed}
    return (*listed, *(a for a in found if a.id not in ids))


def carry_over(accounts: Sequence[Account], known: Mapping[str, Account]) -> tuple[Account, ...]:
    """``accounts`` with the regions already read for those with ``regions: all``."""
    return tuple(
        replace(a, regions=known[a.id].regions)
        if a.all_regions and a.id in known and known[a.id].all_regions
        else a
        for a in accounts
    )


async def resolve(clients: AwsClients, config: Config, known: Mapping[str, Account]) -> Resolution:
    """The accounts to watch now; ``known`` are the ones watched so far, by id."""
    problems: list[Problem] = []
    found: tuple[Account, ...] = ()
    management = None
    if config.organization is not None:
        try:
            listed, management = await list_members(clients, config.organization)
        except RETRYABLE as exc:
            problems.append(Problem(ORGANIZATION_SOURCE, "-", classify_error(exc), str(exc)))
            ids = {a.id for a in config.accounts}
            found = tuple(a for a in known.values() if a.id not in ids)
        else:
            found = org_accounts(config.organization, listed, management)
    accounts = carry_over(merge(config.accounts, found), known)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def regions_of(account: Account) -> Account:
        if not account.all_regions:
            return account
        async with gate:
            try:
                return replace(account, regions=await enabled_regions(clients, account))
            except RETRYABLE as exc:
                problems.append(Problem(REGIONS_SOURCE, account.id, classify_error(exc), str(exc)))
                return account if account.regions else replace(account, regions=(HOME_REGION,))

    resolved = await asyncio.gather(*(regions_of(a) for a in accounts))
    return Resolution(tuple(resolved), tuple(problems), management)
