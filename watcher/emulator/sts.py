"""AssumeRole that checks the role exists, in the accounts asked for (moto's does not).

moto's ``assume_role`` succeeds for any role ARN. AWS answers AccessDenied when the role does
not exist (or does not trust the caller). :func:`require_roles_in` makes moto's server in this
process deny AssumeRole into a role missing from IAM, for the given accounts only, so that a test
can break one account's read role by not creating it; other accounts keep moto's behaviour.
Trust policies are not evaluated.
"""

from __future__ import annotations

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
                if not any(role.name == name for role in roles):
                    raise STSClientError(
                        "AccessDenied",
                        "User is not authorized to perform: sts:AssumeRole on resource: "
                        + role_arn,
                    )
            return original(self, **kwargs)

        STSBackend.assume_role = assume_role  # type: ignore[method-assign,assignment]
        _installed = True
