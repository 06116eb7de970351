"""The drill: pure helpers, then whole drills against moto and a real in-process daemon."""

from __future__ import annotations

import io
import json
import re
import string
import sys
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from watcher.cli import main
from watcher.config import parse_config
from watcher.demo.cloudtrail import CloudTrailStandIn
from watcher.demo.running import running_watcher
from watcher.demo.scenario import (
    DRILL_EXERCISE,
    ROLE_PRINCIPAL,
    USER_PRINCIPAL,
    DemoSetup,
    set_up_demo,
)
from watcher.drill import (
    DrillOptions,
    DrillRefused,
    choose_principal,
    drill,
    in_account,
    run_drill,
    session_name_for,
    source_identity_for,
    with_account,
)
from watcher.drill_detection import (
    Expectation,
    find_detection,
    judge_detection,
    listen_url,
)
from watcher.emulator.server import Emulator
from watcher.model import Exercise, Principal, Rules

AT = datetime(2026, 11, 26, 15, 30, 42, 123456, tzinfo=UTC)
STS_NAME = r"[\w+=,.@-]{2,64}"

# ------------------------------------------------------------------------------ pure helpers


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ("break-glass-exercise*", "break-glass-exercise-20261126T1530Z"),
        ("break-glass-exercise-*", "break-glass-exercise-20261126T1530Z"),
        ("*-drill", "20261126T1530Z-drill"),
        ("drill-*-*", "drill-20261126T1530Z-"),
        ("bg?[xyz]*", "bg0x-20261126T1530Z"),
        ("bg[!a-z]*", "bg0-20261126T1530Z"),
        ("exactly-this", "exactly-this"),
        (None, "break-glass-drill-20261126T1530Z"),
    ],
)
def test_session_name_from_glob(pattern: str | None, name: str) -> None:
    assert session_name_for(pattern, AT) == name


def test_session_name_uses_utc() -> None:
    berlin = AT.astimezone(ZoneInfo("Europe/Berlin"))
    assert session_name_for("x*", berlin) == "x-20261126T1530Z"


@pytest.mark.parametrize("pattern", ["break glass*", "a", "x" * 60 + "*", "[]"])
def test_session_name_refused_when_no_valid_name_fits(pattern: str) -> None:
    with pytest.raises(DrillRefused, match="valid STS session name"):
        session_name_for(pattern, AT)


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_.@*?[]!", max_size=40))
def test_session_name_always_matches_its_glob_and_sts(pattern: str) -> None:
    try:
        name = session_name_for(pattern, AT)
    except DrillRefused:
        return
    assert fnmatchcase(name, pattern)
    assert re.fullmatch(STS_NAME, name, re.ASCII)


@pytest.mark.parametrize(
    ("participants", "identity"),
    [
        ((), None),
        (("alice@example.com", "bob"), "alice@example.com"),
        (("Alice Example",), "Alice-Example"),
        (("aws:root",), "aws-root"),
        (("Jürgen",), "J-rgen"),
        (("a",), None),
        (("x" * 80,), "x" * 64),
    ],
)
def test_source_identity_names_the_first_participant(
    participants: tuple[str, ...], identity: str | None
) -> None:
    assert source_identity_for(participants) == identity


def _rules() -> tuple[Rules, Exercise]:
    role = Principal("bg-role", "role", "123456789012", ("bg-role",))
    user = Principal("bg-user", "user", "123456789012", ("bg-user",))
    exercise = Exercise("both", ("bg-user", "bg-role"))
    return Rules((role, user), (exercise,)), exercise


def test_principal_is_the_role_or_with_a_profile_the_user() -> None:
    rules, exercise = _rules()
    assert choose_principal(rules, exercise, None).name == "bg-role"
    assert choose_principal(rules, exercise, "break-glass").name == "bg-user"
    only_user = Exercise("user-only", ("bg-user",))
    with pytest.raises(DrillRefused, match="has no role principal; to drill a break-glass user"):
        choose_principal(rules, only_user, None)


def _event(**fields: Any) -> dict[str, Any]:
    base = {
        "event_id": "e1",
        "event_time": "2026-11-26T15:30:42+00:00",
        "principal": "bg-role",
        "classification": "drill",
        "exercise": "q",
        "session_name": "s1",
        "event_name": "AssumeRole",
        "source": "eventbridge",
        "stored_at": "2026-11-26T15:30:44+00:00",
    }
    return {**base, **fields}


