"""``breakglass-watcher drill``: one break-glass exercise end to end (docs/design.md "Drills").

1. **window**: refuse outside an open window of the exercise unless told to (a drill outside its
   window is, by design, reported as real use).
2. **credentials**: the ``audit`` credential checks of the principal.
3. **authenticate**: as the break-glass principal, then one harmless call (``drill_auth.py``).
4. **detection**: wait until the running watcher reports the drill (``drill_detection.py``).
5. **record**: an exercise record in Markdown and JSON (``drill_record.py``).

Nothing here records CloudTrail events: in AWS, CloudTrail does. Against an emulator (the demo,
the tests), ``after_auth`` is the place to play CloudTrail's part.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal, Protocol, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from watcher.aws import AwsClients
from watcher.clock import Clock, utc_now
from watcher.config import load_config
from watcher.credentials import check_credentials
from watcher.drill_auth import (
    AfterAuthentication,
    Authentication,
    assume_role,
    describe,
    failure_reason,
    use_profile,
)
from watcher.drill_detection import (
    Expectation,
    detection_step,
    listen_url,
    wait_for_detection,
)
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
from watcher.errors import WatcherError
from watcher.inventory import discover
from watcher.model import Exercise, Principal, Rules, Window
from watcher.org_principals import for_account
from watcher.organization import ACTIVE, Member, org_accounts
from watcher.rules import ANY_ACCOUNT, load_rules
from watcher.schedule import next_window_start, window_at
from watcher.settings import Config

DEFAULT_REGION = "us-east-1"
_ACCOUNT_ID = re.compile(r"\d{12}", re.ASCII)
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_NOT_SESSION_CHAR = re.compile(r"[^\w+=,.@-]", re.ASCII)
# Characters a glob class may be satisfied with, in order of preference.
_CLASS_CANDIDATES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_.@=,+"


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
    account: str | None = None
    """``--account``: the account whose role or user an ``account: any`` principal drills."""
    poll_interval: float = 2.0
    max_poll_interval: float = 30.0


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


def in_account(principal: Principal, account: str | None) -> Principal:
    """The principal to drill: an ``account: any`` one as it is in ``--account``
    (``NAME@ACCOUNT``, the name the watcher reports its uses under), any other as declared."""
    if account is not None and not _ACCOUNT_ID.fullmatch(account):
        raise DrillRefused(f"--account {account!r} is not an AWS account id (12 digits)")
    if principal.account != ANY_ACCOUNT:
        if account is not None and account != principal.account:
            raise DrillRefused(
                f"--account {account}: principal {principal.name} is in account "
                f"{principal.account} only; leave --account out"
            )
        return principal
    if account is None:
        raise DrillRefused(
            f"principal {principal.name} is declared with account: any (one per account): "
            f"name the account whose {principal.kind} to drill with --account ACCOUNT_ID"
        )
    return for_account(principal, account)


def with_account(config: Config, account: str) -> Config:
    """``config`` watching ``account`` too when it is an account of the organization, read
    through ``role_name`` as the daemon reads it. Otherwise ``config`` as it is (an account
    neither listed nor in an organization fails the credentials step, saying so)."""
    organization = config.organization
    if organization is None or any(a.id == account for a in config.accounts):
        return config
    found = org_accounts(organization, [Member(account, ACTIVE)], management=None)
    if not found:
        raise DrillRefused(f"account {account} is excluded from the organization's accounts")
    return replace(config, accounts=(*config.accounts, *found))


# ------------------------------------------------------------------------------------ the drill


def run_drill(options: DrillOptions, *, out: TextIO) -> int:
    """Entry point of ``breakglass-watcher drill``: 0 when every step passed, 1 otherwise."""
    return asyncio.run(drill(options, out=out)).exit_code


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the drill will do, settled before its first step."""

    config: Config
    exercise: Exercise
    principal: Principal
    url: str
    started: datetime
    window: Window | None
    session_name: str | None
    source_identity: str | None


@dataclass
class _Progress:
    """The steps taken so far and the issues found, each step printed as it is added."""

    say: _Printer
    steps: list[Step] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)

    def add(self, step: Step, issues: list[str] | None = None) -> None:
        self.steps.append(step)
        self.issues += issues or []
        self.say.step(step)


