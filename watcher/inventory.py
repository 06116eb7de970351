"""Which principals to watch and what IAM says about them: discovery and fact gathering.

Per configured account (read through its ``role_arn`` where set) every user and role is listed
with paginators; the entities the rules declare are attached to their principals, and the rest
are *discovered* by name pattern (``inventory.name_patterns``, case-insensitive) or by tag
(``inventory.tags``, every pair must be present, key and value compared case-insensitively).
``credentials.py`` judges the facts gathered here.

Cost of tag discovery: ListUsers/ListRoles return no tags (in AWS as in moto), so a tag costs
one ListUserTags/ListRoleTags call for each user and role that neither a rule nor a name
pattern already claims, at most ``_CONCURRENCY`` at a time. An account with 3,000 roles pays
3,000 calls per inventory run (hourly by default); ``inventory.tags: {}`` turns that off.
Service-linked roles (path ``/aws-service-role/``) are never discovered: only their AWS service
can assume them.

An IAM error makes the whole account a failed source (``AccountError``), never a failed
credential check: its principals simply have no facts this run.

A discovered principal, once watched, stays watched (pass the last run's as ``keep``): whoever
can create IAM roles could otherwise crowd it out of the per-account bound, and whoever can
delete or untag it could make it vanish with its metrics. One that left IAM keeps being watched
and fails its ``exists`` check. The bound (``max_discovered``) only limits *new* discoveries,
oldest IAM entity first (decoys an attacker creates are younger than the principal they
would hide); what it leaves out is counted in ``truncated`` and logged, never silent.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from itertools import count
from typing import Any, Literal

from botocore.exceptions import ClientError

from watcher.aws import AwsClients
from watcher.credentials import AccessKey, PrincipalFacts, RoleFacts, RootFacts, UserFacts
from watcher.model import Principal, Rules
from watcher.settings import Account, Config
from watcher.sources.retry import ErrorKind, error_kind

log = logging.getLogger(__name__)

EntityKind = Literal["user", "role"]

MAX_DISCOVERED_PER_ACCOUNT = 50
_CONCURRENCY = 8
_IAM_DEFAULT_REGION = "us-east-1"
_SERVICE_LINKED_PATH = "/aws-service-role/"
_UNKNOWN_AGE = datetime.min.replace(tzinfo=UTC)  # sorts first: no CreateDate, no bound to lose


@dataclass(frozen=True, slots=True)
class AccountError:
    """An account whose IAM could not be read this run."""

    account: str
    kind: ErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class InventoryResult:
    """Watched principals (declared in rule order, then discovered) and what IAM says of them.

    ``facts`` has no entry for principals of a failed account. ``truncated`` counts, per
    account, the matching IAM entities left unwatched beyond the per-account bound.
    """

    principals: tuple[Principal, ...]
    facts: Mapping[str, PrincipalFacts]
    errors: tuple[AccountError, ...] = ()
    truncated: Mapping[str, int] = field(default_factory=dict)

    @property
    def discovered(self) -> tuple[Principal, ...]:
        return tuple(p for p in self.principals if p.origin == "discovered")


@dataclass(frozen=True, slots=True)
class _Entity:
    kind: EntityKind
    name: str
    arn: str
    path: str
    trust_policy: Mapping[str, Any]
    created: datetime = _UNKNOWN_AGE


@dataclass(frozen=True, slots=True)
class _AccountScan:
    declared: dict[str, PrincipalFacts]
    discovered: list[tuple[_Entity, PrincipalFacts]]
    truncated: int
    kept: dict[str, PrincipalFacts]  # principals kept from earlier runs, by name


async def discover(
    clients: AwsClients,
    config: Config,
    rules: Rules,
    *,
    max_discovered: int = MAX_DISCOVERED_PER_ACCOUNT,
    keep: Sequence[Principal] = (),
) -> InventoryResult:
    """Inventory every configured account once; accounts are read concurrently.

    ``keep``: the principals an earlier run discovered. Each stays in the result whatever
    IAM says now (absent from IAM: its facts say so; account unreadable: no facts).
    """
    declared = [p for p in rules.principals if p.origin == "declared"]
    declared_names = {p.name for p in declared}
    kept = [p for p in keep if p.origin == "discovered" and p.name not in declared_names]
    configured = {a.id for a in config.accounts}
    errors = [
        AccountError(acct, "other", "account is not in the config's accounts; not checked")
        for acct in sorted({p.account for p in declared} - configured)
    ]
    async with asyncio.TaskGroup() as tg:
        tasks = [
            (
                account,
                tg.create_task(
                    _scan_safely(
                        clients,
                        account,
                        config,
                        [p for p in declared if p.account == account.id],
                        max_discovered,
                        [p for p in kept if p.account == account.id],
                    )
                ),
            )
            for account in config.accounts
        ]
    facts: dict[str, PrincipalFacts] = {}
    discovered: list[Principal] = []
    truncated: dict[str, int] = {}
    taken = declared_names | {p.name for p in kept}
    for account, task in tasks:
        scan = task.result()
        if isinstance(scan, AccountError):
            errors.append(scan)
            discovered += (p for p in kept if p.account == account.id)
            continue
        facts.update(scan.declared)
        facts.update(scan.kept)
        discovered += (p for p in kept if p.name in scan.kept)
        for entity, entity_facts in scan.discovered:
            principal = _discovered_principal(entity, account.id, taken)
            taken.add(principal.name)
            discovered.append(principal)
            facts[principal.name] = entity_facts
        if scan.truncated:
            truncated[account.id] = scan.truncated
            log.warning(
                "discovery bound reached: matching IAM principals are not watched",
                extra={
                    "account": account.id,
                    "unwatched": scan.truncated,
                    "bound": max_discovered,
                },
            )
    return InventoryResult(
        principals=(*declared, *discovered),
        facts=facts,
        errors=tuple(errors),
        truncated=truncated,
    )


async def _scan_safely(
    clients: AwsClients,
    account: Account,
    config: Config,
    declared: list[Principal],
    max_discovered: int,
    kept: list[Principal],
) -> _AccountScan | AccountError:
    try:
        return await _scan_account(clients, account, config, declared, max_discovered, kept)
    except Exception as exc:
        leaves = _leaves(exc)
        kinds = [error_kind(leaf) for leaf in leaves]
        first = kinds[0]
        if first is None or None in kinds:
            raise
        return AccountError(account.id, first, str(leaves[0]))


async def _scan_account(
    clients: AwsClients,
    account: Account,
    config: Config,
    declared: list[Principal],
    max_discovered: int,
    kept: list[Principal],
) -> _AccountScan:
    region = account.regions[0] if account.regions else _IAM_DEFAULT_REGION
    limit = asyncio.Semaphore(_CONCURRENCY)
    async with clients.client("iam", region, account) as iam:
        async with asyncio.TaskGroup() as tg:
            users_task = tg.create_task(_list_all(iam, "list_users", "Users"))
            roles_task = tg.create_task(_list_all(iam, "list_roles", "Roles"))
        users = [_entity("user", u) for u in users_task.result()]
        roles = [_entity("role", r) for r in roles_task.result()]

        claims = {p.name: _claimed(p, users if p.kind == "user" else roles) for p in declared}
        claimed = {(e.kind, e.name.lower()) for entities in claims.values() for e in entities}
        candidates = [
            e
            for e in (*users, *roles)
            if (e.kind, e.name.lower()) not in claimed
            and not e.path.startswith(_SERVICE_LINKED_PATH)
        ]
        patterns = [p.lower() for p in config.inventory.name_patterns]
        named = [any(fnmatchcase(e.name.lower(), p) for p in patterns) for e in candidates]
        by_name = [e for e, hit in zip(candidates, named, strict=True) if hit]
        rest = [e for e, hit in zip(candidates, named, strict=True) if not hit]
        kept_keys = {(p.kind, name) for p in kept for name in p.iam_names}
        kept_entities = {
            (e.kind, e.name.lower()): e for e in candidates if (e.kind, e.name.lower()) in kept_keys
        }
        by_tag = await _tagged(
            iam,
            [e for e in rest if (e.kind, e.name.lower()) not in kept_keys],
            config.inventory.tags,
            limit,
        )
        found = sorted(
            (e for e in (*by_name, *by_tag) if (e.kind, e.name.lower()) not in kept_keys),
            key=lambda e: (e.created, e.kind, e.name.lower()),
        )
        # Oldest first picks who fits the bound; the result is in the usual kind, name order.
        new = sorted(
            found[: max(0, max_discovered - len(kept))], key=lambda e: (e.kind, e.name.lower())
        )

        watched = (
            *(e for entities in claims.values() for e in entities),
            *kept_entities.values(),
            *new,
        )
        to_read = {e.name: e for e in watched if e.kind == "user"}
        user_facts = await _user_facts_all(iam, list(to_read.values()), limit)
        root = await _root_facts(iam) if any(p.kind == "root" for p in declared) else None

    declared_facts = {
        p.name: _principal_facts(
            p, claims[p.name], users if p.kind == "user" else roles, user_facts, root
        )
        for p in declared
    }
    discovered = [(e, _entity_facts([e], user_facts)) for e in new]
    kept_facts = {  # a rule now declaring its IAM identity supersedes a kept principal
        p.name: _kept_facts(
            p, [kept_entities[k] for k in _keys(p) if k in kept_entities], user_facts
        )
        for p in kept
        if not claimed.issuperset(_keys(p))
    }
    return _AccountScan(declared_facts, discovered, len(found) - len(new), kept_facts)


def _keys(principal: Principal) -> list[tuple[str, str]]:
    return [(principal.kind, name) for name in principal.iam_names]


def _kept_facts(
    principal: Principal, present: list[_Entity], user_facts: Mapping[str, UserFacts]
) -> PrincipalFacts:
    """Facts of a principal discovered earlier; the IAM names now gone are ``missing``."""
    base = _entity_facts(present, user_facts)
    found = {e.name.lower() for e in present}
    return replace(base, missing=tuple(n for n in principal.iam_names if n not in found))


def _entity(kind: EntityKind, item: Mapping[str, Any]) -> _Entity:
    name = item["UserName"] if kind == "user" else item["RoleName"]
    created = item.get("CreateDate")
    return _Entity(
        kind,
        name,
        item["Arn"],
        item.get("Path", "/"),
        item.get("AssumeRolePolicyDocument", {}),
        created if isinstance(created, datetime) else _UNKNOWN_AGE,
    )


def _claimed(principal: Principal, pool: list[_Entity]) -> list[_Entity]:
    """The entities of ``pool`` a declared principal names or its pattern matches."""
    if principal.kind == "root":
        return []
    pattern = principal.name_pattern
    return [
        e
        for e in pool
        if e.name.lower() in principal.iam_names
        or (pattern is not None and fnmatchcase(e.name.lower(), pattern))
    ]


def _principal_facts(
    principal: Principal,
    claimed: list[_Entity],
    pool: list[_Entity],
    user_facts: Mapping[str, UserFacts],
    root: RootFacts | None,
) -> PrincipalFacts:
    if principal.kind == "root":
        return PrincipalFacts(root=root)
    present = {e.name.lower() for e in pool}
    pattern = principal.name_pattern
    base = _entity_facts(claimed, user_facts)
    return PrincipalFacts(
        users=base.users,
        roles=base.roles,
        missing=tuple(n for n in principal.iam_names if n not in present),
        pattern_unmatched=pattern is not None and not any(fnmatchcase(n, pattern) for n in present),
    )


def _entity_facts(
    entities: Iterable[_Entity], user_facts: Mapping[str, UserFacts]
) -> PrincipalFacts:
    entities = list(entities)
    return PrincipalFacts(
        users=tuple(user_facts[e.name] for e in entities if e.kind == "user"),
        roles=tuple(RoleFacts(e.name, e.arn, e.trust_policy) for e in entities if e.kind == "role"),
    )


def _discovered_principal(entity: _Entity, account: str, taken: set[str]) -> Principal:
    """A principal for a discovered entity, named from its IAM name (lower-case, label-safe).

    On a clash with another principal's name, the account id, then the kind, then a number are
    appended.
    """
    base = re.sub(r"[^a-z0-9_.-]+", "-", entity.name.lower()).strip("-") or entity.kind
    name = next(n for n in _names(base, entity.kind, account) if n not in taken)
    return Principal(
        name=name,
        kind=entity.kind,
        account=account,
        iam_names=(entity.name.lower(),),
        origin="discovered",
        arn=entity.arn,
    )


def _names(base: str, kind: str, account: str) -> Iterator[str]:
    yield base
    yield f"{base}-{account}"
    stem = f"{base}-{kind}-{account}"
    yield stem
    for n in count(2):
        yield f"{stem}-{n}"


async def _list_all(iam: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    async for page in iam.get_paginator(operation).paginate(**kwargs):
        items.extend(page.get(key, []))
    return items


async def _tagged(
    iam: Any, entities: list[_Entity], wanted: Mapping[str, str], limit: asyncio.Semaphore
) -> list[_Entity]:
    """The entities carrying every ``wanted`` tag (one tag listing per entity)."""
    if not wanted:
        return []
    want = {k.lower(): v.lower() for k, v in wanted.items()}

    async def matches(entity: _Entity) -> bool:
        operation, param = (
            ("list_user_tags", "UserName")
            if entity.kind == "user"
            else ("list_role_tags", "RoleName")
        )
        async with limit:
            tags = await _list_all(iam, operation, "Tags", **{param: entity.name})
        have = {t["Key"].lower(): t["Value"].lower() for t in tags}
        return all(have.get(k) == v for k, v in want.items())

    async with asyncio.TaskGroup() as tg:
        checks = [(e, tg.create_task(matches(e))) for e in entities]
    return [e for e, task in checks if task.result()]


async def _user_facts_all(
    iam: Any, users: list[_Entity], limit: asyncio.Semaphore
) -> dict[str, UserFacts]:
    async def one(user: _Entity) -> UserFacts:
        async with limit:
            return await _user_facts(iam, user)

    async with asyncio.TaskGroup() as tg:
        tasks = [(u.name, tg.create_task(one(u))) for u in users]
    return {name: task.result() for name, task in tasks}


async def _user_facts(iam: Any, user: _Entity) -> UserFacts:
    async with asyncio.TaskGroup() as tg:
        keys_task = tg.create_task(
            _list_all(iam, "list_access_keys", "AccessKeyMetadata", UserName=user.name)
        )
        mfa_task = tg.create_task(
            _list_all(iam, "list_mfa_devices", "MFADevices", UserName=user.name)
        )
        profile_task = tg.create_task(_has_login_profile(iam, user.name))
    keys = []
    for key in keys_task.result():
        used = await iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])
        keys.append(
            AccessKey(
                key_id=key["AccessKeyId"],
                active=key["Status"] == "Active",
                created=key["CreateDate"],
                last_used=used.get("AccessKeyLastUsed", {}).get("LastUsedDate"),
            )
        )
    return UserFacts(
        name=user.name,
        arn=user.arn,
        access_keys=tuple(keys),
        login_profile=profile_task.result(),
        mfa_devices=tuple(d["SerialNumber"] for d in mfa_task.result()),
    )


async def _has_login_profile(iam: Any, user: str) -> bool:
    try:
        await iam.get_login_profile(UserName=user)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return False
        raise
    return True


async def _root_facts(iam: Any) -> RootFacts:
    summary = await iam.get_account_summary()
    return RootFacts(mfa_enabled=summary["SummaryMap"].get("AccountMFAEnabled") == 1)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (TaskGroups wrap failures in groups)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
