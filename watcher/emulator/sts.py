"""AssumeRole that checks the role exists and trusts someone, in the accounts asked for (moto's
does not).

moto's ``assume_role`` succeeds for any role ARN. AWS answers AccessDenied when the role does
not exist (or does not trust the caller). :func:`require_roles_in` makes moto's server in this
process deny AssumeRole into a role missing from IAM, or whose trust policy allows
``sts:AssumeRole`` to no AWS principal (a role that trusts only a service), for the given
accounts only, so that a test can break one account's read role by deleting it or by its trust
policy; other accounts keep moto's behaviour. Which AWS principal is trusted is not compared
with the caller.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

_lock = threading.Lock()
_strict: set[str] = set()
_installed = False


def require_roles_in(accounts: Iterable[str]) -> None:
    """From now on AssumeRole into these accounts needs the role to exist (replaces the set)."""
    global _installed
    with _lock:
        _strict.clear()
        _strict.update(accounts)
        if _installed:
            return
        from moto.iam.models import iam_backends
        from moto.sts.exceptions import STSClientError
        from moto.sts.models import STSBackend

        original = STSBackend.assume_role

        def assume_role(self: Any, **kwargs: Any) -> Any:
            role_arn = str(kwargs.get("role_arn", ""))
            account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
            with _lock:
                strict = account in _strict
            if strict:
                name = role_arn.rsplit("/", 1)[-1]
                roles = iam_backends[account]["aws"].roles.values()
                found = next((role for role in roles if role.name == name), None)
                if found is None or not trusts_aws(found.assume_role_policy_document):
                    raise STSClientError(
                        "AccessDenied",
                        "User is not authorized to perform: sts:AssumeRole on resource: "
                        + role_arn,
                    )
            return original(self, **kwargs)

        STSBackend.assume_role = assume_role  # type: ignore[method-assign,assignment]
        _installed = True


def trusts_aws(document: object) -> bool:
    """Whether a trust policy (JSON text or parsed) allows ``sts:AssumeRole`` to an AWS
    principal (an account, user or role; ``*``)."""
    try:
        policy = json.loads(document) if isinstance(document, str) else document
    except ValueError:
        return False
    statements = policy.get("Statement", []) if isinstance(policy, dict) else []
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        principal = statement.get("Principal")
        to_aws = principal == "*" or (isinstance(principal, dict) and "AWS" in principal)
        if to_aws and any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions):
            return True
    return False