async def drill(
    options: DrillOptions,
    *,
    out: Output,
    after_auth: AfterAuthentication | None = None,
    clock: Clock = utc_now,
) -> DrillResult:
    """Run the exercise and write its record; raises DrillRefused before starting."""
    plan = _plan(options, clock)
    say = _Printer(out)
    exercise, principal = plan.exercise, plan.principal
    say(f"Drill of exercise {exercise.name}: principal {principal.name}, watcher {plan.url}")
    progress = _Progress(say)
    progress.add(_window_step(plan.window, plan.started, clock()))
    step, arn, issues = await _credential_step(plan.config, principal, clock)
    progress.add(step, issues)
    auth = await _authenticate(plan, options.profile, arn, clock, progress)
    detection = await _detect(plan, options, auth, after_auth, clock, progress)

    finished = clock()
    record = ExerciseRecord(
        exercise=exercise.name,
        principal=principal.name,
        principal_arn=auth.principal_arn if auth else arn,
        participants=options.participants,
        started=plan.started,
        finished=finished,
        window=plan.window,
        session_name=plan.session_name,
        source_identity=plan.source_identity,
        watcher_url=plan.url,
        steps=tuple(progress.steps),
        detection=detection,
        issues=tuple(progress.issues),
        notes=_notes(exercise, principal, plan.window, options),
        next_window=next_window_start(exercise, finished),
    )
    say("")
    say(verdict(record))
    markdown_path, json_path = write_record(record, options.records_dir or plan.config.records_path)
    say(f"Exercise record: {markdown_path} (and {json_path.name})")
    return DrillResult(record, markdown_path, json_path)


def _plan(options: DrillOptions, clock: Clock) -> _Plan:
    """Read config and rules, pick the principal and the session name; refuse outside a window
    unless told otherwise."""
    config = load_config(options.config_path)
    rules = load_rules(config.rules_path)
    exercise = next((e for e in rules.exercises if e.name == options.exercise), None)
    if exercise is None:
        known = ", ".join(e.name for e in rules.exercises) or "none"
        raise DrillRefused(f"no exercise named {options.exercise!r} in the rules (known: {known})")
    principal = in_account(choose_principal(rules, exercise, options.profile), options.account)
    config = with_account(config, principal.account)
    url = (options.watcher_url or listen_url(config.listen)).rstrip("/")
    started = clock()
    window = window_at(exercise, started)
    if window is None and not options.outside_window:
        raise DrillRefused(_refusal(exercise, started))
    session_name = (
        session_name_for(exercise.session_name, started) if principal.kind == "role" else None
    )
    source_identity = source_identity_for(options.participants) if session_name else None
    return _Plan(config, exercise, principal, url, started, window, session_name, source_identity)


async def _authenticate(
    plan: _Plan, profile: str | None, arn: str | None, clock: Clock, progress: _Progress
) -> Authentication | None:
    """Step 3; None when it failed (the failure is a step and an issue)."""
    config, principal = plan.config, plan.principal
    begun = clock()
    try:
        region = _region(config, principal)
        if profile:
            user_arn = _principal_arn(principal, arn)
            auth = await use_profile(config.endpoint_url, region, user_arn, profile, clock)
        else:
            auth = await assume_role(
                config.endpoint_url,
                region,
                _principal_arn(principal, arn),
                plan.session_name or "",
                plan.source_identity,
                clock,
            )
    except (WatcherError, ClientError, BotoCoreError) as exc:
        reason = failure_reason(exc, plan.source_identity)
        progress.add(
            Step(STEP_AUTHENTICATE, "failed", begun, clock(), reason),
            [f"authenticating as {principal.name} failed: {reason}"],
        )
        return None
    progress.add(Step(STEP_AUTHENTICATE, "ok", begun, clock(), describe(auth)))
    return auth


async def _detect(
    plan: _Plan,
    options: DrillOptions,
    auth: Authentication | None,
    after_auth: AfterAuthentication | None,
    clock: Clock,
    progress: _Progress,
) -> Detection | None:
    """Step 4: wait for the watcher's report of what step 3 did."""
    begun = clock()
    if auth is None:
        skipped = "nothing to detect: no break-glass call"
        progress.add(Step(STEP_DETECTION, "skipped", begun, begun, skipped))
        return None
    if after_auth is not None:
        await after_auth(auth)
    waited = await wait_for_detection(
        plan.url,
        Expectation(plan.principal.name, auth.at, auth.session_name),
        within=options.timeout,
        poll_interval=options.poll_interval,
        max_poll_interval=options.max_poll_interval,
        say=progress.say,
    )
    step, detection, problem = detection_step(
        waited,
        auth,
        plan.exercise,
        plan.window is not None,
        plan.url,
        options.timeout,
        begun,
        clock(),
    )
    progress.add(step, [problem] if problem else None)
    return detection


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
