"""Step 4 of a drill (docs/design.md "Drills"): wait until the running watcher reports it.

The watcher's ``/api/events`` is polled with back-off until it lists an event of the principal,
at or after the drill's first break-glass call, with the drill's session name; then its
classification is judged. ``LookupEvents`` lags by minutes, so the command waits up to 30
minutes by default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from watcher.clock import utc_now
from watcher.drill_auth import Authentication
from watcher.drill_record import STEP_DETECTION, Detection, Step
from watcher.durations import format_duration
from watcher.model import Exercise

EVENTS_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the watcher's report of the drill looks like (``session_name`` None: any)."""

    principal: str
    since: datetime
    session_name: str | None


def find_detection(
    events: Iterable[Mapping[str, Any]], expect: Expectation
) -> Mapping[str, Any] | None:
    """The first reported event matching ``expect``: earliest event time, then earliest stored.

    CloudTrail event times are whole seconds, so ``expect.since`` is compared to the second.
    """
    since = expect.since.replace(microsecond=0)
    found: list[tuple[datetime, str, Mapping[str, Any]]] = []
    for event in events:
        when = _event_time(event)
        if (
            when is not None
            and when >= since
            and event.get("principal") == expect.principal
            and (expect.session_name is None or event.get("session_name") == expect.session_name)
        ):
            found.append((when, str(event.get("stored_at", "")), event))
    return min(found, key=lambda item: item[:2])[2] if found else None


def judge_detection(event: Mapping[str, Any], exercise: str, in_window: bool) -> str | None:
    """The issue with how the watcher classified the drill, or None when it is as expected.

    Outside a window (``--outside-window``) any report is a detection: the drill is meant to be
    reported as real use.
    """
    classification = event.get("classification")
    matched = event.get("exercise")
    if (classification == "drill" and matched == exercise) or not in_window:
        return None
    if classification == "drill":
        return (
            f"the watcher counted the drill for exercise {matched!r}, not {exercise!r}: an "
            "exercise earlier in rule order was open and matched"
        )
    return (
        f"the watcher saw the drill but reported it as {classification} use: the window's "
        "conditions (session name, source address, MFA) did not hold for it, or the watcher "
        "runs other rules than this drill read"
    )


def listen_url(listen: tuple[str, int]) -> str:
    """The URL of a watcher listening on ``listen`` (a wildcard address means loopback)."""
    host, port = listen
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True, slots=True)
class Waited:
    """How waiting for the report ended."""

    event: Mapping[str, Any] | None
    seen_at: datetime | None
    error: str | None  # why the last poll failed, if it did
    polls: int


class _PollFailed(Exception):
    pass


async def wait_for_detection(
    url: str,
    expect: Expectation,
    *,
    within: float,
    poll_interval: float,
    max_poll_interval: float,
    say: Callable[[str], None],
) -> Waited:
    """Poll ``/api/events`` with backoff until the drill is reported or ``within`` passes;
    ``poll_interval`` grows by half each time, up to ``max_poll_interval`` (all seconds)."""
    say(f"      waiting up to {_span(within)} for the watcher to report it")
    loop = asyncio.get_running_loop()
    begun = loop.time()
    deadline = begun + within
    delay = poll_interval
    polls = 0
    error: str | None = None
    async with aiohttp.ClientSession() as http:
        while True:
            polls += 1
            try:
                events = await _fetch_events(http, url, min(10.0, max(deadline - loop.time(), 1.0)))
                error = None
                event = find_detection(events, expect)
                if event is not None:
                    return Waited(event, utc_now(), None, polls)
            except _PollFailed as exc:
                error = str(exc)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Waited(None, None, error, polls)
            pause = min(delay, remaining)
            status = f"watcher unreachable: {error}" if error else "not reported yet"
            say(
                f"      {_span(loop.time() - begun)} elapsed: {status}; "
                f"checking again in {pause:.1f}s"
            )
            await asyncio.sleep(pause)
            delay = min(delay * 1.5, max_poll_interval)


async def _fetch_events(
    http: aiohttp.ClientSession, url: str, seconds: float
) -> list[Mapping[str, Any]]:
    try:
        async with http.get(
            f"{url}/api/events",
            params={"limit": str(EVENTS_LIMIT)},
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as answer:
            if answer.status != 200:
                raise _PollFailed(f"{url}/api/events answered HTTP {answer.status}")
            body = await answer.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise _PollFailed(f"{url}/api/events: {exc or type(exc).__name__}") from exc
    if not isinstance(body, list):
        raise _PollFailed(f"{url}/api/events did not answer a list of events")
    return [e for e in body if isinstance(e, Mapping)]


def detection_step(
    waited: Waited,
    auth: Authentication,
    exercise: Exercise,
    in_window: bool,
    url: str,
    timeout: float,
    begun: datetime,
    now: datetime,
) -> tuple[Step, Detection | None, str | None]:
    """The step for the exercise record, the detection (if any) and the issue (if any)."""
    event = waited.event
    if event is None or waited.seen_at is None:
        problem = f"the watcher at {url} did not report the drill within {_span(timeout)}"
        if waited.error:
            problem += f"; it could not be reached ({waited.error})"
        return Step(STEP_DETECTION, "failed", begun, now, problem), None, problem
    detection = Detection(
        event_id=str(event.get("event_id")),
        event_name=str(event.get("event_name")),
        event_time=_event_time(event) or auth.at,
        classification=str(event.get("classification")),
        exercise=_text(event, "exercise"),
        source=_text(event, "source"),
        seen_at=waited.seen_at,
        delay=waited.seen_at - auth.at,
    )
    issue = judge_detection(event, exercise.name, in_window)
    what = f"reported {detection.event_name} as {detection.classification}"
    if detection.exercise:
        what += f" ({detection.exercise})"
    detail = (
        f"{what} via {detection.source or 'an unknown source'}, "
        f"{_span(detection.delay.total_seconds())} after the first call "
        f"({waited.polls} {'poll' if waited.polls == 1 else 'polls'} of /api/events)"
    )
    if issue:
        return (
            Step(STEP_DETECTION, "failed", begun, now, f"{detail}; {issue}"),
            detection,
            issue,
        )
    return Step(STEP_DETECTION, "ok", begun, now, detail), detection, None


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(event.get("event_time")))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _text(event: Mapping[str, Any], key: str) -> str | None:
    value = event.get(key)
    return value if isinstance(value, str) else None


def _span(seconds: float) -> str:
    return format_duration(timedelta(seconds=round(seconds, 1)))
