"""Credential health of break-glass principals: pure checks over facts gathered from IAM.

No I/O and no clock: ``inventory.py`` gathers the facts, callers pass ``now``. What a healthy
break-glass principal looks like here:

- **user**: exists; at least one *active* access key (the emergency CLI path must not depend on
  creating a key, which itself needs the IAM admin rights break glass exists to provide), every
  active key younger than the configured maximum age (last use is reported, not judged: an
  unused break-glass key is normal), a console login profile, and at least one MFA device.
- **role**: exists; its trust policy grants ``sts:AssumeRole*`` to someone and is not open to
  ``*`` without a condition. Whether it requires MFA (``aws:MultiFactorAuthPresent``) is reported
  but not failing: roles assumed through SAML/OIDC federation cannot carry that key, and a drill's
  ``require_mfa`` checks MFA at the time of use.
- **root**: only what IAM can tell about it: whether the account's root user has MFA. The other
  checks cannot be done for root and are omitted, not faked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, Literal

from watcher.model import Principal

CheckName = Literal[
    "exists",
    "access_key_active",
    "access_key_age",
    "login_profile",
    "mfa_device",
    "trust_policy",
    "drill_recency",
]

_ASSUME_ACTIONS = ("sts:assumerole", "sts:assumerolewithsaml", "sts:assumerolewithwebidentity")
_MFA_PRESENT = "aws:multifactorauthpresent"
_MFA_AGE = "aws:multifactorauthage"


@dataclass(frozen=True, slots=True)
class AccessKey:
    key_id: str
    active: bool
    created: datetime
    last_used: datetime | None = None


@dataclass(frozen=True, slots=True)
class UserFacts:
    name: str
    arn: str
    access_keys: tuple[AccessKey, ...] = ()
    login_profile: bool = False
    mfa_devices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RoleFacts:
    name: str
    arn: str
    trust_policy: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RootFacts:
    mfa_enabled: bool


@dataclass(frozen=True, slots=True)
class PrincipalFacts:
    """What IAM says about one principal's entities.

    ``missing`` are declared IAM names that do not exist; ``pattern_unmatched`` is set when the
    principal's ``name_pattern`` matched no entity. ``root`` is set for root principals only.
    """

    users: tuple[UserFacts, ...] = ()
    roles: tuple[RoleFacts, ...] = ()
    root: RootFacts | None = None
    missing: tuple[str, ...] = ()
    pattern_unmatched: bool = False


@dataclass(frozen=True, slots=True)
class CheckResult:
    principal: str
    check: CheckName
    ok: bool
    reason: str


def key_label(key_id: str) -> str:
    """A short, bounded label for an access key id: ``AKIA…1234``."""
    return f"{key_id[:4]}…{key_id[-4:]}"


def check_credentials(
    principal: Principal, facts: PrincipalFacts, *, max_key_age: timedelta, now: datetime
) -> list[CheckResult]:
    """Every credential check that applies to ``principal``, in a fixed order."""
    if principal.kind == "root":
        if facts.root is None:
            return []
        mfa = facts.root.mfa_enabled
        reason = "root user has MFA" if mfa else "no MFA device on the root user"
        return [CheckResult(principal.name, "mfa_device", mfa, reason)]
    results = [_exists(principal, facts)]
    if principal.kind == "user" and facts.users:
        labels = _key_labels(facts.users)
        users = facts.users
        results += [
            _combine(
                principal.name, "access_key_active", [_by(u, _key_active(u, labels)) for u in users]
            ),
            _combine(
                principal.name,
                "access_key_age",
                [_by(u, _key_age(u, labels, max_key_age, now)) for u in users],
            ),
            _combine(principal.name, "login_profile", [_by(u, _login_profile(u)) for u in users]),
            _combine(principal.name, "mfa_device", [_by(u, _mfa_device(u)) for u in users]),
        ]
    if principal.kind == "role" and facts.roles:
        parts = [_by(r, _trust(r.trust_policy)) for r in facts.roles]
        results.append(_combine(principal.name, "trust_policy", parts))
    return results


def access_key_ages(facts: PrincipalFacts, now: datetime) -> dict[str, float]:
    """Age in seconds of each access key of the principal's users, by key label."""
    labels = _key_labels(facts.users)
    return {
        labels[k.key_id]: max((now - k.created).total_seconds(), 0.0)
        for u in facts.users
        for k in u.access_keys
    }


