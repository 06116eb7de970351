"""Rule files (``rules/*.yaml``): principals and exercises, validated in two stages.

``parse_rules`` reads no files (and the clock only when not given ``now``): it takes
already-parsed YAML documents and either returns :class:`~watcher.model.Rules` or raises one
ConfigError listing every problem with its file and path. ``load_rules`` reads the files and
computes the digest.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

from watcher.durations import format_duration
from watcher.errors import ConfigError, Problem
from watcher.model import Exercise, IPNetwork, Person, Principal, PrincipalKind, Rules
from watcher.people import check_people, parse_person
from watcher.schedule import shortest_gap
from watcher.validation import (
    FIRST_YEAR,
    LAST_YEAR,
    At,
    Fields,
    Key,
    Report,
    account_id,
    check_mapping,
    duration,
    iam_glob,
    read_file,
    read_yaml,
    text_items,
)

RULE_SUFFIXES = (".yaml", ".yml")
GAP_CHECK_HORIZON = timedelta(days=731)
MAX_DAYS_BETWEEN_DRILLS = 3660  # ten years

_TOP = {"principals": Key("list"), "exercises": Key("list"), "people": Key("list")}
_PRINCIPAL = {
    "name": Key("str", required=True),
    "match": Key("mapping", required=True),
    "account": Key("account"),
    "kind": Key("str"),
    "max_days_between_drills": Key("int"),
}
_MATCH = {
    "role_arn": Key("str"),
    "role_name": Key("str"),
    "user_arn": Key("str"),
    "user_name": Key("str"),
    "root_of_account": Key("account"),
    "name_pattern": Key("str"),
}
_MATCH_KIND: dict[str, PrincipalKind] = {
    "role_arn": "role",
    "role_name": "role",
    "user_arn": "user",
    "user_name": "user",
    "root_of_account": "root",
}
_EXERCISE = {
    "name": Key("str", required=True),
    "principals": Key("list", required=True),
    "schedule": Key("str"),
    "duration": Key("duration"),
    "start": Key("time"),
    "end": Key("time"),
    "timezone": Key("str"),
    "session_name": Key("str"),
    "source_cidrs": Key("list"),
    "require_mfa": Key("bool"),
    "expect_detection": Key("bool"),
}

LABEL = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_IAM_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_IAM_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):(role|user)/(?:[!-.0-~]+/)*([\w+=,.@-]{1,64})",
    re.ASCII,
)
_SESSION_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):sts::(\d{12}):assumed-role/([\w+=,.@-]{1,64})/.*", re.ASCII
)


def load_rules(path: Path, *, now: datetime | None = None) -> Rules:
    """Load a rule file, or every ``*.yaml``/``*.yml`` in a directory (sorted by name).

    ``now`` anchors the two-year look-ahead of the schedule-overlap check (default: the clock).
    """
    files, problems = _rule_files(path)
    documents: list[tuple[str, object]] = []
    digest = hashlib.sha256()
    for file in files:
        label = str(file)
        try:
            data = read_file(file, label)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        digest.update(f"{file.name}\0{len(data)}\0".encode())
        digest.update(data)
        try:
            documents.append((label, read_yaml(data, label)))
        except ConfigError as exc:
            problems.extend(exc.problems)
    try:
        rules = _parse(documents, now or datetime.now(UTC), complete=not problems)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        order = {str(file): index for index, file in enumerate(files)}
        raise ConfigError(sorted(problems, key=lambda p: order.get(p.file, -1)))
    return replace(rules, digest=digest.hexdigest())


def _rule_files(path: Path) -> tuple[list[Path], list[Problem]]:
    label = str(path)
    if path.is_dir():
        try:
            files = sorted(
                (
                    p
                    for p in path.iterdir()
                    if p.suffix in RULE_SUFFIXES and not p.name.startswith(".") and not p.is_dir()
                ),
                key=lambda p: p.name,
            )
        except OSError as exc:
            return [], [Problem(label, "", f"cannot list this directory: {exc.strerror or exc}")]
        if not files:
            return [], [Problem(label, "", "no rule files (*.yaml, *.yml) in this directory")]
        return files, []
    if not path.exists():
        return [], [Problem(label, "", "no such file or directory")]
    if path.suffix not in RULE_SUFFIXES:
        return [], [Problem(label, "", "a rule file must end in .yaml or .yml")]
    return [path], []


def parse_rules(documents: Sequence[tuple[str, object]], *, now: datetime | None = None) -> Rules:
    """Validate parsed rule documents (file label, YAML data) in rule order.

    Raises ConfigError with every problem found. ``now`` anchors the two-year look-ahead of the
    schedule-overlap check; pass it to keep the result independent of the clock.
    """
    return _parse(documents, now or datetime.now(UTC), complete=True)


_Reference = tuple[At, str, bool]
"""An exercise's reference to a principal: where, name, whether the exercise has session_name."""


