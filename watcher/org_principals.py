"""``account: any``: one rule for the same break-glass user or role in every watched account.

A principal declared with ``account: any`` becomes one principal per watched account, named
``NAME@ACCOUNT``: the ``principal`` label stays one per account and role, bounded by the
accounts watched, and says which account's break-glass identity was used (the question an alert
has to answer). Exercises and people that name ``NAME`` name every expansion. Expanding again
when the accounts change (an organization grows) follows the accounts.

Offline (``replay``) the accounts are not known: identification (``identify.py``) names a record
of any account that matches the rule with :func:`for_account`, the same principal the daemon's
expansion has for that account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from watcher.model import Exercise, Person, Principal, Rules
from watcher.rules import ANY_ACCOUNT


def expanded_name(name: str, account: str) -> str:
    return f"{name}@{account}"


def declared_name(principal: Principal) -> str:
    """The rule's name of ``NAME@ACCOUNT`` (the name itself for any other principal)."""
    return principal.name.removesuffix(f"@{principal.account}")


def expand(rules: Rules, accounts: Sequence[str]) -> Rules:
    """``rules`` with every ``account: any`` principal replaced by one per account."""
    wide = {p.name: p for p in rules.principals if p.account == ANY_ACCOUNT}
    if not wide:
        return rules
    principals: list[Principal] = []
    for principal in rules.principals:
        if principal.name not in wide:
            principals.append(principal)
            continue
        principals += [for_account(principal, account) for account in accounts]

    def names(listed: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(
            n
            for name in listed
            for n in ([expanded_name(name, a) for a in accounts] if name in wide else [name])
        )

    exercises: list[Exercise] = [
        replace(e, principals=names(e.principals)) for e in rules.exercises
    ]
    people: list[Person] = [replace(p, principals=names(p.principals)) for p in rules.people]
    return Rules(tuple(principals), tuple(exercises), rules.digest, tuple(people))


def for_account(principal: Principal, account: str) -> Principal:
    """The ``account: any`` ``principal`` as it is in ``account``: ``NAME@ACCOUNT``."""
    return replace(
        principal,
        name=expanded_name(principal.name, account),
        account=account,
        arn=_arn(principal, account),
    )


def _arn(principal: Principal, account: str) -> str | None:
    """The rule's ARN (``arn:PARTITION:iam::any:KIND/Name``, the name as written) in ``account``."""
    if principal.arn is None:
        return None  # a name pattern: the ARN is per matching identity
    head, _, tail = principal.arn.partition(f"::{ANY_ACCOUNT}:")
    return f"{head}::{account}:{tail}"


def expansion_notes(
    rules: Rules, listed: Sequence[str] | None = None, organization: bool = False
) -> list[str]:
    """What ``validate`` says of each ``account: any`` principal: how it expands over the
    ``listed`` accounts and the ``organization``'s (None: no config, the accounts unknown)."""
    if listed is None:
        over = "each watched account"
    elif organization:
        over = "each account of the organization (listed when the watcher runs)"
        over += f" and each of the {len(listed)} listed accounts" if listed else ""
    else:
        over = f"each of the {len(listed)} listed accounts"
    return [
        f"principal {p.name}: account: any, one principal for {over}, named {p.name}@ACCOUNT"
        for p in rules.principals
        if p.account == ANY_ACCOUNT
    ]
