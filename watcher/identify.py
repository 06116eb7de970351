"""Which break-glass principal, if any, an event belongs to (docs/design.md "Identification").

One event, at most one principal; the acting identity wins over the role an assume call names.
Account ids compare exactly, IAM names case-insensitively and whole. Exact names are dict
look-ups; ``name_pattern`` principals are tried only when no exact name matched. Calls with a
``FederatedUser`` identity (``GetFederationToken``) whose session issuer is a break-glass IAM
user are that user's uses: its credentials are at work.

The role an assume call asks for is read from ``requestParameters.roleArn``; when STS denies the
call CloudTrail writes ``requestParameters: null`` and the role is only in ``errorMessage``
(``... on resource: arn:aws:iam::ACCOUNT:role/NAME``) or, for the federated variants, in
``responseElements.assumedRoleUser.arn``. ``AssumeRoot`` asks for the root of the account in
``requestParameters.targetPrincipal``.

An ``account: any`` principal left unexpanded (``replay``: the accounts are not known) matches
its name in every account: the record's account names it, ``NAME@ACCOUNT``
(``org_principals.for_account``), as the daemon's expansion over the watched accounts does. A
principal declared for the account itself wins over it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from watcher.events import ASSUME_EVENTS, ASSUME_ROOT, STS_SOURCE
from watcher.globs import GlobSet
from watcher.model import Principal, PrincipalKind, TrailEvent
from watcher.org_principals import for_account
from watcher.rules import ANY_ACCOUNT

_Key = tuple[str, PrincipalKind, str]
_MEMO_SIZE = 65536
# The console acting for the signed-in human: their use, not AWS acting on its own.
CONSOLE_INVOKERS = frozenset({"signin.amazonaws.com"})
_ACCOUNT_ID = re.compile(r"\d{12}", re.ASCII)
_DENIED_ROLE = re.compile(r"on resource: (arn:[\w-]+:iam::\d{12}:role/\S+?)(?=$|[\s,;)])")
_ARN_KINDS: dict[tuple[str, str], PrincipalKind] = {
    ("iam", "user"): "user",
    ("iam", "role"): "role",
    ("sts", "assumed-role"): "role",
}


@dataclass(frozen=True, slots=True)
class Match:
    """A principal and how the event names it: ``requested`` when it is the role an assume call
    asks for (the caller is someone else), otherwise it is the acting identity."""

    principal: Principal
    requested: bool = False


class PrincipalIndex:
    """The principals keyed for look-up: ``(account, kind, lower-cased name)`` and root accounts."""

    def __init__(self, principals: Sequence[Principal]) -> None:
        self._names: dict[_Key, Principal] = {}
        self._roots: dict[str, Principal] = {}
        self._by_arn: dict[str, Principal | None] = {}
        globs: dict[tuple[str, PrincipalKind], list[tuple[str, Principal]]] = {}
        self._any_account = any(p.account == ANY_ACCOUNT for p in principals)
        for p in principals:
            if p.kind == "root":
                self._roots.setdefault(p.account, p)
                continue
            for name in p.iam_names:
                self._names.setdefault((p.account, p.kind, name.lower()), p)
            if p.name_pattern is not None:
                globs.setdefault((p.account, p.kind), []).append((p.name_pattern, p))
        # One glob set per account and kind, in rule order: the first pattern that matches wins.
        self._patterns: dict[tuple[str, PrincipalKind], tuple[GlobSet, list[Principal]]] = {
            key: (GlobSet([g.lower() for g, _ in gs]), [p for _, p in gs])
            for key, gs in globs.items()
        }

    def lookup(self, account: str, kind: PrincipalKind, name: str) -> Principal | None:
        """The principal of IAM ``kind`` named ``name`` (any case) in ``account``; an
        ``account: any`` one as it is in ``account`` when none is declared there."""
        if account == ANY_ACCOUNT:
            return None  # the rules' word, not an account a record can name
        found = self._find(account, kind, name)
        if found is None and self._any_account and _ACCOUNT_ID.fullmatch(account):
            wide = self._find(ANY_ACCOUNT, kind, name)
            found = None if wide is None else for_account(wide, account)
        return found

    def _find(self, account: str, kind: PrincipalKind, name: str) -> Principal | None:
        lowered = name.lower()
        found = self._names.get((account, kind, lowered))
        if found is not None:
            return found
        patterns = self._patterns.get((account, kind))
        if patterns is None:
            return None
        first = patterns[0].first(lowered)
        return None if first is None else patterns[1][first]

    def by_arn(self, arn: object) -> Principal | None:
        """The principal a user, role or assumed-role ARN names (memoised: ARNs repeat)."""
        if type(arn) is not str:
            return None
        try:
            return self._by_arn[arn]
        except KeyError:
            pass
        parsed = parse_arn(arn)
        found = self.lookup(*parsed) if parsed else None
        if len(self._by_arn) >= _MEMO_SIZE:
            self._by_arn.clear()
        self._by_arn[arn] = found
        return found

    def root(self, account: str) -> Principal | None:
        return self._roots.get(account)


def parse_arn(arn: str) -> tuple[str, PrincipalKind, str] | None:
    """``(account, kind, name)`` of ``arn:PARTITION:iam::ACCOUNT:user|role/[path/]NAME`` or
    ``arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION`` (whose name is ROLE)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    resource, _, rest = parts[5].partition("/")
    kind = _ARN_KINDS.get((parts[2], resource))
    if kind is None or not rest:
        return None
    name = rest.split("/", 1)[0] if resource == "assumed-role" else rest.rsplit("/", 1)[-1]
    return (parts[4], kind, name) if name else None