@dataclass
class _Declared:
    """What the files declare so far, for checks across files."""

    principals: dict[str, At]
    exercises: dict[str, At]
    identities: dict[tuple[str, str, str], str]


def _parse(documents: Sequence[tuple[str, object]], now: datetime, *, complete: bool) -> Rules:
    """``complete`` is False when some file could not be read: cross-file checks are skipped."""
    report = Report()
    declared = _Declared({}, {}, {})
    principals: list[Principal] = []
    exercises: list[Exercise] = []
    references: list[_Reference] = []
    people: list[tuple[At, Person]] = []
    for label, document in documents:
        at = At(label)
        top = check_mapping(
            {} if document is None else document,
            _TOP,
            at,
            report,
            what="a mapping with principals: and exercises: lists",
        )
        if top is None:
            continue
        for index, node in enumerate(top.items("principals")):
            principal = _principal(node, at.key("principals").item(index), report, declared)
            if principal is not None:
                principals.append(principal)
        for index, node in enumerate(top.items("exercises")):
            exercise = _exercise(
                node, at.key("exercises").item(index), report, declared, references, now
            )
            if exercise is not None:
                exercises.append(exercise)
        for index, node in enumerate(top.items("people")):
            where = at.key("people").item(index)
            person = parse_person(node, where, report)
            if person is not None:
                people.append((where, person))
    if complete:
        check_people(people, declared.principals, report)
        kinds = {p.name: p.kind for p in principals}
        for where, name, has_session_name in references:
            if name not in declared.principals:
                known = ", ".join(declared.principals) or "none"
                report.add(where, f"no principal named {name!r} (declared: {known})")
            elif has_session_name and kinds.get(name, "role") != "role":
                report.add(
                    where,
                    f"{name!r} is a {kinds[name]} principal, whose uses have no role session "
                    "name, so session_name could never match; give it an exercise of its own",
                )
        if not declared.principals and documents:
            report.add(At(documents[0][0]), "no principals declared in any rule file")
    report.raise_if_any()
    return Rules(
        principals=tuple(principals),
        exercises=tuple(exercises),
        people=tuple(person for _, person in people),
    )


def _unique(name: str, at: At, seen: dict[str, At], what: str, report: Report) -> None:
    first = seen.setdefault(name, at)
    if first is not at:
        report.add(at, f"{what} {name!r} is already declared at {first.file}: {first.path}")


def _label(fields: Fields, report: Report) -> str | None:
    name = fields.text("name")
    if name is not None and not LABEL.fullmatch(name):
        report.add(
            fields.at.key("name"),
            f"{name!r} is not a valid name: use 1-64 letters, digits and _.:- (it becomes a "
            "metric label)",
        )
    return name


# ---------------------------------------------------------------------------------- principals


@dataclass
class _Match:
    """What the ``match:`` keys of one principal say."""

    kind: PrincipalKind | None = None
    account: str | None = None
    account_from: str | None = None
    partition: str = "aws"
    arn: str | None = None
    names: tuple[str, ...] = ()
    spelling: str | None = None  # the first name as written: LookupEvents compares exactly
    pattern: str | None = None
    valid: bool = True
    carries_account: bool = False


