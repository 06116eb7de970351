"""Drill or unexpected use (DESIGN.md "classify"): a pure function of event and rules.

An event of a principal is a ``drill`` when a window of one of its exercises is open at the
event's ``eventTime`` and that exercise's conditions hold; the first such exercise in rule order
is recorded. Anything else is ``unexpected``. Never reads the clock.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from fnmatch import translate

from watcher.errors import MalformedEventError
from watcher.events import ASSUME_EVENTS, assumed_role_session
from watcher.identify import PrincipalIndex, match
from watcher.model import Exercise, Outcome, Rules, TrailEvent, Verdict
from watcher.schedule import window_at


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
        if exercise.require_mfa and not event.mfa_used:
            return False
        return not exercise.source_cidrs or _in_networks(event.source_ip, exercise)


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


def session_key(event: TrailEvent, requested: bool) -> str:
    """What ties an event to one session: the key the session signs with.

    A successful assume call (of the requested role) issues the key its later calls carry; a
    failed one opened no session, and a console sign-in has no key, so those count by event id.
    """
    if requested:
        response = event.raw.get("responseElements")
        credentials = response.get("credentials") if isinstance(response, dict) else None
        issued = credentials.get("accessKeyId") if isinstance(credentials, dict) else None
        return issued if isinstance(issued, str) and issued else event.event_id
    if event.event_name == "ConsoleLogin":
        return event.event_id
    return event.access_key_id or event.event_id


class Classifier:
    """``rules`` prepared once: the principal index and each principal's exercises in rule order."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
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
        for conditions in self._exercises.get(principal.name, ()):
            try:
                window = window_at(conditions.exercise, event.event_time)
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
                )
        return Verdict(
            event=event,
            principal=principal.name,
            classification="unexpected",
            outcome=outcome,
            session_key=key,
        )


_last: Classifier | None = None


def classify(event: TrailEvent, rules: Rules) -> Verdict | None:
    """``Classifier(rules).classify(event)``, reusing the classifier while ``rules`` is the same
    object."""
    global _last
    classifier = _last
    if classifier is None or classifier.rules is not rules:
        classifier = _last = Classifier(rules)
    return classifier.classify(event)
