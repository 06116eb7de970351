"""The EventBridge rule pattern that forwards break-glass CloudTrail events to the watcher's queue.

The pattern is a pre-filter: it must let every event of a watched principal through (the watcher
decides exactly what an event is), and it keeps the queue quiet otherwise. So it errs on the wide
side where EventBridge cannot say exactly what docs/design.md "Identification" means:

- ``source`` is any ``aws.*`` source: a break-glass session may call any service, and customers
  cannot put events with an ``aws.`` source, so nothing forged reaches the queue. ``detail-type``
  is not filtered (sign-in events are spelled differently in practice: docs/design.md
  "Normalisation"); records are recognised by their ``userIdentity`` fields.
- IAM names compare case-insensitively (``equals-ignore-case``), accounts exactly.
- Users match on ``userIdentity.userName`` + ``accountId`` (a failed ``ConsoleLogin`` has no
  ``arn``); role sessions on ``sessionContext.sessionIssuer.userName`` + ``accountId`` (the issuer
  ARN carries the role's path, which a rule declared by name does not know); assume calls on
  ``requestParameters.roleArn`` ending in ``/NAME`` ignoring case, in any account (the caller's
  copy of a cross-account call is recorded in the caller's account); root on ``type`` Root +
  ``accountId``.
- Principals declared by ``name_pattern`` use ``wildcard``, which EventBridge matches
  case-sensitively: names differing in case from the (lower-case) pattern are not forwarded.

Alternatives are joined with ``$or`` inside ``detail``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

from watcher.errors import ConfigError, Problem
from watcher.model import Principal, Rules

# PutRule's limit on EventPattern (botocore model: EventPattern max 4096).
MAX_PATTERN_CHARS = 4096
_ASSUME_PREFIX = "AssumeRole"


def _names(principal: Principal) -> list[str]:
    names = set(principal.iam_names)
    if principal.arn and principal.kind in ("user", "role"):
        names.add(principal.arn.rsplit("/", 1)[-1].lower())
    return sorted(names)


def _ignore_case(values: list[str]) -> list[dict[str, str]]:
    return [{"equals-ignore-case": v} for v in values]


def _wildcard(glob: str) -> str:
    """An EventBridge wildcard for a lower-case glob: ``?`` and ``[...]`` widen to ``*``."""
    return re.sub(r"\*+", "*", re.sub(r"\[[^\]]*\]|\?", "*", glob))


def _alternatives(principals: tuple[Principal, ...]) -> list[dict[str, Any]]:
    users: dict[str, set[str]] = defaultdict(set)
    roles: dict[str, set[str]] = defaultdict(set)
    user_globs: dict[str, set[str]] = defaultdict(set)
    role_globs: dict[str, set[str]] = defaultdict(set)
    roots: set[str] = set()
    for p in principals:
        if p.kind == "root":
            roots.add(p.account)
            continue
        named, globbed = (users, user_globs) if p.kind == "user" else (roles, role_globs)
        named[p.account].update(_names(p))
        if p.name_pattern:
            globbed[p.account].add(_wildcard(p.name_pattern))

    alts: list[dict[str, Any]] = []
    for account in sorted(set(users) | set(user_globs)):
        matchers = _ignore_case(sorted(users[account])) + [
            {"wildcard": g} for g in sorted(user_globs[account])
        ]
        if matchers:
            alts.append(
                {
                    "userIdentity": {
                        "type": ["IAMUser"],
                        "accountId": [account],
                        "userName": matchers,
                    }
                }
            )
    role_suffixes: set[str] = set()
    role_arn_globs: set[str] = set()
    for account in sorted(set(roles) | set(role_globs)):
        names = sorted(roles[account])
        globs = sorted(role_globs[account])
        matchers = _ignore_case(names) + [{"wildcard": g} for g in globs]
        if not matchers:
            continue
        role_suffixes.update("/" + n for n in names)
        role_arn_globs.update("*/" + g for g in globs)
        alts.append(
            {
                "userIdentity": {
                    "type": ["AssumedRole"],
                    "sessionContext": {
                        "sessionIssuer": {"accountId": [account], "userName": matchers}
                    },
                }
            }
        )
    if role_suffixes or role_arn_globs:
        arn_matchers: list[dict[str, Any]] = [
            {"suffix": {"equals-ignore-case": s}} for s in sorted(role_suffixes)
        ] + [{"wildcard": g} for g in sorted(role_arn_globs)]
        alts.append(
            {
                "eventName": [{"prefix": _ASSUME_PREFIX}],
                "requestParameters": {"roleArn": arn_matchers},
            }
        )
    if roots:
        alts.append({"userIdentity": {"type": ["Root"], "accountId": sorted(roots)}})
    return alts


def eventbridge_pattern(rules: Rules) -> dict[str, Any]:
    """The rule's event pattern for every principal in ``rules``.

    Raises ConfigError when there is nothing to match or the pattern exceeds EventBridge's size
    limit (then split the principals over several rules).
    """
    alts = _alternatives(rules.principals)
    if not alts:
        raise ConfigError([Problem("rules", "principals", "no principals to match")])
    pattern: dict[str, Any] = {"source": [{"prefix": "aws."}], "detail": {"$or": alts}}
    size = len(json.dumps(pattern, separators=(",", ":")))
    if size > MAX_PATTERN_CHARS:
        raise ConfigError(
            [
                Problem(
                    "rules",
                    "principals",
                    f"the EventBridge pattern is {size} characters, more than EventBridge's "
                    f"{MAX_PATTERN_CHARS}: split the principals over several rules",
                )
            ]
        )
    return pattern


def eventbridge_pattern_json(rules: Rules) -> str:
    """``eventbridge_pattern`` as indented JSON, for ``breakglass-watcher render``."""
    return json.dumps(eventbridge_pattern(rules), indent=2)