def _principal(node: object, at: At, report: Report, declared: _Declared) -> Principal | None:
    before = len(report.problems)
    fields = check_mapping(node, _PRINCIPAL, at, report, what="a principal (name:, match:, ...)")
    if fields is None:
        return None
    name = _label(fields, report)
    if name is not None:
        _unique(name, fields.at.key("name"), declared.principals, "principal", report)
    match = _match(fields, report)
    account = _principal_account(fields, match, report)
    kind = _principal_kind(fields, match, report)
    max_days = fields.integer("max_days_between_drills")
    if max_days is not None and not 1 <= max_days <= MAX_DAYS_BETWEEN_DRILLS:
        report.add(
            at.key("max_days_between_drills"),
            f"{max_days} must be a positive number of days, at most {MAX_DAYS_BETWEEN_DRILLS}",
        )
    if len(report.problems) > before or name is None or account is None or kind is None:
        return None
    principal = Principal(
        name=name,
        kind=kind,
        account=account,
        iam_names=match.names,
        name_pattern=match.pattern,
        max_days_between_drills=max_days or 90,
        arn=match.arn or _built_arn(kind, account, match),
    )
    _unique_identity(principal, fields, report, declared)
    return principal


def _match(fields: Fields, report: Report) -> _Match:
    match = _Match()
    node = fields.mapping("match")
    if node is None:
        match.valid = False
        return match
    at = fields.at.key("match")
    keys = check_mapping(node, _MATCH, at, report)
    if keys is None:
        match.valid = False
        return match
    kinds = sorted({_MATCH_KIND[k] for k in node if isinstance(k, str) and k in _MATCH_KIND})
    if len(kinds) > 1:
        report.add(
            at,
            f"mixes {' and '.join(kinds)} keys; one principal is one kind of identity "
            "(declare one principal for each)",
        )
        match.valid = False
    elif kinds:
        match.kind = kinds[0]
    if not any(isinstance(k, str) and k in _MATCH for k in node):
        report.add(at, "needs at least one of " + ", ".join(_MATCH))
        match.valid = False
    match.carries_account = any(k in node for k in ("role_arn", "user_arn", "root_of_account"))
    names: list[str] = []
    for key in ("role_arn", "user_arn"):
        arn = keys.text(key)
        if arn is not None:
            parsed = _iam_arn(arn, key.removesuffix("_arn"), at.key(key), report)
            if parsed is not None:
                match.partition, account, arn_name = parsed
                match.arn, match.account, match.account_from = arn, account, key
                names.append(arn_name.lower())
    for key in ("role_name", "user_name"):
        name = keys.text(key)
        if name is not None and _iam_name(name, key, at.key(key), report):
            names.append(name.lower())
            match.spelling = match.spelling or name
    root = keys.text("root_of_account")
    if root is not None and account_id(root, at.key("root_of_account"), report):
        match.account, match.account_from = root, "root_of_account"
    pattern = keys.text("name_pattern")
    if pattern is not None:
        if match.kind == "root":
            report.add(
                at.key("name_pattern"), "matches user or role names; not with root_of_account"
            )
        elif iam_glob(pattern, at.key("name_pattern"), report, "an IAM name"):
            match.pattern = pattern.lower()
    match.names = tuple(dict.fromkeys(names))
    return match


def _iam_arn(arn: str, kind: str, at: At, report: Report) -> tuple[str, str, str] | None:
    """(partition, account, name) of an IAM role/user ARN of ``kind``, else a problem."""
    parsed = _IAM_ARN.fullmatch(arn)
    if parsed is not None and parsed.group(3) == kind:
        return parsed.group(1), parsed.group(2), parsed.group(4)
    example = f"arn:aws:iam::123456789012:{kind}/NAME"
    if parsed is not None:
        other = parsed.group(3)
        reason = f"is a {other} ARN; put it under {other}_arn"
    elif (session := _SESSION_ARN.fullmatch(arn)) is not None:
        partition, account, role = session.groups()
        reason = (
            "is a role session (STS assumed-role) ARN; use the role's ARN, "
            f"arn:{partition}:iam::{account}:role/{role}"
        )
    else:
        reason = f"{arn!r} is not an IAM {kind} ARN like {example}"
    report.add(at, reason)
    return None


def _iam_name(name: str, key: str, at: At, report: Report) -> bool:
    if _IAM_NAME.fullmatch(name):
        return True
    if name.startswith("arn:") or "/" in name:
        report.add(at, f"{name!r} is not a bare name; use {key.removesuffix('_name')}_arn for ARNs")
    else:
        report.add(at, f"{name!r} is not a valid IAM name: 1-64 letters, digits and +=,.@_-")
    return False


