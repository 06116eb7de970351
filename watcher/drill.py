"""``breakglass-watcher drill``: one break-glass exercise end to end (the seed's steps 1-5).

1. **window**: refuse outside an open window of the exercise unless told to (a drill outside its
   window is, by design, reported as real use).
2. **credentials**: the ``audit`` credential checks of the principal.
3. **authenticate**: as the break-glass principal, then one harmless call (sts:GetCallerIdentity).
   A role is assumed with the operator's own credentials, with a session name derived from the
   exercise's ``session_name`` glob and a ``SourceIdentity`` naming the participant; a user is
   used through the credentials of a named AWS profile (``--profile``).
4. **detection**: poll the running watcher's ``/api/events`` (with backoff) until it reports the
   drill: an event of the principal, at or after the first break-glass call, with this session
   name, classified ``drill`` for this exercise. ``LookupEvents`` lags by minutes, so the default
   timeout is 30 minutes.
5. **record**: an exercise record in Markdown and JSON (``drill_record.py``).

Nothing here records CloudTrail events: in AWS, CloudTrail does. Against an emulator (the demo,
the tests), ``after_auth`` is the place to play CloudTrail's part.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from watcher.aws import AwsClients
from watcher.config import load_config
from watcher.credentials import check_credentials, key_label
from watcher.drill_record import (
    STEP_AUTHENTICATE,
    STEP_CREDENTIALS,
    STEP_DETECTION,
    STEP_WINDOW,
    Detection,
    ExerciseRecord,
    Step,
    record_basename,
    render_json,
    render_markdown,
    verdict,
)
from watcher.durations import format_duration
from watcher.errors import WatcherError
from watcher.inventory import discover
from watcher.model import Exercise, Principal, Rules, Window
from watcher.rules import load_rules
from watcher.schedule import next_window_start, window_at
from watcher.settings import Config

Clock = Callable[[], datetime]

DEFAULT_REGION = "us-east-1"
EVENTS_LIMIT = 500
SESSION_SECONDS = 900  # the shortest role session STS grants: a drill needs one call
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_NOT_SESSION_CHAR = re.compile(r"[^\w+=,.@-]", re.ASCII)
_STS_CONFIG = AioConfig(
    retries={"total_max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30
)
# Characters a glob class may be satisfied with, in order of preference.
_CLASS_CANDIDATES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_.@=,+"


def utc_now() -> datetime:
    return datetime.now(UTC)


class DrillRefused(WatcherError):
    """The drill was not started (no open window, unknown exercise, no principal to drill)."""


@dataclass(frozen=True, slots=True)
class DrillOptions:
    """What ``breakglass-watcher drill`` was asked to do; poll intervals are seconds."""

    config_path: Path
    exercise: str
    participants: tuple[str, ...] = ()
    profile: str | None = None
    watcher_url: str | None = None
    timeout: float = 1800.0
    records_dir: Path | None = None
    """Where the record goes; None: the config's ``records`` folder."""
    outside_window: bool = False
    poll_interval: float = 2.0
    max_poll_interval: float = 30.0


@dataclass(frozen=True, slots=True)
class Authentication:
    """The break-glass calls the drill made (what CloudTrail would record).

    ``at`` is taken just before the first call as the principal (the assume call for a role).
    ``access_key_id`` signed the GetCallerIdentity call: the session's temporary key for a
    role, the profile's key for a user.
    """

    method: Literal["assume-role", "profile"]
    at: datetime
    region: str
    account: str
    principal_arn: str
    caller_arn: str
    identity_arn: str
    access_key_id: str
    session_name: str | None = None
    source_identity: str | None = None


AfterAuthentication = Callable[[Authentication], Awaitable[None]]


class Output(Protocol):
    """Where progress goes: a text stream (``sys.stdout``) or anything that writes like one."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DrillResult:
    record: ExerciseRecord
    markdown_path: Path
    json_path: Path

    @property
    def exit_code(self) -> int:
        return 0 if self.record.ok else 1


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the watcher's report of the drill looks like (``session_name`` None: any)."""

    principal: str
    since: datetime
    session_name: str | None


