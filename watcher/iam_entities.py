"""IAM users and roles as ``GetAccountAuthorizationDetails`` pages describe them (no I/O).

One page holds ``UserDetailList`` and ``RoleDetailList`` items (with ``Filter=[User, Role]``;
groups and policies are not asked for). What the inventory needs of each is in the item itself:
name, path, ARN, creation date, ``Tags`` and, for a role, ``AssumeRolePolicyDocument``. Access
keys, MFA devices and login profiles are not (AWS documents no such fields): those are read per
break-glass user, in ``inventory.py``.

botocore gives ``CreateDate`` as a datetime and the trust policy decoded from its URL-encoded
JSON; the AWS documentation's examples (and other clients) show ISO 8601 text and may leave the
policy encoded, so both forms are read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote

EntityKind = Literal["user", "role"]

UNKNOWN_AGE = datetime.min.replace(tzinfo=UTC)  # sorts first: no CreateDate, no bound to lose


@dataclass(frozen=True, slots=True)
class IamEntity:
    """An IAM user or role. ``tags``: keys and values lower-cased (compared case-insensitively)."""

    kind: EntityKind
    name: str
    arn: str
    path: str
    trust_policy: Mapping[str, Any]
    created: datetime = UNKNOWN_AGE
    tags: Mapping[str, str] = field(default_factory=dict)


def page_entities(page: Mapping[str, Any]) -> Iterator[IamEntity]:
    """The users, then the roles, of one page (items without a name or ARN are skipped)."""
    for kind, key, name_key in (
        ("user", "UserDetailList", "UserName"),
        ("role", "RoleDetailList", "RoleName"),
    ):
        for item in page.get(key) or ():
            if not isinstance(item, Mapping):
                continue
            name, arn = item.get(name_key), item.get("Arn")
            if not isinstance(name, str) or not isinstance(arn, str):
                continue
            yield IamEntity(
                kind,  # type: ignore[arg-type]  # one of the two literals above
                name,
                arn,
                str(item.get("Path") or "/"),
                _policy(item.get("AssumeRolePolicyDocument")) if kind == "role" else {},
                _date(item.get("CreateDate")),
                _tags(item.get("Tags")),
            )


def has_tags(entity: IamEntity, wanted: Mapping[str, str]) -> bool:
    """Whether ``entity`` carries every ``wanted`` tag (keys and values in any case)."""
    return all(entity.tags.get(k.lower()) == v.lower() for k, v in wanted.items())


def _policy(document: object) -> Mapping[str, Any]:
    """A trust policy as a mapping; an encoded one is decoded; unreadable: empty (trusts no one,
    which fails the ``trust_policy`` check rather than passing it)."""
    if isinstance(document, Mapping):
        return document
    if isinstance(document, str):
        try:
            decoded = json.loads(unquote(document))
        except ValueError:
            return {}
        return decoded if isinstance(decoded, Mapping) else {}
    return {}


def _date(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return UNKNOWN_AGE
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return UNKNOWN_AGE


def _tags(tags: object) -> dict[str, str]:
    if not isinstance(tags, list):
        return {}
    return {
        str(t["Key"]).lower(): str(t.get("Value", "")).lower()
        for t in tags
        if isinstance(t, Mapping) and "Key" in t
    }