def _principal_account(fields: Fields, match: _Match, report: Report) -> str | None:
    explicit = fields.text("account")
    at = fields.at.key("account")
    if explicit is not None and account_id(explicit, at, report) is None:
        return None
    if explicit is not None and match.account is not None and explicit != match.account:
        report.add(
            fields.at.key("match").key(match.account_from or ""),
            f"account {match.account} differs from account: {explicit!r}",
        )
        return None
    account = explicit or match.account
    if (
        account is None
        and match.valid
        and not match.carries_account
        and not fields.given("account")
    ):
        report.add(at, "is required (only role_arn, user_arn and root_of_account carry one)")
    return account


def _principal_kind(fields: Fields, match: _Match, report: Report) -> PrincipalKind | None:
    at = fields.at.key("kind")
    given = fields.text("kind")
    if given is not None and given not in ("user", "role"):
        report.add(at, f"{given!r} must be user or role")
        return None
    if given is not None and match.kind is not None and given != match.kind:
        report.add(at, f"{given!r} contradicts the match keys, which name a {match.kind}")
        return None
    if given == "user":
        return "user"
    if given == "role":
        return "role"
    if match.kind is None and match.pattern is not None and not fields.given("kind"):
        report.add(at, "is required when name_pattern is the only match key (user or role)")
    return match.kind


def _built_arn(kind: PrincipalKind, account: str, match: _Match) -> str | None:
    prefix = f"arn:{match.partition}:iam::{account}:"
    if kind == "root":
        return prefix + "root"
    return prefix + f"{kind}/{match.spelling}" if match.spelling else None


def _unique_identity(
    principal: Principal, fields: Fields, report: Report, declared: _Declared
) -> None:
    """One IAM identity may belong to one principal only (an event names at most one)."""
    names = principal.iam_names or (("",) if principal.kind == "root" else ())
    for iam_name in names:
        key = (principal.kind, principal.account, iam_name)
        owner = declared.identities.setdefault(key, principal.name)
        if owner != principal.name:
            what = f"{principal.kind} {iam_name!r}" if iam_name else "the root user"
            report.add(
                fields.at.key("match"),
                f"{what} of account {principal.account} is already principal {owner!r}",
            )


# ---------------------------------------------------------------------------------- exercises


def _exercise(
    node: object,
    at: At,
    report: Report,
    declared: _Declared,
    references: list[_Reference],
    now: datetime,
) -> Exercise | None:
    before = len(report.problems)
    fields = check_mapping(
        node, _EXERCISE, at, report, what="an exercise (name:, principals:, ...)"
    )
    if fields is None:
        return None
    name = _label(fields, report)
    if name is not None:
        _unique(name, fields.at.key("name"), declared.exercises, "exercise", report)
    principals = _exercise_principals(fields, report, references)
    timezone = _timezone(fields, report)
    schedule, length = _recurrence(fields, report)
    if schedule is not None and length is not None and timezone is not None:
        _check_overlap(schedule, length, timezone, fields.at.key("duration"), report, now)
    start, end = _one_off(fields, report)
    _window_kind(fields, report)
    session_name = fields.text("session_name")
    if session_name is not None:
        iam_glob(session_name, at.key("session_name"), report, "a session name")
    cidrs = _cidrs(fields, report)
    if len(report.problems) > before or name is None or timezone is None:
        return None
    return Exercise(
        name=name,
        principals=principals,
        timezone=timezone,
        schedule=schedule,
        duration=length,
        start=start,
        end=end,
        session_name=session_name,
        source_cidrs=cidrs,
        require_mfa=fields.flag("require_mfa", False),
        expect_detection=fields.flag("expect_detection", True),
    )


def _exercise_principals(
    fields: Fields, report: Report, references: list[_Reference]
) -> tuple[str, ...]:
    at = fields.at.key("principals")
    names: dict[str, At] = {}
    for where, name in text_items(fields.items("principals"), at, report):
        if name in names:
            report.add(where, f"{name!r} is listed twice")
        else:
            names[name] = where
            references.append((where, name, fields.given("session_name")))
    if fields.has("principals") and not fields.items("principals"):
        report.add(at, "names no principal; list at least one")
    return tuple(names)


@cache
def _zones() -> dict[str, str]:
    """Lower-cased IANA zone names to their spelling ("localtime" and friends excluded)."""
    machine_local = {"localtime", "posixrules", "Factory"}
    return {zone.lower(): zone for zone in available_timezones() - machine_local}


