"""replay: the sample files end to end, de-duplication, order, warnings, exit status, summary."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from watcher.cli import main
from watcher.emulator.records import (
    api_call_record,
    assumed_role_identity,
    eventbridge_envelope,
    lookup_item,
)
from watcher.model import Exercise, Principal, Rules
from watcher.replay import MAX_WARNINGS, run_replay
from watcher.rules import load_rules

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "cloudtrail"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"
OPEN = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
RULES = Rules(
    (Principal("bg-role", "role", ACCOUNT, iam_names=("break-glass-admin-role",)),),
    (Exercise("drill", principals=("bg-role",), start=OPEN, end=OPEN + timedelta(hours=4)),),
)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_examples", EXAMPLES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_files() -> list[Path]:
    return [
        EXAMPLES / "123456789012_CloudTrail_us-east-1_20261001T1215Z.json.gz",
        EXAMPLES / "lookup-events-20261001.json",
        EXAMPLES / "eventbridge-20261114.jsonl",
    ]


def replay(files: list[Path], rules: Rules = RULES, summary: bool = False) -> tuple[int, str, str]:
    """Exit status, stdout and stderr without its last line, the summary (checked here)."""
    out, err = io.StringIO(), io.StringIO()
    code = run_replay(rules, files, summary=summary, out=out, err=err)
    *rest, last = err.getvalue().splitlines(keepends=True)
    assert re.fullmatch(rf"replay: {len(files)} files \(.*\), \d+ records read.*\n", last), last
    return code, out.getvalue(), "".join(rest)


def test_examples_are_reproducible(tmp_path: Path) -> None:
    written = _generator().write_examples(tmp_path)
    assert [p.name for p in written] == [p.name for p in example_files()]
    for fresh in written:
        assert fresh.read_bytes() == (EXAMPLES / fresh.name).read_bytes(), fresh.name


def test_examples_replay_to_the_documented_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in example_files()]
    assert main(["--log-format", "text", "replay", "--rules", str(REPO / "rules"), *files]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "replay: 3 files (0.0 MB), 18 records read, 18 parsed, 7 uses found\n"
    ), "nothing but the summary line"
    lines = [json.loads(line) for line in captured.out.splitlines()]
    fields = (
        "event_id",
        "event_time",
        "principal",
        "classification",
        "exercise",
        "outcome",
        "event_name",
        "session_name",
    )
    assert [tuple(line[f] for f in fields) for line in lines] == [
        (
            "c0a80001-0000-4000-8000-000000000004",
            "2026-10-01T12:07:12Z",
            "break-glass-admin-role",
            "drill",
            "quarterly-drill",
            "success",
            "AssumeRole",
            "break-glass-exercise-2026q4",
        ),
        (
            "c0a80001-0000-4000-8000-000000000005",
            "2026-10-01T12:07:30Z",
            "break-glass-admin-role",
            "drill",
            "quarterly-drill",
            "success",
            "GetCallerIdentity",
            "break-glass-exercise-2026q4",
        ),
        (
            "c0a80001-0000-4000-8000-000000000007",
            "2026-10-01T12:09:14Z",
            "break-glass-admin-role",
            "drill",
            "quarterly-drill",
            "success",
            "ListUsers",
            "break-glass-exercise-2026q4",
        ),
        (
            "c0a80001-0000-4000-8000-000000000008",
            "2026-10-01T12:11:51Z",
            "break-glass-admin-role",
            "drill",
            "quarterly-drill",
            "success",
            "GetAccountAuthorizationDetails",
            "break-glass-exercise-2026q4",
        ),
        (
            "d1b2c3d4-0000-4000-8000-000000000003",
            "2026-11-14T02:13:40Z",
            "break-glass-admin",
            "unexpected",
            None,
            "success",
            "ConsoleLogin",
            None,
        ),
        (
            "d1b2c3d4-0000-4000-8000-000000000004",
            "2026-11-14T02:15:40Z",
            "break-glass-admin",
            "unexpected",
            None,
            "success",
            "CreateAccessKey",
            None,
        ),
        (
            "d1b2c3d4-0000-4000-8000-000000000005",
            "2026-11-14T02:20:00Z",
            "break-glass-admin-role",
            "unexpected",
            None,
            "failure",
            "AssumeRole",
            "totally-legit",
        ),
    ]
    assert set(lines[0]) >= {"source_ip", "account", "region"}
    assert (lines[0]["source_ip"], lines[0]["account"], lines[0]["region"]) == (
        "203.0.113.45",
        ACCOUNT,
        "us-east-1",
    )


def test_examples_summary() -> None:
    code, out, _ = replay(example_files(), load_rules(REPO / "rules"), summary=True)
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert rows["break-glass-admin"] == [
        "0",
        "0",
        "2",
        "0",
        "2026-11-14T02:13:40Z",
        "2026-11-14T02:15:40Z",
        "-",
    ]
    assert rows["break-glass-admin-role"] == [
        "4",
        "0",
        "0",
        "1",
        "2026-10-01T12:07:12Z",
        "2026-11-14T02:20:00Z",
        "quarterly-drill",
    ]


def call(eid: str, t: datetime, session: str = "s", **kw: Any) -> dict[str, Any]:
    identity = assumed_role_identity(ROLE, session, "ASIAKEY")
    return api_call_record(
        identity=identity,
        event_name="ListUsers",
        event_source="iam.amazonaws.com",
        account=ACCOUNT,
        event_time=t,
        event_id=eid,
        **kw,
    )


def test_dedup_across_files_first_seen_wins_and_time_order_is_stable(tmp_path: Path) -> None:
    t = OPEN + timedelta(minutes=1)
    late = call("late", OPEN - timedelta(days=1), session="first-copy")
    a = tmp_path / "a.jsonl"
    a.write_text(
        "\n".join(
            json.dumps(eventbridge_envelope(r)) for r in [call("tie-1", t), late, call("tie-2", t)]
        )
    )
    b = tmp_path / "b.json.gz"
    second_copy = call("late", OPEN - timedelta(days=1), session="second-copy")
    lookup = {"Events": [lookup_item(second_copy), lookup_item(call("tie-0", t))]}
    b.write_bytes(gzip.compress(json.dumps(lookup, default=str).encode()))
    code, out, err = replay([a, b])
    assert (code, err) == (0, "")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(x["event_id"], x["classification"]) for x in lines] == [
        ("late", "unexpected"),
        ("tie-1", "drill"),
        ("tie-2", "drill"),
        ("tie-0", "drill"),
    ]
    assert lines[0]["session_name"] == "first-copy"


def test_shared_event_id_is_the_dedup_key(tmp_path: Path) -> None:
    t = OPEN + timedelta(minutes=1)
    path = tmp_path / "x.jsonl"
    records = [call("one", t, shared_event_id="shared"), call("two", t, shared_event_id="shared")]
    path.write_text("\n".join(json.dumps(r) for r in records))
    _, out, _ = replay([path])
    assert [json.loads(line)["dedup_key"] for line in out.splitlines()] == ["shared"]


def test_non_break_glass_events_print_nothing(tmp_path: Path) -> None:
    other = assumed_role_identity(f"arn:aws:iam::{ACCOUNT}:role/app", "s", "ASIAAPP")
    record = api_call_record(
        identity=other,
        event_name="GetObject",
        event_source="s3.amazonaws.com",
        account=ACCOUNT,
        event_time=OPEN,
    )
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"Records": [record]}))
    assert replay([path]) == (0, "", "")


def test_malformed_records_are_warned_about_capped_and_counted(tmp_path: Path) -> None:
    good = call("good", OPEN + timedelta(minutes=1))
    broken = [{"eventID": f"b{n}"} for n in range(MAX_WARNINGS + 5)]
    path = tmp_path / "log.json"
    path.write_text(json.dumps({"Records": [*broken, good]}, indent=1))
    code, out, err = replay([path])
    assert code == 0
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == ["good"]
    warnings = err.splitlines()
    reason = "eventName is missing or not a non-empty string"
    assert warnings[0] == f"warning: malformed record: {path}: Records[0]: {reason}"
    assert len([w for w in warnings if w.startswith("warning: malformed record:")]) == MAX_WARNINGS
    assert warnings[-2:] == [
        "warning: 5 more malformed records",
        f"{MAX_WARNINGS + 5} malformed records skipped",
    ]


def test_an_unreadable_file_fails_the_run_after_the_others(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(call("good", OPEN)))
    not_gzip = tmp_path / "broken.json.gz"
    not_gzip.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    code, out, err = replay([tmp_path / "missing.json", not_gzip, good])
    assert code == 1
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == ["good"]
    errors = err.splitlines()
    assert errors[0].startswith(f"error: {tmp_path / 'missing.json'}: cannot read")
    assert errors[1].startswith(f"error: {not_gzip}: cannot read")


def test_summary_lists_every_principal(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(
        json.dumps(call("a", OPEN))
        + "\n"
        + json.dumps(call("b", OPEN - timedelta(hours=1), error_code="AccessDenied"))
    )
    rules = Rules(
        (*RULES.principals, Principal("idle", "user", ACCOUNT, iam_names=("idle",))),
        RULES.exercises,
    )
    code, out, _ = replay([path], rules, summary=True)
    assert code == 0
    header, *rows = out.splitlines()
    assert [row.split() for row in rows] == [
        ["bg-role", "1", "0", "0", "1", "2026-10-01T11:00:00Z", "2026-10-01T12:00:00Z", "drill"],
        ["idle", "0", "0", "0", "0", "-", "-", "-"],
    ]
    assert header.split("  ")[:3] == ["principal", "drill success", "drill failure"]
    column = header.index("first")
    assert rows[0][column:].startswith("2026-10-01T11:00:00Z") and rows[1][column] == "-"
