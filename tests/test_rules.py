"""Rule files: loading, every validation problem located by file and path, never a traceback."""

from __future__ import annotations

import copy
import ipaddress
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.errors import ConfigError, Problem
from watcher.model import Principal
from watcher.rules import load_rules, parse_rules

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REPO_RULES = Path(__file__).resolve().parent.parent / "rules"


def problems_of(documents: list[tuple[str, object]]) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_rules(documents, now=NOW)
    return caught.value.problems


def base() -> dict[str, Any]:
    return {
        "principals": [
            {
                "name": "admin",
                "match": {"user_name": "Break-Glass-Admin"},
                "account": "123456789012",
            },
            {"name": "role", "match": {"role_arn": "arn:aws:iam::123456789012:role/ops/BG-Role"}},
        ],
        "exercises": [
            {
                "name": "drill",
                "principals": ["admin", "role"],
                "schedule": "0 14 1 1,4,7,10 *",
                "duration": "4h",
                "timezone": "Europe/Berlin",
            }
        ],
    }


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_repository_rules_load() -> None:
    rules = load_rules(REPO_RULES)
    assert [p.name for p in rules.principals] == ["break-glass-admin", "break-glass-admin-role"]
    user, role = rules.principals
    assert user == Principal(
        name="break-glass-admin",
        kind="user",
        account="123456789012",
        iam_names=("break-glass-admin",),
        max_days_between_drills=90,
        arn="arn:aws:iam::123456789012:user/break-glass-admin",
    )
    assert role.kind == "role" and role.account == "123456789012"
    assert role.arn == "arn:aws:iam::123456789012:role/break-glass-admin-role"
    drill, user_drill = rules.exercises
    assert drill.principals == ("break-glass-admin-role",)
    assert drill.schedule == "0 14 1 1,4,7,10 *"
    assert drill.duration == timedelta(hours=4)
    assert drill.timezone == "Europe/Berlin"
    assert drill.session_name == "break-glass-exercise*"
    assert drill.expect_detection is True and drill.require_mfa is False
    assert user_drill.principals == ("break-glass-admin",)
    assert user_drill.session_name is None and user_drill.require_mfa is True
    assert len(rules.digest) == 64


def test_session_name_on_a_user_principal_is_an_error() -> None:
    """A user's uses have no role session name: such an exercise could never see a drill."""
    doc = base()
    doc["exercises"][0]["principals"] = ["admin-user"]
    doc["exercises"][0]["session_name"] = "drill-*"
    doc["principals"].append(
        {"name": "admin-user", "match": {"user_name": "admin"}, "account": "123456789012"}
    )
    with pytest.raises(ConfigError) as caught:
        parse_rules([("rules/a.yaml", doc)])
    (problem,) = caught.value.problems
    assert problem.path == "exercises[0].principals[0]"
    assert "session_name could never match" in problem.reason


def test_principal_construction() -> None:
    doc = base()
    doc["principals"] += [
        {"name": "root", "match": {"root_of_account": "210987654321"}},
        {
            "name": "found",
            "match": {"name_pattern": "*Break-Glass*"},
            "kind": "role",
            "account": "123456789012",
            "max_days_between_drills": 30,
        },
        {
            "name": "gov",
            "match": {
                "user_arn": "arn:aws-us-gov:iam::123456789012:user/x/Y",
                "user_name": "other",
            },
            "account": "123456789012",
        },
    ]
    admin, role, root, found, gov = parse_rules([("r.yaml", doc)], now=NOW).principals
    assert admin.iam_names == ("break-glass-admin",) and admin.name_pattern is None
    assert admin.arn == "arn:aws:iam::123456789012:user/Break-Glass-Admin"  # as written
    assert role.iam_names == ("bg-role",)
    assert role.arn == "arn:aws:iam::123456789012:role/ops/BG-Role"
    assert (root.kind, root.account, root.iam_names) == ("root", "210987654321", ())
    assert root.arn == "arn:aws:iam::210987654321:root"
    assert (found.kind, found.name_pattern, found.arn) == ("role", "*break-glass*", None)
    assert found.max_days_between_drills == 30
    assert gov.iam_names == ("y", "other")
    assert gov.arn == "arn:aws-us-gov:iam::123456789012:user/x/Y"


