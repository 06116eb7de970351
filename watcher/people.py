"""The people of the exercise programme: ``people:`` in the rules, and who a drill event shows.

Pure: parsing takes already-read YAML nodes, attribution takes one event; no clock, no I/O.

Attribution reads only what CloudTrail records about the human behind a session (record shapes
and where they come from: ``tests/data/people/README.md``):

1. the STS ``SourceIdentity`` (``drill --participant`` sets it): ``requestParameters.
   sourceIdentity`` of the ``AssumeRole`` and ``userIdentity.sessionContext.sourceIdentity`` of
   every call the session makes (it cannot be changed during the session, and role chaining
   keeps it);
2. an IAM Identity Center user: the session name of an ``AWSReservedSSO_*`` role session
   (Identity Center names the session after the user), or ``userIdentity.onBehalfOf.userId``;
3. an IAM user: the caller of the assuming call (``userIdentity.type`` ``IAMUser``), or the
   user a console ``SwitchRole`` came from (``additionalEventData.SwitchFrom``).

The first rule that names a declared person of the event's principal wins: a person not
declared for that principal is not credited with practising it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from watcher.model import Person, TrailEvent
from watcher.validation import At, Fields, Key, Report, check_mapping, text_items

DEFAULT_MAX_DAYS = 180
LABEL = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# STS: 2-64 of [\w+=,.@-], and not starting with the reserved "aws:".
_SOURCE_IDENTITY = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_IAM_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_USER_ARN = re.compile(
    r"arn:(?:aws|aws-cn|aws-us-gov):iam::(\d{12}):user/(?:[!-.0-~]+/)*([\w+=,.@-]{1,64})",
    re.ASCII,
)
_SSO_SESSION = re.compile(
    r"arn:(?:aws|aws-cn|aws-us-gov):sts::\d{12}:assumed-role/AWSReservedSSO_[^/]+/(.+)"
)
_IDENTITY_KEYS = ("source_identity", "identity_center_user", "identity_center_user_id", "iam_user")

PERSON_KEYS = {
    "name": Key("str", required=True),
    "principals": Key("list", required=True),
    "source_identity": Key("str"),
    "identity_center_user": Key("str"),
    "identity_center_user_id": Key("str"),
    "iam_user": Key("str"),
    "max_days_between_drills": Key("int"),
}


# ------------------------------------------------------------------------------------ parsing


def parse_person(node: object, at: At, report: Report) -> Person | None:
    """One ``people:`` item, or None with every problem reported."""
    before = len(report.problems)
    fields = check_mapping(node, PERSON_KEYS, at, report, what="a person (name:, principals:)")
    if fields is None:
        return None
    name = fields.text("name")
    if name is not None and not LABEL.fullmatch(name):
        report.add(
            at.key("name"),
            f"{name!r} is not a valid name: use 1-64 letters, digits and _.:- (it becomes a "
            "metric label)",
        )
    principals = _principals(fields, report)
    source_identity = _source_identity(fields, name, report)
    iam_user, iam_account = _iam_user(fields, report)
    max_days = fields.integer("max_days_between_drills")
    if max_days is not None and max_days < 1:
        report.add(at.key("max_days_between_drills"), f"{max_days} must be a positive number")
    center_user = fields.text("identity_center_user")
    if len(report.problems) > before or name is None:
        return None
    return Person(
        name=name,
        principals=principals,
        source_identity=source_identity,
        identity_center_user=center_user.lower() if center_user else None,
        identity_center_user_id=fields.text("identity_center_user_id"),
        iam_user=iam_user,
        iam_user_account=iam_account,
        max_days_between_drills=max_days or DEFAULT_MAX_DAYS,
    )


def _principals(fields: Fields, report: Report) -> tuple[str, ...]:
    at = fields.at.key("principals")
    names: list[str] = []
    for where, name in text_items(fields.items("principals"), at, report):
        if name in names:
            report.add(where, f"{name!r} is listed twice")
        else:
            names.append(name)
    if fields.has("principals") and not fields.items("principals"):
        report.add(at, "names no principal; list the principals this person should practise")
    return tuple(names)


def _source_identity(fields: Fields, name: str | None, report: Report) -> str | None:
    """The given one, checked; else the name when STS would accept it (``drill
    --participant NAME`` sets exactly that)."""
    given = fields.text("source_identity")
    if given is None:
        if name is not None and _SOURCE_IDENTITY.fullmatch(name) and not _reserved(name):
            return name
        return None
    if not _SOURCE_IDENTITY.fullmatch(given) or _reserved(given):
        report.add(
            fields.at.key("source_identity"),
            f"{given!r} is not a valid STS source identity: 2-64 letters, digits and +=,.@_-, "
            "not starting with aws:",
        )
        return None
    return given


def _reserved(value: str) -> bool:
    return value.lower().startswith("aws:")


def _iam_user(fields: Fields, report: Report) -> tuple[str | None, str | None]:
    """(lower-cased user name, account or None) from a bare name or a user ARN."""
    text = fields.text("iam_user")
    if text is None:
        return None, None
    at = fields.at.key("iam_user")
    arn = _USER_ARN.fullmatch(text)
    if arn is not None:
        return arn.group(2).lower(), arn.group(1)
    if text.startswith("arn:") or "/" in text:
        report.add(at, f"{text!r} is not an IAM user ARN like arn:aws:iam::123456789012:user/NAME")
    elif not _IAM_NAME.fullmatch(text):
        report.add(at, f"{text!r} is not a valid IAM user name: 1-64 letters, digits and +=,.@_-")
    else:
        return text.lower(), None
    return None, None


def check_people(
    people: Sequence[tuple[At, Person]], principals: Mapping[str, object], report: Report
) -> None:
    """Across files: names unique, principals declared, each identity one person's only."""
    names: dict[str, At] = {}
    owners: dict[tuple[str, str], str] = {}
    for at, person in people:
        first = names.setdefault(person.name, at)
        if first is not at:
            report.add(
                at.key("name"),
                f"person {person.name!r} is already declared at {first.file}: {first.path}",
            )
        for index, principal in enumerate(person.principals):
            if principal not in principals:
                known = ", ".join(principals) or "none"
                report.add(
                    at.key("principals").item(index),
                    f"no principal named {principal!r} (declared: {known})",
                )
        for key in _IDENTITY_KEYS:
            value = getattr(person, key)
            if value is None:
                continue
            if key == "iam_user" and person.iam_user_account:
                value = f"{person.iam_user_account}:{value}"
            owner = owners.setdefault((key, value), person.name)
            if owner != person.name:
                report.add(at.key(key), f"{value!r} already identifies person {owner!r}")


