"""The exercise windows as an iCalendar (RFC 5545) file a team calendar can subscribe to.

Pure: the windows come from ``schedule.py``, the text from the ``icalendar`` library; no clock,
no I/O. Each window is one ``VEVENT`` written in its exercise's time zone, with a ``VTIMEZONE``
for every zone used (RFC 5545 3.6.5), so a calendar shows the wall-clock time the exercise was
planned in. ``UID`` is derived from the exercise name and the window's start only, so importing
a newer file updates the events it already holds instead of duplicating them.

A local time that a fall-back change repeats stands in iCalendar for its *first* occurrence
(RFC 5545 3.3.5). A one-off window starting in the second occurrence is therefore written in
UTC, the one form that keeps the instant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from watcher.durations import format_duration
from watcher.model import Exercise, Principal, Rules, Window
from watcher.schedule import windows_overlapping

PRODID = "-//breakglass-watcher//exercise calendar//EN"
UID_DOMAIN = "breakglass-watcher"
DEFAULT_MONTHS = 12
MAX_MONTHS = 60
#: Windows per exercise at most (a cron firing every minute would otherwise make a huge file).
MAX_WINDOWS_PER_EXERCISE = 1000


def calendar_span(now: datetime, months: int) -> tuple[datetime, datetime]:
    """``[now, now + months)``, a month counted as 31 days so no window of the last one is cut."""
    return now, now + timedelta(days=31 * months)


def window_uid(window: Window) -> str:
    """Stable per window: the same exercise and start give the same UID in every file."""
    return f"{window.exercise}-{window.start.astimezone(UTC):%Y%m%dT%H%M%SZ}@{UID_DOMAIN}"


def render_calendar(
    rules: Rules,
    after: datetime,
    until: datetime,
    *,
    stamp: datetime,
    config_hint: str = "CONFIG",
) -> bytes:
    """Every window open at some time in ``[after, until)``, as an iCalendar file.

    ``stamp`` is the ``DTSTAMP`` of every event (when the file was made); ``config_hint`` is
    what the drill command in each description passes to ``-c``.
    """
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", "Break-glass exercises")
    for exercise in rules.exercises:
        zone = ZoneInfo(exercise.timezone)
        windows = windows_overlapping(exercise, after, until, limit=MAX_WINDOWS_PER_EXERCISE)
        for window in windows:
            calendar.add_component(_event(window, exercise, zone, rules, stamp, config_hint))
    # One VTIMEZONE per zone used, with the transitions of the span (and a year either side).
    calendar.add_missing_timezones(
        first_date=(after - timedelta(days=366)).date(),
        last_date=(until + timedelta(days=366)).date(),
    )
    ics: bytes = calendar.to_ical()
    return ics


def _event(
    window: Window,
    exercise: Exercise,
    zone: ZoneInfo,
    rules: Rules,
    stamp: datetime,
    config_hint: str,
) -> Event:
    event = Event()
    event.add("uid", window_uid(window))
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", _local(window.start, zone))
    event.add("dtend", _local(window.end, zone))
    event.add("summary", f"Break-glass drill: {exercise.name}")
    event.add("description", describe(exercise, rules, config_hint))
    event.add("categories", ["break-glass", "drill"])
    event.add("transp", "OPAQUE")
    return event


def _local(t: datetime, zone: ZoneInfo) -> datetime:
    """``t`` as wall-clock time in ``zone``, or in UTC where that wall-clock time is ambiguous
    and iCalendar would read it as the other instant."""
    local = t.astimezone(zone)
    if local.replace(fold=0).astimezone(UTC) != t.astimezone(UTC):
        return t.astimezone(UTC)
    return local.replace(fold=0)


def describe(exercise: Exercise, rules: Rules, config_hint: str = "CONFIG") -> str:
    """What a participant needs: who, which identities, the conditions and the command."""
    lines = [f"Exercise {exercise.name} of breakglass-watcher."]
    principals = [_principal(rules.principal(name), name) for name in exercise.principals]
    lines.append("Principals: " + "; ".join(principals))
    people = [p.name for p in rules.people if set(p.principals) & set(exercise.principals)]
    if people:
        lines.append("People expected to practise: " + ", ".join(people))
    if exercise.session_name is not None:
        lines.append(f"Role session name must match: {exercise.session_name}")
    conditions = []
    if exercise.source_cidrs:
        conditions.append("source network " + ", ".join(str(c) for c in exercise.source_cidrs))
    if exercise.require_mfa:
        conditions.append("MFA required")
    lines.append("Conditions: " + ("; ".join(conditions) or "none beyond the window"))
    if exercise.schedule is not None and exercise.duration is not None:
        lines.append(
            f"Schedule: {exercise.schedule} ({exercise.timezone}), "
            f"each window {format_duration(exercise.duration)}"
        )
    if not exercise.expect_detection:
        lines.append("A window without a drill is not reported as missed.")
    lines.append(
        f"Run: breakglass-watcher drill --exercise {exercise.name} -c {config_hint} "
        "--participant YOUR-NAME"
    )
    return "\n".join(lines)


def _principal(principal: Principal | None, name: str) -> str:
    if principal is None:
        return name
    where = principal.arn or f"{principal.kind} in account {principal.account}"
    return f"{principal.name} ({where})"