def test_exercise_construction() -> None:
    doc = base()
    doc["exercises"].append(
        {
            "name": "once",
            "principals": ["role"],
            "start": "2026-05-04T14:00:00+02:00",
            "end": datetime(2026, 5, 4, 16, tzinfo=UTC),
            "session_name": "drill-*",
            "source_cidrs": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"],
            "require_mfa": True,
            "expect_detection": False,
        }
    )
    drill, once = parse_rules([("r.yaml", doc)], now=NOW).exercises
    assert drill.start is None and drill.end is None
    assert once.start == datetime(2026, 5, 4, 12, tzinfo=UTC)
    assert once.start.tzinfo is UTC
    assert once.end == datetime(2026, 5, 4, 16, tzinfo=UTC)
    assert once.schedule is None and once.duration is None and once.timezone == "UTC"
    assert once.source_cidrs == (
        ipaddress.ip_network("203.0.113.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("198.51.100.7/32"),
    )
    assert once.require_mfa is True and once.expect_detection is False


def mutate(path: str, value: object) -> dict[str, Any]:
    """``base()`` with the value at a dotted path (``exercises.0.duration``) set or deleted."""
    doc = base()
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


DELETE = object()

CASES = [
    # shape: unknown keys, wrong kinds, missing keys
    ("exercises.0.durration", "1h", "exercises[0].durration", "did you mean 'duration'"),
    ("surprise", [], "surprise", "unknown key"),
    ("principals.0.match.role_Arn", "x", "principals[0].match.role_Arn", "did you mean 'role_arn'"),
    ("exercises.0.duration", 90, "exercises[0].duration", "90 has no unit"),
    ("exercises.0.require_mfa", "yes please", "exercises[0].require_mfa", "expected true or false"),
    ("exercises.0.principals", "admin", "exercises[0].principals", "expected a list"),
    ("exercises.0.principals", [], "exercises[0].principals", "names no principal"),
    ("exercises.0.principals.1", 7, "exercises[0].principals[1]", "expected text"),
    ("exercises.0.principals.1", "admin", "exercises[0].principals[1]", "listed twice"),
    ("exercises.0.name", DELETE, "exercises[0].name", "is required"),
    ("exercises.0.name", None, "exercises[0].name", "is required (it is empty)"),
    ("principals.0.match", DELETE, "principals[0].match", "is required"),
    ("principals.0.match", {}, "principals[0].match", "needs at least one of"),
    ("principals.0", "admin", "principals[0]", "expected a principal"),
    ("exercises", {"name": "x"}, "exercises", "expected a list"),
    (
        "principals.0.max_days_between_drills",
        0,
        "principals[0].max_days_between_drills",
        "positive",
    ),
    (
        "principals.0.max_days_between_drills",
        1.5,
        "principals[0].max_days_between_drills",
        "whole number",
    ),
    # names
    ("principals.0.name", "break glass", "principals[0].name", "not a valid name"),
    ("exercises.0.name", "x" * 65, "exercises[0].name", "not a valid name"),
    # accounts
    ("principals.0.account", 123456789012, "principals[0].account", 'like "123456789012"'),
    ("principals.0.account", "12345", "principals[0].account", "not a 12-digit"),
    ("principals.0.account", DELETE, "principals[0].account", "is required"),
    (
        "principals.1.account",
        "111111111111",
        "principals[1].match.role_arn",
        "account 123456789012 differs",
    ),
    (
        "principals.0.match",
        {"root_of_account": 12},
        "principals[0].match.root_of_account",
        "quoted text",
    ),
    # ARNs and IAM names
    (
        "principals.1.match.role_arn",
        "arn:aws:iam::123456789012:user/bob",
        "principals[1].match.role_arn",
        "is a user ARN; put it under user_arn",
    ),
    (
        "principals.1.match.role_arn",
        "arn:aws:sts::123456789012:assumed-role/Admin/me",
        "principals[1].match.role_arn",
        "arn:aws:iam::123456789012:role/Admin",
    ),
    (
        "principals.1.match.role_arn",
        "arn:aws:iam::12345:role/x",
        "principals[1].match.role_arn",
        "not an IAM role ARN",
    ),
    (
        "principals.1.match.role_arn",
        "arn:aws-xx:iam::123456789012:role/x",
        "principals[1].match.role_arn",
        "not an IAM role ARN",
    ),
    (
        "principals.0.match.user_name",
        "bad name",
        "principals[0].match.user_name",
        "not a valid IAM name",
    ),
    (
        "principals.0.match.user_name",
        "arn:aws:iam::123456789012:user/x",
        "principals[0].match.user_name",
        "use user_arn",
    ),
    (
        "principals.0.match",
        {"user_name": "a", "role_name": "b"},
        "principals[0].match",
        "mixes role and user keys",
    ),
    (
        "principals.0.match",
        {"root_of_account": "123456789012", "name_pattern": "*"},
        "principals[0].match.name_pattern",
        "not with root_of_account",
    ),
    ("principals.0.match", {"name_pattern": "*glass*"}, "principals[0].kind", "is required"),
    (
        "principals.0.match.name_pattern",
        "break glass*",
        "principals[0].match.name_pattern",
        "can never match",
    ),
    ("principals.0.kind", "role", "principals[0].kind", "contradicts the match keys"),
    ("principals.0.kind", "group", "principals[0].kind", "must be user or role"),
    # durations and schedules
    (
        "exercises.0.duration",
        "4 hours",
        "exercises[0].duration",
        "'4 hours' is not a duration like 4h or 30m",
    ),
    ("exercises.0.duration", "0m", "exercises[0].duration", "is zero"),
    ("exercises.0.duration", "-4h", "exercises[0].duration", "negative"),
    ("exercises.0.duration", DELETE, "exercises[0].duration", "is required with schedule"),
    ("exercises.0.duration", "100d", "exercises[0].duration", "windows would overlap"),
    ("exercises.0.schedule", "0 25 * * *", "exercises[0].schedule", "not a valid cron"),
    ("exercises.0.schedule", "0 0 30 2 *", "exercises[0].schedule", "not a valid cron"),
    ("exercises.0.schedule", "0 0 * * * *", "exercises[0].schedule", "has 6 fields"),
    ("exercises.0.schedule", DELETE, "exercises[0].schedule", "is required with duration"),
    ("exercises.0.timezone", "Europe/berlin", "exercises[0].timezone", "'Europe/Berlin'?"),
    ("exercises.0.timezone", "localtime", "exercises[0].timezone", "not an IANA time zone"),
    ("exercises.0.timezone", "Mars/Olympus", "exercises[0].timezone", "not an IANA time zone"),
    ("exercises.0.session_name", "drill session", "exercises[0].session_name", "never match"),
    # one-off windows
    ("exercises.0.start", "2026-01-01T10:00:00Z", "exercises[0].schedule", "not both"),
    ("exercises.0", {"name": "x", "principals": ["admin"]}, "exercises[0]", "needs a schedule"),
    (
        "exercises.0",
        {"name": "x", "principals": ["admin"], "start": "2026-01-01T10:00:00Z"},
        "exercises[0].end",
        "is required for a one-off",
    ),
    (
        "exercises.0",
        {
            "name": "x",
            "principals": ["admin"],
            "start": "2026-01-01T10:00:00Z",
            "end": "2026-01-01T09:00:00Z",
        },
        "exercises[0].end",
        "is not after start",
    ),
    (
        "exercises.0",
        {
            "name": "x",
            "principals": ["admin"],
            "start": "2026-01-01T10:00:00",
            "end": "2026-01-01T11:00:00Z",
        },
        "exercises[0].start",
        "no UTC offset",
    ),
    (
        "exercises.0",
        {
            "name": "x",
            "principals": ["admin"],
            "start": datetime(2026, 1, 1),
            "end": "2026-01-01T11:00:00Z",
        },
        "exercises[0].start",
        "no UTC offset",
    ),
    (
        "exercises.0",
        {"name": "x", "principals": ["admin"], "start": "tomorrow", "end": "2026-01-01T11:00:00Z"},
        "exercises[0].start",
        "not an ISO 8601",
    ),
    (
        "exercises.0",
        {
            "name": "x",
            "principals": ["admin"],
            "start": "2026-01-01T10:00:00Z",
            "end": "2026-01-01T11:00:00Z",
            "duration": "1h",
        },
        "exercises[0].duration",
        "goes with schedule only",
    ),
    # networks and references
    (
        "exercises.0.source_cidrs",
        ["203.0.113.5/24"],
        "exercises[0].source_cidrs[0]",
        "did you mean 203.0.113.0/24?",
    ),
    (
        "exercises.0.source_cidrs",
        ["2001:db8::1/32"],
        "exercises[0].source_cidrs[0]",
        "did you mean 2001:db8::/32?",
    ),
    (
        "exercises.0.source_cidrs",
        ["10.0.0.0/33"],
        "exercises[0].source_cidrs[0]",
        "not an IP range",
    ),
    (
        "exercises.0.principals.1",
        "nobody",
        "exercises[0].principals[1]",
        "no principal named 'nobody' (declared: admin, role)",
    ),
    (
        "principals.1.match",
        {"user_arn": "arn:aws:iam::123456789012:user/BREAK-GLASS-ADMIN"},
        "principals[1].match",
        "already principal 'admin'",
    ),
]


@pytest.mark.parametrize(("where", "value", "path", "reason"), CASES, ids=[c[2] for c in CASES])
def test_each_problem_is_located(where: str, value: object, path: str, reason: str) -> None:
    problems = problems_of([("rules/r.yaml", mutate(where, value))])
    assert any(
        p.file == "rules/r.yaml" and p.path == path and reason in p.reason for p in problems
    ), "\n".join(map(str, problems))


def test_a_file_with_several_mistakes_lists_all_of_them(tmp_path: Path) -> None:
    write(
        tmp_path,
        "drills.yaml",
        """\
principals:
  - name: admin
    match: {user_name: admin}
    account: 123456789012
exercises:
  - name: drill
    principals: [admin, ghost]
    schedule: "0 14 * * *"
    duration: 4 hours
    timezone: Europe/Berln
    source_cidrs: [10.0.0.1/8]
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_rules(tmp_path)
    label = str(tmp_path / "drills.yaml")
    assert [(p.file, p.path) for p in caught.value.problems] == [
        (label, "principals[0].account"),
        (label, "exercises[0].timezone"),
        (label, "exercises[0].duration"),
        (label, "exercises[0].source_cidrs[0]"),
        (label, "exercises[0].principals[1]"),
    ]
    assert f"{label}: exercises[0].duration: '4 hours' is not a duration" in str(caught.value)


def test_directory_order_and_cross_file_references(tmp_path: Path) -> None:
    write(
        tmp_path,
        "b.yml",
        "principals:\n  - {name: second, match: {role_name: r}, account: '123456789012'}\n",
    )
    write(
        tmp_path,
        "a.yaml",
        "principals:\n  - {name: first, match: {user_name: u}, account: '123456789012'}\n"
        "exercises:\n  - {name: e, principals: [second], schedule: '0 9 * * 1', duration: 1h}\n",
    )
    write(
        tmp_path,
        "c.yaml",
        "exercises:\n  - {name: f, principals: [first],\n"
        "     start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z'}\n",
    )
    write(tmp_path, "notes.txt", "not: [rules")
    write(tmp_path, ".hidden.yaml", "not: [rules")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "x.yaml", "not: [rules")
    rules = load_rules(tmp_path)
    assert [p.name for p in rules.principals] == ["first", "second"]
    assert [e.name for e in rules.exercises] == ["e", "f"]


def test_digest_follows_file_names_and_bytes(tmp_path: Path) -> None:
    text = "principals:\n  - {name: p, match: {user_name: u}, account: '123456789012'}\n"
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write(one, "a.yaml", text)
    write(two, "a.yaml", text)
    assert load_rules(one).digest == load_rules(two).digest
    write(two, "a.yaml", text + "# a comment changes the bytes\n")
    assert load_rules(one).digest != load_rules(two).digest
    (two / "a.yaml").rename(two / "b.yaml")
    write(two, "b.yaml", text)
    assert load_rules(one).digest != load_rules(two).digest


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    doc = yaml.safe_dump(base())
    write(tmp_path, "a.yaml", doc)
    write(tmp_path, "b.yaml", doc)
    with pytest.raises(ConfigError) as caught:
        load_rules(tmp_path)
    b = str(tmp_path / "b.yaml")
    found = {(p.file, p.path): p.reason for p in caught.value.problems}
    assert (
        f"already declared at {tmp_path / 'a.yaml'}: principals[0].name"
        in found[(b, "principals[0].name")]
    )
    assert "exercise 'drill' is already declared" in found[(b, "exercises[0].name")]
    assert all(p.file == b for p in caught.value.problems)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("principals: [\n", "invalid YAML: line 2"),
        ("exercises:\n  - name: x\n    schedule: * * * * *\n", "quote values that start with *"),
        (
            "principals: []\nprincipals: []\n",
            "line 2, column 1: duplicate key 'principals' (first on line 1)",
        ),
        ("- just\n- a list\n", "expected a mapping with principals: and exercises: lists"),
        ("a: 1\n---\nb: 2\n", "invalid YAML"),
    ],
)
def test_yaml_syntax_problems_name_file_and_line(tmp_path: Path, text: str, reason: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert caught.value.problems[0].file == str(path)
    assert reason in caught.value.problems[0].reason


def test_syntax_error_in_one_file_still_reports_others_without_false_references(
    tmp_path: Path,
) -> None:
    write(tmp_path, "a.yaml", "principals: [\n")
    write(
        tmp_path,
        "b.yaml",
        "exercises:\n  - {name: e, principals: [defined-in-a],\n"
        "     schedule: '0 9 * * *', duration: 1 h}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_rules(tmp_path)
    assert [(Path(p.file).name, p.path) for p in caught.value.problems] == [
        ("a.yaml", ""),
        ("b.yaml", "exercises[0].duration"),
    ]


def test_paths_that_hold_no_rules(tmp_path: Path) -> None:
    cases = {
        tmp_path: "no rule files",
        tmp_path / "missing": "no such file or directory",
        write(tmp_path, "rules.txt", "principals: []"): "must end in .yaml or .yml",
    }
    for path, reason in cases.items():
        with pytest.raises(ConfigError, match=reason):
            load_rules(path)
    write(tmp_path, "empty.yaml", "")
    with pytest.raises(ConfigError, match="no principals declared"):
        load_rules(tmp_path)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"principals: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"a\.yaml: not UTF-8"):
        load_rules(tmp_path)


def test_overlap_check_uses_local_time_and_daylight_saving() -> None:
    # 01:00 and 03:00 Berlin are 2 h apart except on the spring-forward day (1 h), so 90m fails.
    doc = mutate(
        "exercises.0",
        {
            "name": "x",
            "principals": ["admin"],
            "schedule": "0 1,3 * * *",
            "duration": "90m",
            "timezone": "Europe/Berlin",
        },
    )
    (problem,) = problems_of([("r.yaml", doc)])
    assert problem.path == "exercises[0].duration"
    assert "(1h, 2026-03-29 01:00 CET and 2026-03-29 03:00 CEST)" in problem.reason
    doc["exercises"][0]["timezone"] = "UTC"
    assert parse_rules([("r.yaml", doc)], now=NOW).exercises[0].duration == timedelta(minutes=90)


# ------------------------------------------------------------------ nothing but ConfigError

KEYS = [
    "principals",
    "exercises",
    "name",
    "match",
    "account",
    "kind",
    "role_arn",
    "user_name",
    "root_of_account",
    "name_pattern",
    "schedule",
    "duration",
    "start",
    "end",
    "timezone",
    "source_cidrs",
    "session_name",
    "require_mfa",
    "expect_detection",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "4h",
            "0 14 * * *",
            "123456789012",
            "Europe/Berlin",
            "10.0.0.0/8",
            "2026-01-01T00:00:00Z",
            "arn:aws:iam::123456789012:role/x",
            "admin",
        ]
    ),
    st.datetimes(),
    st.dates(),
)
data = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers()), inner, max_size=5
        )
    ),
    max_leaves=25,
)


def parse_only_config_errors(documents: list[tuple[str, object]]) -> None:
    try:
        parse_rules(documents, now=NOW)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, Problem) for p in exc.problems)


@pytest.mark.slow  # 300 generated examples
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(data, min_size=1, max_size=3))
def test_garbage_data_raises_only_config_error(documents: list[object]) -> None:
    parse_only_config_errors([(f"f{i}.yaml", doc) for i, doc in enumerate(documents)])


@pytest.mark.slow  # hundreds of generated examples
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "principals.0",
            "principals.1.match",
            "exercises.0",
            "principals.0.match.user_name",
            "exercises.0.duration",
            "exercises.0.start",
            "exercises.0.schedule",
            "principals.1.account",
            "exercises.0.source_cidrs",
            "exercises.0.principals",
        ]
    ),
    data,
)
def test_mutated_rules_raise_only_config_error(where: str, value: object) -> None:
    parse_only_config_errors([("r.yaml", mutate(where, copy.deepcopy(value)))])


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from([*"ab:- \n\t[]{}*&!|>'\"#,?%@`0129."]), max_size=80))
def test_garbage_yaml_raises_only_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.yaml"
        path.write_text(text)
        try:
            load_rules(path, now=NOW)
        except ConfigError as exc:
            assert exc.problems
