"""Drill or unexpected use (docs/design.md "Classification"), from the event and rules alone.

An event of a principal is a ``drill`` when a window of one of its exercises is open at the
event's ``eventTime`` and that exercise's conditions hold; the first such exercise in rule order
is recorded. Anything else is ``unexpected``. Never reads the clock.

One console role switch is several records: the ``SwitchRole`` sign-in event (the human's IP,
no MFA information), and the ``AssumeRole`` that AWS makes on the human's behalf, written in the
role's account (``AWSAccount`` caller) and, cross-account, in the caller's account (the user's
identity and MFA). AWS writes ``sourceIPAddress: "AWS Internal"`` into both copies. Each record
is judged only on the evidence it carries: ``source_cidrs`` is not held against those on-behalf
copies (their address is AWS's, the human's address is in ``SwitchRole``), and ``require_mfa`` is
not held against ``SwitchRole`` nor against an ``AWSAccount`` copy without an MFA serial (the
caller's MFA is in the caller-account copy and in the session's calls). Window and session
name apply to every record. So a correct switch-role drill is a drill in every record, and a
switch that lacks MFA or comes from the wrong network is still unexpected in the records that
carry that evidence.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from fnmatch import translate

from watcher.errors import MalformedEventError
from watcher.events import ASSUME_EVENTS, assumed_role_session, issued_access_key
from watcher.identify import PrincipalIndex, match
from watcher.model import Exercise, Outcome, Rules, TrailEvent, Verdict
from watcher.org_principals import declared_name
from watcher.schedule import WindowFinder


@dataclass(frozen=True, slots=True)
class _Conditions:
    exercise: Exercise
    session_name: re.Pattern[str] | None

    def hold(self, event: TrailEvent) -> bool:
        exercise = self.exercise
        if self.session_name is not None and (
            event.session_name is None or self.session_name.match(event.session_name) is None
        ):
            return False
        if exercise.require_mfa and not event.mfa_used and carries_mfa(event):
            return False
        if not exercise.source_cidrs or not carries_network(event):
            return True
        return _in_networks(event.source_ip, exercise)


AWS_INTERNAL = "AWS Internal"
_ON_BEHALF_CALLERS = frozenset({"AWSAccount", "AWSService"})


def on_behalf_copy(event: TrailEvent) -> bool:
    """An ``AssumeRole`` AWS made for a human's console role switch: ``sourceIPAddress`` is
    "AWS Internal" and the caller is the other account (``AWSAccount``) or AWS acting for the
    user (``invokedBy: "AWS Internal"``). Only AWS writes that address."""
    if event.event_name != "AssumeRole" or event.source_ip != AWS_INTERNAL:
        return False
    identity = event.identity
    return identity.get("type") in _ON_BEHALF_CALLERS or identity.get("invokedBy") == AWS_INTERNAL


def carries_network(event: TrailEvent) -> bool:
    """Whether the record's ``sourceIPAddress`` says where the human was."""
    return not on_behalf_copy(event)


def carries_mfa(event: TrailEvent) -> bool:
    """Whether the record says if the human used MFA (absence then means: no MFA)."""
    if event.event_name == "SwitchRole":
        return False  # the sign-in event of a switch has no session context
    if event.identity.get("type") in _ON_BEHALF_CALLERS:  # the role-account copy
        request = event.raw.get("requestParameters")
        return isinstance(request, dict) and request.get("serialNumber") is not None
    return True


def copy_rank(event: TrailEvent) -> int:
    """2 for a record carrying the caller's identity, 1 for the role-account copy of a
    cross-account assume call (``AWSAccount``/``AWSService`` caller); see ``Verdict``."""
    return 1 if event.identity.get("type") in _ON_BEHALF_CALLERS else 2


def _in_networks(source_ip: str | None, exercise: Exercise) -> bool:
    """Whether ``sourceIPAddress`` is an IP address inside one of the exercise's networks.

    "AWS Internal" or a host name is no address; an IPv6 address is never in an IPv4 network
    (``in`` compares versions, so mixed versions are simply not contained).
    """
    if source_ip is None:
        return False
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    return any(address in network for network in exercise.source_cidrs)


def session_key(event: TrailEvent, requested: bool) -> str | None:
    """What ties an event to one session: the key the session signs with.

    A successful assume call (of the requested role) issues the key its later calls carry; a
    failed one opened no session, and a console sign-in has no key, so those count by event id.
    ``CheckMfa`` is a step of a console sign-in, counted with that sign-in: no session of its own.
    """
    if event.event_name == "CheckMfa":
        return None
    if requested:
        return issued_access_key(event) or event.event_id
    if event.event_name == "ConsoleLogin":
        return event.event_id
    return event.access_key_id or event.event_id


class Classifier:
    """``rules`` prepared once: the principal index and each principal's exercises in rule order.

    Build one per rule set and keep it: it also holds the memo of exercise windows.
    """

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._windows = WindowFinder()
        self._index = PrincipalIndex(rules.principals)
        self._exercises: dict[str, tuple[_Conditions, ...]] = {
            p.name: tuple(
                _Conditions(e, re.compile(translate(e.session_name)) if e.session_name else None)
                for e in rules.exercises_of(p.name)
            )
            for p in rules.principals
        }

    def classify(self, event: TrailEvent) -> Verdict | None:
        """The verdict on ``event``, or None when it is no break-glass event.

        Raises MalformedEventError (never anything else of its own) for an event whose time
        no window computation can hold.
        """
        found = match(event, self._index)
        if found is None:
            return None
        principal = found.principal
        if (
            event.event_name in ASSUME_EVENTS
            and not found.requested
            and event.identity.get("type") == "AssumedRole"
        ):
            # A break-glass session assumed a role: its own session name is what counts.
            event = replace(event, session_name=assumed_role_session(event.identity.get("arn")))
        outcome: Outcome = "failure" if event.error_code is not None else "success"
        key = session_key(event, found.requested)
        rank = copy_rank(event)
        exercises = self._exercises.get(principal.name)
        if exercises is None:  # account: any, named for the record's account (identify.py)
            exercises = self._exercises.get(declared_name(principal), ())
        for conditions in exercises:
            try:
                window = self._windows.window_at(conditions.exercise, event.event_time)
            except (OverflowError, ValueError) as exc:  # normalise() bounds the years already
                raise MalformedEventError(
                    f"eventTime {event.event_time.isoformat()} cannot be placed in the windows "
                    f"of exercise {conditions.exercise.name}: {exc}"
                ) from None
            if window is not None and conditions.hold(event):
                return Verdict(
                    event=event,
                    principal=principal.name,
                    classification="drill",
                    outcome=outcome,
                    exercise=conditions.exercise.name,
                    window=window,
                    session_key=key,
                    copy_rank=rank,
                )
        return Verdict(
            event=event,
            principal=principal.name,
            classification="unexpected",
            outcome=outcome,
            session_key=key,
            copy_rank=rank,
        )
