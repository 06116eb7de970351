"""Which principals to watch and what IAM says about them: discovery and fact gathering.

Per account (read through its ``role_arn`` where set) every user and role is read with
``iam:GetAccountAuthorizationDetails`` (``Filter=[User, Role]``, 1,000 items a page): names,
paths, ARNs, creation dates, tags and trust policies in one paginated listing, so an account with
3,000 roles costs 3 or 4 calls, not a tag call per user and role. The entities the rules declare
are attached to their principals, and the rest are *discovered* by name pattern
(``inventory.name_patterns``, case-insensitive) or by tag (``inventory.tags``, every pair must be
present, key and value compared case-insensitively). Only the break-glass users themselves cost
further calls: their access keys (and each key's last use), MFA devices and login profile, which
that listing does not carry; ``GetAccountSummary`` when the account's root is watched.
``credentials.py`` judges the facts gathered here.

Service-linked roles (path ``/aws-service-role/``) are never discovered: only their AWS service
can assume them.

A throttled call is retried with backoff (each throttle counted through ``on_throttle``), the
same page again, never a skipped one. Any other IAM error, or a throttle that outlasts the
retries, makes the whole account a failed source (``AccountError``), never a failed credential
check: its principals simply have no facts this run, and nothing of a half-read listing is used
(a principal on an unread page is not "missing").

A discovered principal, once watched, stays watched (pass the last run's as ``keep``): whoever
can create IAM roles could otherwise crowd it out of the per-account bound, and whoever can
delete or untag it could make it vanish with its metrics. One that left IAM keeps being watched
and fails its ``exists`` check. The bound (``max_discovered``) only limits *new* discoveries,
oldest IAM entity first (decoys an attacker creates are younger than the principal they
would hide); what it leaves out is counted in ``truncated`` and logged, never silent.

:func:`discover` reads every account once (``audit``, ``drill``); the daemon reads each account
on its own schedule with :func:`inventory_account`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from itertools import count
from typing import Any

from botocore.exceptions import ClientError

from watcher.aws import AwsClients
from watcher.credentials import AccessKey, PrincipalFacts, RoleFacts, RootFacts, UserFacts
from watcher.iam_entities import IamEntity, has_tags, page_entities
from watcher.model import Principal, Rules
from watcher.settings import Account, Config, Inventory
from watcher.sources.retry import Backoff, ErrorKind, classify_error, error_kind

log = logging.getLogger(__name__)

MAX_DISCOVERED_PER_ACCOUNT = 50
ACCOUNTS_AT_ONCE = 8
"""Accounts read at once (by :func:`discover`, and by the daemon's schedule): each holds a page of
up to ``PAGE_SIZE`` users and roles, with their policies, while it reads it."""
PAGE_SIZE = 1000  # GetAccountAuthorizationDetails' largest MaxItems
READ_TIMEOUT = 30.0
"""Seconds an IAM answer may take: a page of 1,000 users and roles with all their policies is
built and sent more slowly than the short answers ``aws.READ_TIMEOUT`` is meant for."""
_CONCURRENCY = 8  # per-user reads of one account at once
_IAM_DEFAULT_REGION = "us-east-1"
_SERVICE_LINKED_PATH = "/aws-service-role/"
_ENTITY_FILTER = ["User", "Role"]

OnThrottle = Callable[[str], None]
"""Called with the account's id each time one of its IAM calls is throttled (and retried)."""


@dataclass(frozen=True, slots=True)
class Throttling:
    """How a throttled IAM call is retried: ``attempts`` tries in all, exponential backoff with
    full jitter between them (``base * 2**n`` seconds, at most ``cap``)."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 20.0


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
class AccountInventory:
    """One account's run: its declared principals, its discovered ones (kept, then new), the
    facts of both, and how many matching entities the bound left out."""

    account: str
    declared: tuple[Principal, ...]
    discovered: tuple[Principal, ...]
    facts: Mapping[str, PrincipalFacts]
    truncated: int

    @property
    def principals(self) -> tuple[Principal, ...]:
        return (*self.declared, *self.discovered)


@dataclass(frozen=True, slots=True)
class _AccountScan:
    declared: dict[str, PrincipalFacts]
    discovered: list[tuple[IamEntity, PrincipalFacts]]
    truncated: int
    kept: dict[str, PrincipalFacts]  # principals kept from earlier runs, by name


async def discover(
    clients: AwsClients,
    config: Config,
    rules: Rules,
    *,
    max_discovered: int = MAX_DISCOVERED_PER_ACCOUNT,
    keep: Sequence[Principal] = (),
    throttling: Throttling = Throttling(),
    on_throttle: OnThrottle | None = None,
) -> InventoryResult:
    """Inventory every configured account once, ``ACCOUNTS_AT_ONCE`` at a time.

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
    gate = asyncio.Semaphore(ACCOUNTS_AT_ONCE)

    async def scan(account: Account) -> _AccountScan | AccountError:
        async with gate:
            return await _scan_safely(
                clients,
                account,
                config.inventory,
                [p for p in declared if p.account == account.id],
                max_discovered,
                [p for p in kept if p.account == account.id],
                _Retrier(account.id, throttling, on_throttle),
            )

    async with asyncio.TaskGroup() as tg:
        tasks = [(account, tg.create_task(scan(account))) for account in config.accounts]
    facts: dict[str, PrincipalFacts] = {}
    discovered: list[Principal] = []
    truncated: dict[str, int] = {}
    taken = declared_names | {p.name for p in kept}
    for account, task in tasks:
        scan_result = task.result()
        own_kept = [p for p in kept if p.account == account.id]
        if isinstance(scan_result, AccountError):
            errors.append(scan_result)
            discovered += own_kept
            continue
        part = _assemble(account.id, scan_result, (), own_kept, taken, max_discovered)
        facts.update(part.facts)
        discovered += part.discovered
        if part.truncated:
            truncated[account.id] = part.truncated
    return InventoryResult(
        principals=(*declared, *discovered),
        facts=facts,
        errors=tuple(errors),
        truncated=truncated,
    )


async def inventory_account(
    clients: AwsClients,
    account: Account,
    settings: Inventory,
    declared: Sequence[Principal],
    *,
    keep: Sequence[Principal] = (),
    taken: Callable[[], Iterable[str]] = frozenset,
    max_discovered: int = MAX_DISCOVERED_PER_ACCOUNT,
    throttling: Throttling = Throttling(),
    on_throttle: OnThrottle | None = None,
) -> AccountInventory | AccountError:
    """One account's inventory: ``declared`` and ``keep`` are that account's principals (declared
    ones, and those an earlier run discovered); ``taken()``, read once IAM is read, the names of
    the principals watched then, which a new discovery's name must not clash with."""
    own = [p for p in declared if p.account == account.id and p.origin == "declared"]
    names = {p.name for p in own}
    kept = [p for p in keep if p.account == account.id and p.name not in names]
    scan = await _scan_safely(
        clients,
        account,
        settings,
        own,
        max_discovered,
        kept,
        _Retrier(account.id, throttling, on_throttle),
    )
    if isinstance(scan, AccountError):
        return scan
    used = set(taken()) | names | {p.name for p in kept}
    return _assemble(account.id, scan, own, kept, used, max_discovered)


def _assemble(
    account: str,
    scan: _AccountScan,
    declared: Sequence[Principal],
    kept: Sequence[Principal],
    taken: set[str],
    max_discovered: int,
) -> AccountInventory:
    """Name the new discoveries (adding their names to ``taken``) and log a reached bound."""
    facts: dict[str, PrincipalFacts] = {**scan.declared, **scan.kept}
    discovered = [p for p in kept if p.name in scan.kept]
    for entity, entity_facts in scan.discovered:
        principal = _discovered_principal(entity, account, taken)
        taken.add(principal.name)
        discovered.append(principal)
        facts[principal.name] = entity_facts
    if scan.truncated:
        log.warning(
            "discovery bound reached: matching IAM principals are not watched",
            extra={"account": account, "unwatched": scan.truncated, "bound": max_discovered},
        )
    return AccountInventory(account, tuple(declared), tuple(discovered), facts, scan.truncated)


class _Retrier:
    """Runs one account's IAM calls, retrying throttled ones (see :class:`Throttling`)."""

    def __init__(self, account: str, policy: Throttling, on_throttle: OnThrottle | None) -> None:
        self.account = account
        self._policy = policy
        self._on_throttle = on_throttle

    async def call(self, iam: Any, operation: str, **params: Any) -> dict[str, Any]:
        backoff = Backoff(base=self._policy.base, cap=self._policy.cap)
        attempt = 1
        while True:
            try:
                answer: dict[str, Any] = await getattr(iam, operation)(**params)
                return answer
            except ClientError as exc:
                if classify_error(exc) != "throttled" or attempt >= self._policy.attempts:
                    raise
            attempt += 1
            if self._on_throttle is not None:
                self._on_throttle(self.account)
            await asyncio.sleep(backoff.next_delay())

    async def pages(self, iam: Any, operation: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Every page of an IAM listing (``Marker``/``IsTruncated``), each page retried alone."""
        marker: str | None = None
        while True:
            page = await self.call(
                iam, operation, **params, **({"Marker": marker} if marker else {})
            )
            yield page
            marker = page.get("Marker")
            if not page.get("IsTruncated") or not marker:
                return


async def _scan_safely(
    clients: AwsClients,
    account: Account,
    settings: Inventory,
    declared: list[Principal],
    max_discovered: int,
    kept: list[Principal],
    retrier: _Retrier,
) -> _AccountScan | AccountError:
    try:
        return await _scan_account(
            clients, account, settings, declared, max_discovered, kept, retrier
        )
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
    settings: Inventory,
    declared: list[Principal],
    max_discovered: int,
    kept: list[Principal],
    retrier: _Retrier,
) -> _AccountScan:
    region = account.regions[0] if account.regions else _IAM_DEFAULT_REGION
    limit = asyncio.Semaphore(_CONCURRENCY)
    async with clients.client("iam", region, account, read_timeout=READ_TIMEOUT) as iam:
        # A page holds every policy of its users and roles too: each is dropped once read.
        listing = retrier.pages(
            iam, "get_account_authorization_details", Filter=_ENTITY_FILTER, MaxItems=PAGE_SIZE
        )
        entities = [e async for page in listing for e in page_entities(page)]
        users = [e for e in entities if e.kind == "user"]
        roles = [e for e in entities if e.kind == "role"]

        claims = {p.name: _claimed(p, users if p.kind == "user" else roles) for p in declared}
        claimed = {(e.kind, e.name.lower()) for entities in claims.values() for e in entities}
        candidates = [
            e
            for e in entities
            if (e.kind, e.name.lower()) not in claimed
            and not e.path.startswith(_SERVICE_LINKED_PATH)
        ]
        patterns = [p.lower() for p in settings.name_patterns]
        kept_keys = {(p.kind, name) for p in kept for name in p.iam_names}
        kept_entities = {
            (e.kind, e.name.lower()): e for e in candidates if (e.kind, e.name.lower()) in kept_keys
        }
        found = sorted(
            (
                e
                for e in candidates
                if (e.kind, e.name.lower()) not in kept_keys
                and (
                    any(fnmatchcase(e.name.lower(), p) for p in patterns)
                    or (settings.tags and has_tags(e, settings.tags))
                )
            ),
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
        user_facts = await _user_facts_all(iam, retrier, list(to_read.values()), limit)
        root = await _root_facts(iam, retrier) if any(p.kind == "root" for p in declared) else None

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
    principal: Principal, present: list[IamEntity], user_facts: Mapping[str, UserFacts]
) -> PrincipalFacts:
    """Facts of a principal discovered earlier; the IAM names now gone are ``missing``."""
    base = _entity_facts(present, user_facts)
    found = {e.name.lower() for e in present}
    return replace(base, missing=tuple(n for n in principal.iam_names if n not in found))


def _claimed(principal: Principal, pool: list[IamEntity]) -> list[IamEntity]:
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
    claimed: list[IamEntity],
    pool: list[IamEntity],
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
    entities: Iterable[IamEntity], user_facts: Mapping[str, UserFacts]
) -> PrincipalFacts:
    entities = list(entities)
    return PrincipalFacts(
        users=tuple(user_facts[e.name] for e in entities if e.kind == "user"),
        roles=tuple(RoleFacts(e.name, e.arn, e.trust_policy) for e in entities if e.kind == "role"),
    )


def _discovered_principal(entity: IamEntity, account: str, taken: set[str]) -> Principal:
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


async def _user_facts_all(
    iam: Any, retrier: _Retrier, users: list[IamEntity], limit: asyncio.Semaphore
) -> dict[str, UserFacts]:
    async def one(user: IamEntity) -> UserFacts:
        async with limit:
            return await _user_facts(iam, retrier, user)

    async with asyncio.TaskGroup() as tg:
        tasks = [(u.name, tg.create_task(one(u))) for u in users]
    return {name: task.result() for name, task in tasks}


async def _user_facts(iam: Any, retrier: _Retrier, user: IamEntity) -> UserFacts:
    """What GetAccountAuthorizationDetails does not say of a user: keys, MFA, login profile."""

    async def listed(operation: str, key: str) -> list[dict[str, Any]]:
        listing = retrier.pages(iam, operation, UserName=user.name)
        return [item async for page in listing for item in page.get(key, [])]

    async with asyncio.TaskGroup() as tg:
        keys_task = tg.create_task(listed("list_access_keys", "AccessKeyMetadata"))
        mfa_task = tg.create_task(listed("list_mfa_devices", "MFADevices"))
        profile_task = tg.create_task(_has_login_profile(iam, retrier, user.name))
    keys = []
    for key in keys_task.result():
        used = await retrier.call(iam, "get_access_key_last_used", AccessKeyId=key["AccessKeyId"])
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


async def _has_login_profile(iam: Any, retrier: _Retrier, user: str) -> bool:
    try:
        await retrier.call(iam, "get_login_profile", UserName=user)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return False
        raise
    return True


async def _root_facts(iam: Any, retrier: _Retrier) -> RootFacts:
    summary = await retrier.call(iam, "get_account_summary")
    return RootFacts(mfa_enabled=summary["SummaryMap"].get("AccountMFAEnabled") == 1)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (TaskGroups wrap failures in groups)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
