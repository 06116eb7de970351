"""The data types every part of the watcher shares: principals, exercises, events, verdicts.

Pure data, no I/O. Loading and validation live in ``rules.py``/``config.py``; turning input
records into ``TrailEvent`` lives in ``events.py``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

PrincipalKind = Literal["user", "role", "root"]
Origin = Literal["declared", "discovered"]
Classification = Literal["drill", "unexpected"]
Outcome = Literal["success", "failure"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CLASSIFICATIONS: tuple[Classification, ...] = ("drill", "unexpected")
OUTCOMES: tuple[Outcome, ...] = ("success", "failure")


@dataclass(frozen=True, slots=True)
class Principal:
    """A break-glass identity, as declared in a rule file or discovered in IAM.

    ``iam_names`` are the lower-cased IAM user or role names that identify it in ``account``
    (IAM names are case-insensitive); ``name_pattern`` is a lower-cased glob matched against
    user/role names of ``account`` (``kind`` says which) for principals declared by pattern.
    """

    name: str
    kind: PrincipalKind
    account: str
    iam_names: tuple[str, ...] = ()
    name_pattern: str | None = None
    max_days_between_drills: int = 90
    origin: Origin = "declared"
    arn: str | None = None


@dataclass(frozen=True, slots=True)
class Exercise:
    """A scheduled drill: recurring (cron + ``duration``) or one-off (``start``/``end``).

    Times are timezone-aware. ``timezone`` is an IANA name; cron starts are local wall-clock
    times in it. ``session_name`` is a case-sensitive glob.
    """

    name: str
    principals: tuple[str, ...]
    timezone: str = "UTC"
    schedule: str | None = None
    duration: timedelta | None = None
    start: datetime | None = None
    end: datetime | None = None
    session_name: str | None = None
    source_cidrs: tuple[IPNetwork, ...] = ()
    require_mfa: bool = False
    expect_detection: bool = True


@dataclass(frozen=True, slots=True)
class Person:
    """Someone expected to be able to use ``principals``, and how CloudTrail shows them.

    ``source_identity`` is compared exactly (STS keeps its case); the IAM and Identity Center
    names are lower-cased (IAM user names are case-insensitive, and Identity Center user names
    usually are e-mail addresses). ``iam_user_account`` narrows ``iam_user`` to one account.
    """

    name: str
    principals: tuple[str, ...]
    source_identity: str | None = None
    identity_center_user: str | None = None
    identity_center_user_id: str | None = None
    iam_user: str | None = None
    iam_user_account: str | None = None
    max_days_between_drills: int = 180


@dataclass(frozen=True, slots=True)
class Window:
    """One occurrence of an exercise: ``[start, end)`` in UTC."""

    exercise: str
    start: datetime
    end: datetime

    def contains(self, t: datetime) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything loaded from ``rules/``, in rule order (files sorted by name, then file order)."""

    principals: tuple[Principal, ...]
    exercises: tuple[Exercise, ...]
    digest: str = ""
    people: tuple[Person, ...] = ()

    def principal(self, name: str) -> Principal | None:
        return next((p for p in self.principals if p.name == name), None)

    def exercises_of(self, principal: str) -> tuple[Exercise, ...]:
        return tuple(e for e in self.exercises if principal in e.principals)


@dataclass(frozen=True, slots=True)
class TrailEvent:
    """One CloudTrail record, whatever it arrived in (log file, EventBridge, LookupEvents).

    ``identity`` is the record's ``userIdentity``; ``raw`` the whole record. ``session_name`` and
    ``mfa_used`` are derived as docs/design.md "Normalisation" says (assume calls: from the request;
    sessions: from the assumed-role ARN and session context; ConsoleLogin: ``MFAUsed``).
    """

    event_id: str
    event_time: datetime
    account: str
    region: str
    event_name: str
    event_source: str
    identity: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)
    event_type: str | None = None
    session_name: str | None = None
    source_ip: str | None = None
    mfa_used: bool = False
    error_code: str | None = None
    shared_event_id: str | None = None
    access_key_id: str | None = None

    @property
    def dedup_key(self) -> str:
        """``sharedEventID`` if present (cross-account assumptions count once), else ``eventID``."""
        return self.shared_event_id or self.event_id


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the watcher decided about one break-glass event."""

    event: TrailEvent
    principal: str
    classification: Classification
    outcome: Outcome
    exercise: str | None = None
    window: Window | None = None
    session_key: str | None = None
    person: str | None = None
    """The declared person a drill event is attributed to (``people.py``), if any."""
    # Among records sharing a dedup key (the two account copies of one cross-account assume
    # call), the one with the highest rank decides: 2 carries the caller's identity, 1 is the
    # copy AWS writes in the role's account (``AWSAccount``/``AWSService`` caller).
    copy_rank: int = 2
