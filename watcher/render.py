"""The EventBridge rule patterns that forward break-glass CloudTrail events to the watcher's queue.

A pattern is a pre-filter: it must let every record shape that identification attributes to a
watched principal through (the watcher decides exactly what an event is, and drops the rest),
and it keeps the queue quiet otherwise. So it errs on the wide side where EventBridge cannot
say exactly what docs/design.md "Identification" means:

- ``source`` is any ``aws.*`` source: a break-glass session may call any service, and customers
  cannot put events with an ``aws.`` source, so nothing forged reaches the queue. ``detail-type``
  is not filtered (sign-in events are spelled differently in practice: docs/design.md
  "Normalisation"); records are
  recognised by their ``userIdentity`` fields.
- Names are compacted across accounts: one list of user names and one of role names, whatever
  account declares them (accounts are not in the pattern; the daemon compares them exactly). An
  organisation with the same break-glass role in every account has a pattern of constant size.
  IAM names compare case-insensitively (``equals-ignore-case``).
- Users: ``IAMUser`` + ``userName`` (a failed ``ConsoleLogin`` and ``CheckMfa`` have no ``arn``),
  and ``FederatedUser`` sessions whose issuer has that name (``GetFederationToken``).
- Role sessions: ``sessionContext.sessionIssuer.userName`` (the issuer ARN carries the role's
  path, which a rule declared by name does not know); console sign-in records of role sessions
  (``SwitchRole``) have no session context: every ``AssumedRole`` record without a session issuer
  is forwarded (human console sign-ins only).
- Assume calls: ``requestParameters.roleArn`` ending in ``/NAME`` ignoring case, in any account
  (the caller's copy of a cross-account call is recorded in the caller's account). A denied call
  has ``requestParameters: null`` and names the role only in ``errorMessage``, which EventBridge
  cannot parse: every failed ``AssumeRole*`` is forwarded.
- Root: ``type`` Root + ``accountId``; ``AssumeRoot`` calls (rare) are forwarded.
- Principals declared by ``name_pattern`` use ``wildcard``, which EventBridge matches
  case-sensitively: names differing in case from the (lower-case) pattern are not forwarded.

Alternatives are joined with ``$or`` inside ``detail``. EventBridge allows 4096 characters per
pattern: when the names do not fit, they are spread over several patterns (one rule each); the
fixed alternatives go into the first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from watcher.errors import ConfigError, Problem
from watcher.model import Principal, Rules

# PutRule's limit on EventPattern (botocore model: EventPattern max 4096).
MAX_PATTERN_CHARS = 4096
_ASSUME_PREFIX = "AssumeRole"
_SOURCE = [{"prefix": "aws."}]


def _names(principal: Principal) -> list[str]:
    names = set(principal.iam_names)
    if principal.arn and principal.kind in ("user", "role"):
        names.add(principal.arn.rsplit("/", 1)[-1].lower())
    return sorted(names)


def _wildcard(glob: str) -> str:
    """An EventBridge wildcard for a lower-case glob: ``?`` and ``[...]`` widen to ``*``."""
    return re.sub(r"\*+", "*", re.sub(r"\[[^\]]*\]|\?", "*", glob))


@dataclass
class _Names:
    """What one pattern matches by name."""

    users: set[str] = field(default_factory=set)
    user_globs: set[str] = field(default_factory=set)
    roles: set[str] = field(default_factory=set)
    role_globs: set[str] = field(default_factory=set)
    roots: set[str] = field(default_factory=set)

    def add(self, principal: Principal) -> None:
        if principal.kind == "root":
            self.roots.add(principal.account)
            return
        named, globbed = (
            (self.users, self.user_globs)
            if principal.kind == "user"
            else (self.roles, self.role_globs)
        )
        named.update(_names(principal))
        if principal.name_pattern:
            globbed.add(_wildcard(principal.name_pattern))

    def copy(self) -> _Names:
        return _Names(
            set(self.users),
            set(self.user_globs),
            set(self.roles),
            set(self.role_globs),
            set(self.roots),
        )


def _matchers(names: set[str], globs: set[str], prefix: str = "") -> list[dict[str, Any]]:
    return [{"equals-ignore-case": n} for n in sorted(names)] + [
        {"wildcard": prefix + g} for g in sorted(globs)
    ]


def _fixed(principals: tuple[Principal, ...]) -> list[dict[str, Any]]:
    """Alternatives that do not grow with the principals (only in the first pattern)."""
    alts: list[dict[str, Any]] = []
    if any(p.kind == "role" for p in principals):
        alts.append({"eventName": [{"prefix": _ASSUME_PREFIX}], "errorCode": [{"exists": True}]})
        alts.append(
            {
                "userIdentity": {
                    "type": ["AssumedRole"],
                    "sessionContext": {"sessionIssuer": {"type": [{"exists": False}]}},
                }
            }
        )
    if any(p.kind == "root" for p in principals):
        alts.append({"eventName": ["AssumeRoot"]})
    return alts


def _by_name(names: _Names) -> list[dict[str, Any]]:
    alts: list[dict[str, Any]] = []
    users = _matchers(names.users, names.user_globs)
    if users:
        alts.append({"userIdentity": {"type": ["IAMUser"], "userName": users}})
        alts.append(
            {
                "userIdentity": {
                    "type": ["FederatedUser"],
                    "sessionContext": {"sessionIssuer": {"userName": users}},
                }
            }
        )
    roles = _matchers(names.roles, names.role_globs)
    if roles:
        alts.append(
            {
                "userIdentity": {
                    "type": ["AssumedRole"],
                    "sessionContext": {"sessionIssuer": {"userName": roles}},
                }
            }
        )
        arn_matchers: list[dict[str, Any]] = [
            {"suffix": {"equals-ignore-case": "/" + n}} for n in sorted(names.roles)
        ] + [{"wildcard": "*/" + g} for g in sorted(names.role_globs)]
        alts.append(
            {
                "eventName": [{"prefix": _ASSUME_PREFIX}],
                "requestParameters": {"roleArn": arn_matchers},
            }
        )
    if names.roots:
        alts.append({"userIdentity": {"type": ["Root"], "accountId": sorted(names.roots)}})
    return alts


def _pattern(alternatives: list[dict[str, Any]]) -> dict[str, Any]:
    return {"source": _SOURCE, "detail": {"$or": alternatives}}


def _size(pattern: dict[str, Any]) -> int:
    return len(json.dumps(pattern, separators=(",", ":")))


def eventbridge_patterns(rules: Rules) -> list[dict[str, Any]]:
    """The rule patterns for every principal in ``rules``: as few as fit EventBridge's size
    limit, each at most ``MAX_PATTERN_CHARS`` long (compact JSON).

    Raises ConfigError when there is nothing to match, or one principal alone does not fit.
    """
    principals = rules.principals
    if not principals:
        raise ConfigError([Problem("rules", "principals", "no principals to match")])
    fixed = _fixed(principals)
    patterns: list[dict[str, Any]] = []
    current, extra = _Names(), fixed
    for principal in sorted(principals, key=lambda p: (p.kind, p.account, p.name)):
        trial = current.copy()
        trial.add(principal)
        if _size(_pattern(extra + _by_name(trial))) <= MAX_PATTERN_CHARS:
            current = trial
            continue
        if current == _Names():
            raise ConfigError(
                [
                    Problem(
                        "rules",
                        f"principals.{principal.name}",
                        f"its EventBridge pattern alone exceeds EventBridge's "
                        f"{MAX_PATTERN_CHARS} characters",
                    )
                ]
            )
        patterns.append(_pattern(extra + _by_name(current)))
        current, extra = _Names(), []
        current.add(principal)
    patterns.append(_pattern(extra + _by_name(current)))
    return patterns


def eventbridge_pattern(rules: Rules) -> dict[str, Any]:
    """The one pattern for every principal in ``rules``.

    Raises ConfigError when there is nothing to match or the principals need more than one
    pattern (then use ``eventbridge_patterns``: one rule per pattern).
    """
    patterns = eventbridge_patterns(rules)
    if len(patterns) > 1:
        raise ConfigError(
            [
                Problem(
                    "rules",
                    "principals",
                    f"the principals need {len(patterns)} EventBridge patterns of at most "
                    f"{MAX_PATTERN_CHARS} characters: render eventbridge-patterns and create "
                    "one rule per pattern",
                )
            ]
        )
    return patterns[0]


def eventbridge_pattern_json(rules: Rules) -> str:
    """``eventbridge_pattern`` as indented JSON, for ``breakglass-watcher render``."""
    return json.dumps(eventbridge_pattern(rules), indent=2)


def eventbridge_patterns_lines(rules: Rules) -> str:
    """``eventbridge_patterns`` as compact JSON, one pattern per line."""
    return "\n".join(json.dumps(p, separators=(",", ":")) for p in eventbridge_patterns(rules))