def _timezone(fields: Fields, report: Report) -> str | None:
    zone = fields.text("timezone")
    if zone is None:
        return None if fields.given("timezone") else "UTC"
    if zone in _zones().values():
        return zone
    spelled = _zones().get(zone.lower())
    hint = f"; did you mean {spelled!r}?" if spelled else ", like Europe/Berlin or UTC"
    report.add(fields.at.key("timezone"), f"{zone!r} is not an IANA time zone name{hint}")
    return None


def _recurrence(fields: Fields, report: Report) -> tuple[str | None, timedelta | None]:
    schedule = fields.text("schedule")
    if schedule is not None:
        at = fields.at.key("schedule")
        count = len(schedule.split())
        if count != 5:
            report.add(
                at,
                f"{schedule!r} has {count} fields; a cron schedule has 5 "
                "(minute hour day-of-month month day-of-week)",
            )
            schedule = None
        else:
            try:
                starts = CronSim(schedule, datetime(2000, 1, 1))
                next(starts)
            except (CronSimError, StopIteration) as exc:
                detail = f": {exc}" if str(exc) else ": it never fires"
                report.add(at, f"{schedule!r} is not a valid cron schedule{detail}")
                schedule = None
    return schedule, duration(fields, "duration", report)


def _one_off(fields: Fields, report: Report) -> tuple[datetime | None, datetime | None]:
    start = _instant(fields, "start", report)
    end = _instant(fields, "end", report)
    if start is not None and end is not None and end <= start:
        report.add(fields.at.key("end"), f"{end.isoformat()} is not after start")
    return start, end


def _instant(fields: Fields, key: str, report: Report) -> datetime | None:
    value = fields.value(key)
    at = fields.at.key(key)
    example = "like 2026-05-04T14:00:00+02:00 or 2026-05-04T12:00:00Z"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            report.add(at, f"{value!r} is not an ISO 8601 date and time {example}")
            return None
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            report.add(at, f"{value.isoformat()} has no UTC offset; write it {example}")
            return None
        if not FIRST_YEAR <= value.year <= LAST_YEAR:
            report.add(at, f"{value.isoformat()} is not within the years {FIRST_YEAR}-{LAST_YEAR}")
            return None
        return value.astimezone(UTC)
    if isinstance(value, date):
        report.add(
            at, f"{value.isoformat()} is a date only; write a time with an offset, {example}"
        )
    return None


def _window_kind(fields: Fields, report: Report) -> None:
    """Exactly one of schedule (+ duration) and start/end (+ nothing else)."""
    at = fields.at
    given = fields.given
    recurring, one_off = given("schedule"), given("start") or given("end")
    if recurring and one_off:
        report.add(at.key("schedule"), "use either schedule (+ duration) or start/end, not both")
    elif recurring:
        if not given("duration"):
            report.add(
                at.key("duration"), "is required with schedule (how long each window is open)"
            )
    elif one_off:
        for key in ("start", "end"):
            if not given(key):
                report.add(at.key(key), "is required for a one-off window (start and end)")
        if given("duration"):
            report.add(
                at.key("duration"), "goes with schedule only; a one-off window lasts start to end"
            )
    elif given("duration"):
        report.add(at.key("schedule"), "is required with duration (when each window starts)")
    else:
        report.add(at, "needs a schedule (cron) and duration, or start and end")


def _cidrs(fields: Fields, report: Report) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for where, text in text_items(
        fields.items("source_cidrs"), fields.at.key("source_cidrs"), report
    ):
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                report.add(
                    where, f"{text!r} is not an IP range like 203.0.113.0/24 or 2001:db8::/32"
                )
            else:
                report.add(where, f"{text!r} has host bits set; did you mean {loose}?")
    return tuple(networks)


def _check_overlap(
    schedule: str, length: timedelta, timezone: str, at: At, report: Report, now: datetime
) -> None:
    """A window must close before the next one opens (checked over the next two years)."""
    exercise = Exercise("", (), timezone=timezone, schedule=schedule, duration=length)
    gap = shortest_gap(exercise, now, now + GAP_CHECK_HORIZON)
    if gap is None or gap[1] - gap[0] >= length:
        return
    zone = ZoneInfo(timezone)
    first, second = (t.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") for t in gap)
    report.add(
        at,
        f"{format_duration(length)} is longer than the time between two starts "
        f"({format_duration(gap[1] - gap[0])}, {first} and {second}); windows would overlap",
    )