def drill_due_at(
    principal: Principal, last_drill: datetime | None, first_watched: datetime
) -> datetime:
    """When the next drill is due: last drill (or, never drilled, first watched) + the limit."""
    return (last_drill or first_watched) + timedelta(days=principal.max_days_between_drills)


def drill_due(
    principal: Principal, last_drill: datetime | None, first_watched: datetime, now: datetime
) -> CheckResult:
    """Check ``drill_recency``: was the principal drilled within ``max_days_between_drills``?"""
    due = drill_due_at(principal, last_drill, first_watched)
    ok = now < due
    every = f"due every {principal.max_days_between_drills} days"
    if last_drill is None:
        reason = f"no drill since watching began {_span(now - first_watched)} ago"
    else:
        reason = f"last drill {_span(now - last_drill)} ago"
    reason += f", next due in {_span(due - now)}" if ok else f", {every}"
    return CheckResult(principal.name, "drill_recency", ok, reason)


def _exists(principal: Principal, facts: PrincipalFacts) -> CheckResult:
    problems = [f"{principal.kind} {name} does not exist" for name in facts.missing]
    if facts.pattern_unmatched:
        problems.append(f"no {principal.kind} matches {principal.name_pattern!r}")
    found = [*(u.name for u in facts.users), *(r.name for r in facts.roles)]
    if problems or not found:
        reason = "; ".join(problems) or f"{principal.kind} does not exist"
        return CheckResult(principal.name, "exists", False, reason)
    return CheckResult(
        principal.name, "exists", True, f"{principal.kind} {', '.join(found)} exists"
    )


def _by(entity: UserFacts | RoleFacts, verdict: tuple[bool, str]) -> tuple[str, bool, str]:
    return (entity.name, *verdict)


def _combine(principal: str, check: CheckName, parts: list[tuple[str, bool, str]]) -> CheckResult:
    """One result for a check over several entities: ok when all are; reasons named by entity."""
    if len(parts) == 1:
        _, ok, reason = parts[0]
        return CheckResult(principal, check, ok, reason)
    ok = all(p[1] for p in parts)
    return CheckResult(principal, check, ok, "; ".join(f"{name}: {why}" for name, _, why in parts))


def _key_labels(users: Iterable[UserFacts]) -> dict[str, str]:
    """Key id → label; a label two keys would share falls back to the full key id."""
    ids = [k.key_id for u in users for k in u.access_keys]
    counts = Counter(key_label(i) for i in ids)
    return {i: key_label(i) if counts[key_label(i)] == 1 else i for i in ids}


def _key_active(user: UserFacts, labels: Mapping[str, str]) -> tuple[bool, str]:
    if not user.access_keys:
        return False, "no access key"
    active = [labels[k.key_id] for k in user.access_keys if k.active]
    inactive = [labels[k.key_id] for k in user.access_keys if not k.active]
    if not active:
        noun = "access key" if len(inactive) == 1 else "access keys"
        return False, f"{noun} {', '.join(inactive)} inactive"
    reason = f"access key {', '.join(active)} active"
    if inactive:
        reason += f" ({', '.join(inactive)} inactive)"
    return True, reason