# ------------------------------------------------------------------------------ pure helpers


def session_name_for(pattern: str | None, at: datetime) -> str:
    """A concrete STS session name satisfying the glob ``pattern``, stamped with ``at``.

    The first ``*`` becomes the UTC minute (``break-glass-exercise*`` →
    ``break-glass-exercise-20261126T1530Z``), later ones nothing; ``?`` and ``[...]`` take a
    character they accept. No pattern: ``break-glass-drill-<stamp>``.
    """
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    if pattern is None:
        return f"break-glass-drill-{stamp}"
    name = _fill_glob(pattern, stamp)
    if not fnmatchcase(name, pattern) or not _SESSION_NAME.fullmatch(name):
        raise DrillRefused(
            f"cannot make a valid STS session name (2-64 of letters, digits and +=,.@_-) "
            f"from the exercise's session_name {pattern!r} (tried {name!r})"
        )
    return name


def _fill_glob(pattern: str, stamp: str) -> str:
    out: list[str] = []
    stamped = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            if not stamped:
                joiner = "-" if out and out[-1][-1:].isalnum() else ""
                out.append(joiner + stamp)
                stamped = True
        elif char == "?":
            out.append("0")
        elif char == "[" and (close := pattern.find("]", i + 1)) != -1:
            chosen = [c for c in _CLASS_CANDIDATES if fnmatchcase(c, pattern[i - 1 : close + 1])]
            out.append(chosen[0] if chosen else "?")
            i = close + 1
        else:
            out.append(char)
    return "".join(out)


def source_identity_for(participants: tuple[str, ...]) -> str | None:
    """The first participant as an STS ``SourceIdentity`` (2-64 of ``[\\w+=,.@-]``), or None."""
    if not participants:
        return None
    name = _NOT_SESSION_CHAR.sub("-", participants[0].strip())[:64]
    return name if len(name) >= 2 else None


def choose_principal(rules: Rules, exercise: Exercise, profile: str | None) -> Principal:
    """The exercise's first user principal with ``--profile``, else its first role."""
    kind = "user" if profile else "role"
    for name in exercise.principals:
        principal = rules.principal(name)
        if principal is not None and principal.kind == kind:
            return principal
    if profile:
        hint = "--profile uses an IAM user's credentials; drill its roles without --profile"
    else:
        hint = "to drill a break-glass user, pass --profile with the user's credentials"
    raise DrillRefused(f"exercise {exercise.name!r} has no {kind} principal; {hint}")


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


# ------------------------------------------------------------------------------------ the drill


def run_drill(options: DrillOptions, *, out: TextIO) -> int:
    """Entry point of ``breakglass-watcher drill``: 0 when every step passed, 1 otherwise."""
    return asyncio.run(drill(options, out=out)).exit_code