def _of_kind(found: Principal | None, kind: PrincipalKind) -> Principal | None:
    return found if found is not None and found.kind == kind else None


def _session_role(identity: dict[str, Any], index: PrincipalIndex) -> Principal | None:
    context = identity.get("sessionContext")
    if type(context) is dict:
        issuer = context.get("sessionIssuer")
        if type(issuer) is dict and issuer.get("type") == "Role":
            found = _of_kind(index.by_arn(issuer.get("arn")), "role")
            if found is not None:
                return found
    return _of_kind(index.by_arn(identity.get("arn")), "role")


def _user(identity: dict[str, Any], event: TrailEvent, index: PrincipalIndex) -> Principal | None:
    name = identity.get("userName")
    if type(name) is str and name:
        account = identity.get("accountId")
        account = account if type(account) is str and account else event.account
        return index.lookup(account, "user", name)
    return _of_kind(index.by_arn(identity.get("arn")), "user")


def _acting(event: TrailEvent, index: PrincipalIndex) -> Principal | None:
    identity = event.identity
    kind = identity.get("type")
    if kind == "AssumedRole":
        return _session_role(identity, index)
    if kind == "IAMUser":
        return _user(identity, event, index)
    if kind == "Root":
        invoked_by = identity.get("invokedBy")
        if invoked_by and invoked_by not in CONSOLE_INVOKERS:
            return None  # a service acting on its own
        account = identity.get("accountId")
        return index.root(account if type(account) is str and account else event.account)
    if kind == "FederatedUser":  # GetFederationToken of a user: the user's credentials at work
        context = identity.get("sessionContext")
        issuer = context.get("sessionIssuer") if type(context) is dict else None
        if type(issuer) is dict and issuer.get("type") == "IAMUser":
            return _of_kind(index.by_arn(issuer.get("arn")), "user")
    return None


def requested_role_arn(record: dict[str, Any]) -> str | None:
    """The role ARN an assume call (succeeded or denied) asks for, as the record spells it."""
    request = record.get("requestParameters")
    if type(request) is dict:
        role_arn = request.get("roleArn")
        if type(role_arn) is str and ":iam::" in role_arn:
            return role_arn
    message = record.get("errorMessage")
    if type(message) is str:
        found = _DENIED_ROLE.search(message)
        if found:
            return found.group(1)
    response = record.get("responseElements")
    assumed = response.get("assumedRoleUser") if type(response) is dict else None
    arn = assumed.get("arn") if type(assumed) is dict else None
    return arn if type(arn) is str and ":assumed-role/" in arn else None


def _requested(event: TrailEvent, index: PrincipalIndex) -> Principal | None:
    return _of_kind(index.by_arn(requested_role_arn(event.raw)), "role")


def _requested_root(event: TrailEvent, index: PrincipalIndex) -> Principal | None:
    request = event.raw.get("requestParameters")
    target = request.get("targetPrincipal") if type(request) is dict else None
    if type(target) is not str:
        return None
    parts = target.split(":")  # an account id, or its root's ARN
    return index.root(parts[4] if len(parts) >= 6 and parts[0] == "arn" else target)


def match(event: TrailEvent, index: PrincipalIndex) -> Match | None:
    """The principal ``event`` belongs to, and whether it is the role an assume call asks for."""
    if event.event_type == "AwsServiceEvent":
        return None
    acting = _acting(event, index)
    if acting is not None:
        return Match(acting)
    if event.event_source != STS_SOURCE:
        return None
    if event.event_name in ASSUME_EVENTS:
        requested = _requested(event, index)
    elif event.event_name == ASSUME_ROOT:
        requested = _requested_root(event, index)
    else:
        return None
    return Match(requested, requested=True) if requested is not None else None


def identify(event: TrailEvent, index: PrincipalIndex) -> Principal | None:
    """The break-glass principal ``event`` is a use of, or None."""
    found = match(event, index)
    return found.principal if found else None