# -------------------------------------------------------------------------------- attribution


def attribute(event: TrailEvent, principal: str, people: Sequence[Person]) -> str | None:
    """The name of the declared person of ``principal`` that ``event`` shows, or None."""
    candidates = [p for p in people if principal in p.principals]
    if not candidates:
        return None
    identity = event.identity
    for source_identity in _source_identities(event):
        for person in candidates:
            if person.source_identity == source_identity:
                return person.name
    center_user, center_user_id = _identity_center(identity)
    for person in candidates:
        if center_user is not None and person.identity_center_user == center_user:
            return person.name
        if center_user_id is not None and person.identity_center_user_id == center_user_id:
            return person.name
    for account, user in _iam_users(event):
        for person in candidates:
            if person.iam_user == user and person.iam_user_account in (None, account):
                return person.name
    return None


def _source_identities(event: TrailEvent) -> list[str]:
    found = []
    request = event.raw.get("requestParameters")
    if isinstance(request, dict) and isinstance(request.get("sourceIdentity"), str):
        found.append(request["sourceIdentity"])
    context = event.identity.get("sessionContext")
    if isinstance(context, dict) and isinstance(context.get("sourceIdentity"), str):
        found.append(context["sourceIdentity"])
    return found


def _identity_center(identity: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(lower-cased user name of an ``AWSReservedSSO_*`` session, ``onBehalfOf.userId``)."""
    arn = identity.get("arn")
    sso = _SSO_SESSION.fullmatch(arn) if isinstance(arn, str) else None
    on_behalf = identity.get("onBehalfOf")
    user_id = on_behalf.get("userId") if isinstance(on_behalf, dict) else None
    return (
        sso.group(1).lower() if sso else None,
        user_id if isinstance(user_id, str) else None,
    )


def _iam_users(event: TrailEvent) -> list[tuple[str, str]]:
    """(account, lower-cased user name) of the IAM user acting or switching role."""
    found = []
    identity = event.identity
    name, account = identity.get("userName"), identity.get("accountId")
    if identity.get("type") == "IAMUser" and isinstance(name, str) and isinstance(account, str):
        found.append((account, name.lower()))
    extra = event.raw.get("additionalEventData")
    switch_from = extra.get("SwitchFrom") if isinstance(extra, dict) else None
    arn = _USER_ARN.fullmatch(switch_from) if isinstance(switch_from, str) else None
    if arn is not None:
        found.append((arn.group(1), arn.group(2).lower()))
    return found