async def drill(
    options: DrillOptions,
    *,
    out: Output,
    after_auth: AfterAuthentication | None = None,
    clock: Clock = utc_now,
) -> DrillResult:
    """Run the exercise and write its record; raises DrillRefused before starting."""
    config = load_config(options.config_path)
    rules = load_rules(config.rules_path)
    exercise = next((e for e in rules.exercises if e.name == options.exercise), None)
    if exercise is None:
        known = ", ".join(e.name for e in rules.exercises) or "none"
        raise DrillRefused(f"no exercise named {options.exercise!r} in the rules (known: {known})")
    principal = choose_principal(rules, exercise, options.profile)
    url = (options.watcher_url or listen_url(config.listen)).rstrip("/")
    started = clock()
    window = window_at(exercise, started)
    if window is None and not options.outside_window:
        raise DrillRefused(_refusal(exercise, started))
    session_name = (
        session_name_for(exercise.session_name, started) if principal.kind == "role" else None
    )
    source_identity = source_identity_for(options.participants) if session_name else None
    say = _Printer(out)
    say(f"Drill of exercise {exercise.name}: principal {principal.name}, watcher {url}")

    steps = [_window_step(window, started, clock())]
    say.step(steps[-1])
    notes = _notes(exercise, principal, window, options)
    issues: list[str] = []

    step, arn, found = await _credential_step(config, principal, clock)
    steps.append(step)
    issues += found
    say.step(step)

    begun = clock()
    try:
        if options.profile:
            auth = await _use_profile(config, principal, arn, options.profile, clock)
        else:
            auth = await assume_role(
                config.endpoint_url,
                _region(config, principal),
                _principal_arn(principal, arn),
                session_name or "",
                source_identity,
                clock,
            )
        steps.append(Step(STEP_AUTHENTICATE, "ok", begun, clock(), _auth_detail(auth)))
    except (WatcherError, ClientError, BotoCoreError) as exc:
        auth = None
        reason = _auth_failure(exc, source_identity)
        steps.append(Step(STEP_AUTHENTICATE, "failed", begun, clock(), reason))
        issues.append(f"authenticating as {principal.name} failed: {reason}")
    say.step(steps[-1])

    detection: Detection | None = None
    begun = clock()
    if auth is None:
        steps.append(
            Step(STEP_DETECTION, "skipped", begun, begun, "nothing to detect: no break-glass call")
        )
    else:
        if after_auth is not None:
            await after_auth(auth)
        expect = Expectation(principal.name, auth.at, auth.session_name)
        say(f"      waiting up to {_span(options.timeout)} for the watcher to report it")
        waited = await _wait_for_detection(url, expect, options, say)
        step, detection, problem = _detection_step(
            waited, auth, exercise, window is not None, url, options.timeout, begun, clock()
        )
        steps.append(step)
        if problem:
            issues.append(problem)
    say.step(steps[-1])

    finished = clock()
    record = ExerciseRecord(
        exercise=exercise.name,
        principal=principal.name,
        principal_arn=auth.principal_arn if auth else arn,
        participants=options.participants,
        started=started,
        finished=finished,
        window=window,
        session_name=session_name,
        source_identity=source_identity,
        watcher_url=url,
        steps=tuple(steps),
        detection=detection,
        issues=tuple(issues),
        notes=notes,
        next_window=next_window_start(exercise, finished),
    )
    say("")
    say(verdict(record))
    markdown_path, json_path = write_record(record, options.records_dir or config.records_path)
    say(f"Exercise record: {markdown_path} (and {json_path.name})")
    return DrillResult(record, markdown_path, json_path)


def write_record(record: ExerciseRecord, folder: Path) -> tuple[Path, Path]:
    """Write ``<stamp>-<exercise>.md`` and ``.json`` into ``folder`` (created if needed)."""
    base = record_basename(record)
    markdown_path, json_path = folder / f"{base}.md", folder / f"{base}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(render_markdown(record), encoding="utf-8")
        json_path.write_text(render_json(record), encoding="utf-8")
    except OSError as exc:
        raise WatcherError(
            f"cannot write the exercise record into {folder}: {exc.strerror or exc}"
        ) from exc
    return markdown_path, json_path


def _refusal(exercise: Exercise, now: datetime) -> str:
    upcoming = next_window_start(exercise, now)
    when = "it has no window ahead"
    if upcoming is not None:
        when = f"its next window opens {upcoming:%Y-%m-%d %H:%M} UTC"
    return (
        f"no window of exercise {exercise.name!r} is open now ({when}). A drill outside its "
        "window is reported as real, unexpected break-glass use and pages whoever is on call. "
        "Run it inside the window, or pass --outside-window to run it anyway."
    )


def _window_step(window: Window | None, begun: datetime, now: datetime) -> Step:
    if window is not None:
        detail = f"window open {window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC"
    else:
        detail = "no window open; run anyway as asked (--outside-window)"
    return Step(STEP_WINDOW, "ok", begun, now, detail)