def test_detection_matches_principal_session_and_time() -> None:
    expect = Expectation("bg-role", AT, "s1")
    assert find_detection([_event()], expect) is not None  # same second as the start
    assert find_detection([_event(principal="other")], expect) is None
    assert find_detection([_event(session_name="s2")], expect) is None
    assert find_detection([_event(event_time="2026-11-26T15:30:41+00:00")], expect) is None
    assert find_detection([_event(event_time="garbage"), _event(event_time=None)], expect) is None
    assert find_detection([_event(session_name=None)], Expectation("bg-role", AT, None))


def test_detection_is_the_first_reported_event() -> None:
    later = _event(event_id="late", event_time="2026-11-26T15:31:00+00:00")
    stored_second = _event(event_id="second", stored_at="2026-11-26T15:30:50+00:00")
    first = _event(event_id="first")
    found = find_detection([later, stored_second, first], Expectation("bg-role", AT, "s1"))
    assert found is not None and found["event_id"] == "first"


def test_judging_the_classification() -> None:
    assert judge_detection(_event(), "q", in_window=True) is None
    other = judge_detection(_event(exercise="other"), "q", in_window=True)
    assert other is not None and "for exercise 'other', not 'q'" in other
    unexpected = judge_detection(_event(classification="unexpected", exercise=None), "q", True)
    assert unexpected is not None and "reported it as unexpected use" in unexpected
    assert judge_detection(_event(classification="unexpected"), "q", in_window=False) is None


def test_listen_url() -> None:
    assert listen_url(("127.0.0.1", 9783)) == "http://127.0.0.1:9783"
    assert listen_url(("0.0.0.0", 80)) == "http://127.0.0.1:80"
    assert listen_url(("::", 9783)) == "http://[::1]:9783"
    assert listen_url(("watcher.internal", 9783)) == "http://watcher.internal:9783"


# -------------------------------------------------------------------- against moto + daemon


@pytest.fixture
def demo(emulator: Emulator, tmp_path: Path) -> DemoSetup:
    return set_up_demo(emulator.endpoint_url, tmp_path, now=datetime.now(UTC))


def _options(setup: DemoSetup, **changes: Any) -> DrillOptions:
    values: dict[str, Any] = {
        "config_path": setup.config_path,
        "exercise": DRILL_EXERCISE,
        "participants": ("Alice Example",),
        "timeout": 20.0,
        "records_dir": setup.config_path.parent / "records",
        "poll_interval": 0.2,
        "max_poll_interval": 0.5,
    }
    return DrillOptions(**{**values, **changes})