def _key_age(
    user: UserFacts, labels: Mapping[str, str], limit: timedelta, now: datetime
) -> tuple[bool, str]:
    active = [k for k in user.access_keys if k.active]
    if not active:
        return True, "no active access key"
    parts = []
    ok = True
    for key in active:
        age = now - key.created
        stale = age >= limit
        ok = ok and not stale
        used = f"last used {_span(now - key.last_used)} ago" if key.last_used else "never used"
        bound = f" (limit {_span(limit)})" if stale else ""
        parts.append(f"{labels[key.key_id]} {_span(age)} old{bound}, {used}")
    return ok, "; ".join(parts)


def _login_profile(user: UserFacts) -> tuple[bool, str]:
    if user.login_profile:
        return True, "console password set"
    return False, "no console login profile"


def _mfa_device(user: UserFacts) -> tuple[bool, str]:
    if user.mfa_devices:
        return True, f"MFA device {', '.join(user.mfa_devices)}"
    return False, "no MFA device"


def _trust(policy: Mapping[str, Any]) -> tuple[bool, str]:
    """Judge a role's trust policy: who may assume it, open to ``*``, MFA required."""
    grants = [s for s in _as_list(policy.get("Statement")) if _grants_assume(s)]
    if not grants:
        return False, "trust policy lets no one assume the role"
    if any(_open_to_anyone(s) and not s.get("Condition") for s in grants):
        return False, "trust policy open to *"
    who = sorted({p for s in grants for p in _principals(s)})
    reason = f"assumable by {', '.join(who)}"
    human = [s for s in grants if "AWS" in _principal_map(s) or _open_to_anyone(s)]
    if human:
        mfa = all(_requires_mfa(s.get("Condition")) for s in human)
        reason += "; requires MFA" if mfa else "; does not require MFA"
    return True, reason


def _grants_assume(statement: Mapping[str, Any]) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    if "NotAction" in statement:
        excluded = _as_list(statement["NotAction"])
        return not any(_action_matches(a, t) for a in excluded for t in _ASSUME_ACTIONS)
    return any(
        _action_matches(a, t) for a in _as_list(statement.get("Action")) for t in _ASSUME_ACTIONS
    )


def _action_matches(pattern: object, action: str) -> bool:
    return isinstance(pattern, str) and fnmatchcase(action, pattern.lower())


def _open_to_anyone(statement: Mapping[str, Any]) -> bool:
    if "NotPrincipal" in statement:
        return True
    return statement.get("Principal") == "*" or "*" in _as_list(
        _principal_map(statement).get("AWS")
    )


def _principal_map(statement: Mapping[str, Any]) -> Mapping[str, Any]:
    principal = statement.get("Principal")
    return principal if isinstance(principal, Mapping) else {}


def _principals(statement: Mapping[str, Any]) -> list[str]:
    if _open_to_anyone(statement):
        conditions = sorted(k for op in statement["Condition"].values() for k in op)
        return [f"* (if {', '.join(conditions)})"]
    return [str(v) for values in _principal_map(statement).values() for v in _as_list(values)]


def _requires_mfa(condition: object) -> bool:
    """True when a condition block can only hold for MFA-authenticated callers.

    ``BoolIfExists`` does not count: it passes when the key is absent (long-term keys).
    """
    if not isinstance(condition, Mapping):
        return False
    for operator, clauses in condition.items():
        if not isinstance(clauses, Mapping):
            continue
        for key, value in clauses.items():
            values = {str(v).lower() for v in _as_list(value)}
            key = key.lower()
            if operator == "Bool" and key == _MFA_PRESENT and values == {"true"}:
                return True
            if operator.startswith("NumericLess") and key == _MFA_AGE:
                return True
            if operator == "Null" and key == _MFA_AGE and values == {"false"}:
                return True
    return False


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _span(delta: timedelta) -> str:
    """A human span in whole days: ``132 days``, ``1 day``, ``less than a day``."""
    days = max(delta, timedelta(0)).days
    if days == 0:
        return "less than a day"
    return "1 day" if days == 1 else f"{days} days"