def _notes(
    exercise: Exercise, principal: Principal, window: Window | None, options: DrillOptions
) -> tuple[str, ...]:
    notes = []
    if window is None:
        notes.append(
            "Run outside any window of the exercise (--outside-window): the watcher reports it "
            "as unexpected use, and the alerts for real break-glass use fire."
        )
    if exercise.require_mfa and principal.kind == "role":
        notes.append(
            "The exercise requires MFA, and this drill's assume call carries none: the watcher "
            "will not count it as a drill unless the caller's own session was MFA-authenticated."
        )
    if not options.participants:
        notes.append("No participants were named (--participant).")
    return tuple(notes)


async def _credential_step(
    config: Config, principal: Principal, clock: Clock
) -> tuple[Step, str | None, list[str]]:
    """The audit checks of ``principal`` only; returns the step, the IAM ARN found, issues."""
    begun = clock()
    scoped = replace(
        config,
        accounts=tuple(a for a in config.accounts if a.id == principal.account),
        inventory=replace(config.inventory, name_patterns=(), tags={}),
    )
    result = await discover(
        AwsClients(config.endpoint_url), scoped, Rules(principals=(principal,), exercises=())
    )
    facts = result.facts.get(principal.name)
    if facts is None:
        reasons = [f"{e.kind}: {e.message}" for e in result.errors] or ["no IAM facts"]
        detail = f"IAM of account {principal.account} could not be read: {'; '.join(reasons)}"
        return Step(STEP_CREDENTIALS, "failed", begun, clock(), detail), None, [detail]
    now = clock()
    checks = check_credentials(
        principal, facts, max_key_age=config.inventory.max_access_key_age, now=now
    )
    detail = "; ".join(f"{c.check} {'ok' if c.ok else 'FAILED'}: {c.reason}" for c in checks)
    issues = [f"credential check {c.check} failed: {c.reason}" for c in checks if not c.ok]
    entities = facts.roles if principal.kind == "role" else facts.users
    arn = entities[0].arn if entities else None
    status: Literal["ok", "failed"] = "failed" if issues else "ok"
    return Step(STEP_CREDENTIALS, status, begun, clock(), detail), arn, issues


def _region(config: Config, principal: Principal) -> str:
    account = next((a for a in config.accounts if a.id == principal.account), None)
    return account.regions[0] if account and account.regions else DEFAULT_REGION


def _principal_arn(principal: Principal, found: str | None) -> str:
    if found:
        return found
    if principal.arn:
        return principal.arn
    if not principal.iam_names:
        raise WatcherError(f"no IAM {principal.kind} of principal {principal.name} is known")
    return f"arn:aws:iam::{principal.account}:{principal.kind}/{principal.iam_names[0]}"


async def assume_role(
    endpoint_url: str | None,
    region: str,
    role_arn: str,
    session_name: str,
    source_identity: str | None,
    clock: Clock = utc_now,
) -> Authentication:
    """Assume the role with the operator's own credentials, then GetCallerIdentity as the
    session; raises WatcherError when the session is not who it should be."""
    session = get_session()
    async with session.create_client(
        "sts", region_name=region, endpoint_url=endpoint_url, config=_STS_CONFIG
    ) as sts:
        caller = await sts.get_caller_identity()
        params: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name,
            "DurationSeconds": SESSION_SECONDS,
        }
        if source_identity:
            params["SourceIdentity"] = source_identity
        at = clock()
        answer = await sts.assume_role(**params)
    credentials = answer["Credentials"]
    async with session.create_client(
        "sts",
        region_name=region,
        endpoint_url=endpoint_url,
        config=_STS_CONFIG,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    ) as as_role:
        identity = await as_role.get_caller_identity()
    role_name = role_arn.rsplit("/", 1)[-1]
    expected_tail = f":assumed-role/{role_name}/{session_name}".lower()
    if not str(identity["Arn"]).lower().endswith(expected_tail):
        raise WatcherError(
            f"the session's credentials identify as {identity['Arn']}, not a session "
            f"{session_name} of {role_arn}"
        )
    return Authentication(
        method="assume-role",
        at=at,
        region=region,
        account=str(identity["Account"]),
        principal_arn=role_arn,
        caller_arn=str(caller["Arn"]),
        identity_arn=str(identity["Arn"]),
        access_key_id=str(credentials["AccessKeyId"]),
        session_name=session_name,
        source_identity=source_identity,
    )