def _add_exercise(setup: DemoSetup, exercise: dict[str, Any]) -> None:
    path = setup.config_path.parent / "rules" / "break-glass.yaml"
    document = yaml.safe_load(path.read_text())
    document["exercises"].append(exercise)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _record(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def test_detected_drill_passes_and_writes_the_record(
    demo: DemoSetup, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    stand_in = CloudTrailStandIn(emulator.endpoint_url, emulator.lookup)
    async with running_watcher(demo.config_path) as watcher:
        result = await drill(
            _options(demo, watcher_url=watcher.url),
            out=sys.stdout,
            after_auth=stand_in.record,
        )
    assert watcher.task.result() == 0
    assert result.exit_code == 0, result.record
    data = _record(result.json_path)
    assert data["result"] == "passed"
    assert [(s["name"], s["status"]) for s in data["steps"]] == [
        ("window", "ok"),
        ("credentials", "ok"),
        ("authenticate", "ok"),
        ("detection", "ok"),
    ]
    assert data["principal"] == ROLE_PRINCIPAL
    assert data["principal_arn"] == demo.role_arn
    assert data["participants"] == ["Alice Example"]
    assert data["source_identity"] == "Alice-Example"
    assert data["session_name"].startswith("break-glass-exercise-")
    assert data["detection"]["classification"] == "drill"
    assert data["detection"]["exercise"] == DRILL_EXERCISE
    assert 0 <= data["time_to_detection_seconds"] < 20
    assert data["issues"] == []
    assert data["next_window_start"] is None  # a one-off window
    assert [r["eventName"] for r in stand_in.delivered] == ["AssumeRole", "GetCallerIdentity"]
    markdown = result.markdown_path.read_text()
    assert "**PASSED: the watcher reported the drill as drill" in markdown
    out = capsys.readouterr().out
    assert "[4] detection: OK" in out
    assert f"Exercise record: {result.markdown_path}" in out


@pytest.mark.slow  # waits out the drill's timeout
async def test_drill_never_reported_fails_with_a_monitoring_gap(
    demo: DemoSetup, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nobody plays CloudTrail: the watcher never hears of the drill.
    async with running_watcher(demo.config_path) as watcher:
        result = await drill(_options(demo, watcher_url=watcher.url, timeout=1.5), out=sys.stdout)
    assert result.exit_code == 1
    data = _record(result.json_path)
    assert data["result"] == "failed"
    assert "monitoring has a gap" in data["verdict"]
    assert data["steps"][2]["status"] == "ok"  # the role was assumed
    assert data["steps"][3]["status"] == "failed"
    assert data["issues"] == [f"the watcher at {watcher.url} did not report the drill within 1.5s"]
    assert "monitoring has a gap" in result.markdown_path.read_text()
    out = capsys.readouterr().out
    assert "not reported yet; checking again in" in out
    assert "FAILED: monitoring has a gap" in out


@pytest.mark.slow  # waits out the drill's timeout
def test_no_watcher_fails_and_says_it_could_not_be_reached(
    demo: DemoSetup, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    code = run_drill(_options(demo, watcher_url=url, timeout=1.0), out=sys.stdout)
    assert code == 1
    [path] = (demo.config_path.parent / "records").glob("*.json")
    data = _record(path)
    assert data["result"] == "failed"
    [issue] = data["issues"]
    assert issue.startswith(f"the watcher at {url} did not report the drill within 1s; it could")
    assert "watcher unreachable" in capsys.readouterr().out


def test_refused_outside_the_window(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    setup = set_up_demo(emulator.endpoint_url, tmp_path, now=tomorrow)
    records = tmp_path / "records"
    argv = ["drill", "--exercise", DRILL_EXERCISE, "-c", str(setup.config_path)]
    assert main([*argv, "--records", str(records), "--timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert f"error: no window of exercise '{DRILL_EXERCISE}' is open now" in err
    assert f"its next window opens {setup.window.start:%Y-%m-%d %H:%M} UTC" in err
    assert "reported as real, unexpected break-glass use" in err
    assert "--outside-window" in err
    assert not records.exists()


@pytest.mark.slow  # a third drill end to end
async def test_outside_window_when_asked_expects_unexpected_use(
    demo: DemoSetup, emulator: Emulator
) -> None:
    _add_exercise(
        demo,
        {
            "name": "last-year",
            "principals": [ROLE_PRINCIPAL],
            "start": "2025-11-26T14:00:00Z",
            "end": "2025-11-26T18:00:00Z",
            "session_name": "last-year-drill-*",
        },
    )
    stand_in = CloudTrailStandIn(emulator.endpoint_url, emulator.lookup)
    async with running_watcher(demo.config_path) as watcher:
        result = await drill(
            _options(demo, exercise="last-year", watcher_url=watcher.url, outside_window=True),
            out=io.StringIO(),
            after_auth=stand_in.record,
        )
    assert result.exit_code == 0, result.record
    record = result.record
    assert record.window is None
    assert record.session_name is not None and record.session_name.startswith("last-year-drill-")
    assert record.detection is not None and record.detection.classification == "unexpected"
    assert any("--outside-window" in n for n in record.notes)


@pytest.mark.slow  # a second drill end to end
async def test_user_drill_through_a_profile(
    demo: DemoSetup, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    _add_exercise(
        demo,
        {
            "name": "user-drill",
            "principals": [USER_PRINCIPAL],
            "start": (now - timedelta(minutes=1)).isoformat(),
            "end": (now + timedelta(minutes=5)).isoformat(),
        },
    )
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        "[break-glass]\n"
        f"aws_access_key_id = {demo.user_access_key_id}\n"
        f"aws_secret_access_key = {demo.user_secret_access_key}\n"
        "[someone-else]\n"
        "aws_access_key_id = AKIAOTHEROTHEROTHER1\n"
        "aws_secret_access_key = other\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    stand_in = CloudTrailStandIn(emulator.endpoint_url, emulator.lookup)
    async with running_watcher(demo.config_path) as watcher:
        result = await drill(
            _options(demo, exercise="user-drill", profile="break-glass", watcher_url=watcher.url),
            out=io.StringIO(),
            after_auth=stand_in.record,
        )
    assert result.exit_code == 0, result.record
    assert result.record.principal == USER_PRINCIPAL
    assert result.record.session_name is None and result.record.source_identity is None
    assert result.record.detection is not None
    assert result.record.detection.classification == "drill"
    assert [r["eventName"] for r in stand_in.delivered] == ["GetCallerIdentity"]
    auth = result.record.step("authenticate")
    assert auth is not None and demo.user_arn in auth.detail

    # Someone else's credentials are not the break-glass user's: access fails, nothing to detect.
    wrong = await drill(
        _options(demo, exercise="user-drill", profile="someone-else", watcher_url=watcher.url),
        out=io.StringIO(),
    )
    assert wrong.exit_code == 1
    assert [(s.name, s.status) for s in wrong.record.steps][2:] == [
        ("authenticate", "failed"),
        ("detection", "skipped"),
    ]
    assert (
        "break-glass access itself did not work"
        in json.loads(wrong.json_path.read_text())["verdict"]
    )
    assert f"not as the break-glass user {demo.user_arn}" in wrong.record.issues[0]


def test_unknown_exercise_is_refused(demo: DemoSetup) -> None:
    with pytest.raises(DrillRefused, match="no exercise named 'nope' in the rules"):
        run_drill(_options(demo, exercise="nope"), out=io.StringIO())


# -------------------------------------------------------------------- account: any principals

ORG_WIDE = Principal("bg-role", "role", "any", ("break-glass-admin",))
MEMBER = "210987654321"


def test_an_org_wide_principal_is_drilled_in_the_account_named() -> None:
    drilled = in_account(ORG_WIDE, MEMBER)
    assert (drilled.name, drilled.account) == (f"bg-role@{MEMBER}", MEMBER)
    assert drilled.arn is None and drilled.iam_names == ("break-glass-admin",)
    declared = Principal("bg-user", "user", "123456789012", ("bg-user",))
    assert in_account(declared, None) is declared
    assert in_account(declared, "123456789012") is declared


@pytest.mark.parametrize(
    ("principal", "account", "reason"),
    [
        (
            ORG_WIDE,
            None,
            "bg-role is declared with account: any (one per account): name the "
            "account whose role to drill with --account ACCOUNT_ID",
        ),
        (ORG_WIDE, "any", "--account 'any' is not an AWS account id (12 digits)"),
        (
            Principal("bg-user", "user", "123456789012", ("bg-user",)),
            MEMBER,
            f"--account {MEMBER}: principal bg-user is in account 123456789012 only",
        ),
    ],
)
def test_the_account_to_drill_in_is_refused_when_it_is_missing_or_wrong(
    principal: Principal, account: str | None, reason: str
) -> None:
    with pytest.raises(DrillRefused) as refused:
        in_account(principal, account)
    assert reason in str(refused.value)


def test_an_account_of_the_organization_is_read_through_its_role(tmp_path: Path) -> None:
    document = {
        "rules": "rules",
        "accounts": {"organization": {"role_name": "reader", "exclude": ["999999999999"]}},
        "sources": {"lookup": {}},
    }
    config = parse_config(document, label="c.yaml", base_dir=tmp_path)
    (account,) = with_account(config, MEMBER).accounts
    assert account.role_arn == f"arn:aws:iam::{MEMBER}:role/reader"
    with pytest.raises(DrillRefused, match="excluded from the organization"):
        with_account(config, "999999999999")
    listed = parse_config(
        {"rules": "rules", "accounts": [{"id": "123456789012"}], "sources": {"lookup": {}}},
        label="c.yaml",
        base_dir=tmp_path,
    )
    assert with_account(listed, "123456789012") is listed
    assert with_account(listed, MEMBER) is listed  # the credentials step says it is not read


def _declare_role_in_every_account(setup: DemoSetup) -> None:
    path = setup.config_path.parent / "rules" / "break-glass.yaml"
    document = yaml.safe_load(path.read_text())
    (role,) = [p for p in document["principals"] if p["name"] == ROLE_PRINCIPAL]
    role["match"] = {"role_name": setup.role_arn.rsplit("/", 1)[-1]}
    role["account"] = "any"
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_an_org_wide_drill_without_account_is_refused(
    demo: DemoSetup, capsys: pytest.CaptureFixture[str]
) -> None:
    _declare_role_in_every_account(demo)
    argv = ["drill", "--exercise", DRILL_EXERCISE, "-c", str(demo.config_path)]
    assert main(argv) == 2
    assert "--account ACCOUNT_ID" in capsys.readouterr().err


@pytest.mark.slow  # a drill end to end
async def test_an_org_wide_drill_in_one_account_is_reported_under_its_name(
    demo: DemoSetup, emulator: Emulator
) -> None:
    """The drill assumes the role in ``--account`` and waits for the watcher's report of
    ``NAME@ACCOUNT``: the daemon and the drill name the principal alike."""
    _declare_role_in_every_account(demo)
    stand_in = CloudTrailStandIn(emulator.endpoint_url, emulator.lookup)
    async with running_watcher(demo.config_path) as watcher:
        result = await drill(
            _options(demo, watcher_url=watcher.url, account=demo.account),
            out=io.StringIO(),
            after_auth=stand_in.record,
        )
    assert result.exit_code == 0, result.record
    data = _record(result.json_path)
    assert data["principal"] == f"{ROLE_PRINCIPAL}@{demo.account}"
    assert data["principal_arn"] == demo.role_arn
    assert data["detection"]["classification"] == "drill"