async def _use_profile(
    config: Config, principal: Principal, found_arn: str | None, profile: str, clock: Clock
) -> Authentication:
    """GetCallerIdentity with the profile's credentials, which must be the break-glass user's."""
    user_arn = _principal_arn(principal, found_arn)
    region = _region(config, principal)
    session = AioSession(profile=profile)
    credentials = await session.get_credentials()
    if credentials is None:
        raise WatcherError(f"AWS profile {profile!r} has no credentials")
    frozen = await credentials.get_frozen_credentials()
    async with session.create_client(
        "sts", region_name=region, endpoint_url=config.endpoint_url, config=_STS_CONFIG
    ) as sts:
        at = clock()
        identity = await sts.get_caller_identity()
    arn = str(identity["Arn"])
    if arn.lower() != user_arn.lower():
        raise WatcherError(
            f"profile {profile!r} authenticates as {arn}, not as the break-glass user {user_arn}"
        )
    return Authentication(
        method="profile",
        at=at,
        region=region,
        account=str(identity["Account"]),
        principal_arn=user_arn,
        caller_arn=arn,
        identity_arn=arn,
        access_key_id=str(frozen.access_key),
    )


def _auth_detail(auth: Authentication) -> str:
    if auth.method == "profile":
        return (
            f"sts:GetCallerIdentity with the profile's access key "
            f"{key_label(auth.access_key_id)} answered {auth.identity_arn}"
        )
    who = f", source identity {auth.source_identity}" if auth.source_identity else ""
    return (
        f"{auth.caller_arn} assumed {auth.principal_arn} as session {auth.session_name}{who}; "
        f"sts:GetCallerIdentity with the session's credentials answered {auth.identity_arn}"
    )


def _auth_failure(exc: Exception, source_identity: str | None) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        reason = f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
        if source_identity and error.get("Code") == "AccessDenied":
            reason += (
                " (the role's trust policy must also allow sts:SetSourceIdentity for the "
                "participant's source identity)"
            )
        return reason
    return str(exc)


# ------------------------------------------------------------------------------------ detection


@dataclass(frozen=True, slots=True)
class _Waited:
    event: Mapping[str, Any] | None
    seen_at: datetime | None
    error: str | None  # why the last poll failed, if it did
    polls: int


class _PollFailed(Exception):
    pass


async def _wait_for_detection(
    url: str, expect: Expectation, options: DrillOptions, say: _Printer
) -> _Waited:
    """Poll ``/api/events`` with backoff until the drill is reported or the timeout passes."""
    loop = asyncio.get_running_loop()
    begun = loop.time()
    deadline = begun + options.timeout
    delay = options.poll_interval
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
                    return _Waited(event, utc_now(), None, polls)
            except _PollFailed as exc:
                error = str(exc)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return _Waited(None, None, error, polls)
            pause = min(delay, remaining)
            status = f"watcher unreachable: {error}" if error else "not reported yet"
            say(
                f"      {_span(loop.time() - begun)} elapsed: {status}; "
                f"checking again in {pause:.1f}s"
            )
            await asyncio.sleep(pause)
            delay = min(delay * 1.5, options.max_poll_interval)


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


def _detection_step(
    waited: _Waited,
    auth: Authentication,
    exercise: Exercise,
    in_window: bool,
    url: str,
    timeout: float,
    begun: datetime,
    now: datetime,
) -> tuple[Step, Detection | None, str | None]:
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


class _Printer:
    """Progress lines for a person: written and flushed at once."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._steps = 0

    def __call__(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    def step(self, step: Step) -> None:
        self._steps += 1
        self(f"[{self._steps}] {step.name}: {step.status.upper()}: {step.detail}")
