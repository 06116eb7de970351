"""Hostile config and rule files: every problem a file can have is a located ConfigError.

The repro cases of issue 12 (impossible dates, offsets of a day, ``!!int abc``, unreadable
folders, huge files...) each have a case here; two hypothesis fuzzers put YAML scalars and tags
into every slot of a valid rule file and a valid config and assert that loading either succeeds
or raises ConfigError, never anything else. ``validate`` and ``replay`` are run as the CLI to
show that no traceback reaches a person.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import break_glass_rules, running_daemon, user_calls, wait_for, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.config import load_config, parse_config
from watcher.emulator.server import Emulator
from watcher.errors import ConfigError
from watcher.rules import load_rules, parse_rules
from watcher.validation import MAX_FILE_BYTES, read_yaml

RULES = """\
principals:
  - name: bg-user
    match: {user_name: break-glass-admin}
    account: "123456789012"
    max_days_between_drills: <max_days>
  - name: bg-role
    match: {role_arn: "arn:aws:iam::123456789012:role/break-glass-admin-role"}
exercises:
  - name: recurring
    principals: [bg-role]
    schedule: <schedule>
    duration: <duration>
    timezone: <timezone>
    session_name: <session_name>
    source_cidrs: [<cidr>]
    require_mfa: <flag>
  - name: one-off
    principals: [bg-user]
    start: <start>
    end: <end>
"""
RULE_SLOTS = {
    "max_days": "90",
    "schedule": '"0 14 1 1,4,7,10 *"',
    "duration": "4h",
    "timezone": "Europe/Berlin",
    "session_name": '"break-glass-*"',
    "cidr": "203.0.113.0/24",
    "flag": "true",
    "start": "2026-05-04T09:00:00+02:00",
    "end": "2026-05-04T17:00:00+02:00",
}

CONFIG = """\
rules: <rules>
state: <state>
listen: <listen>
accounts:
  - id: <account>
    regions: [<region>]
sources:
  eventbridge: {queue_url: <queue_url>, wait_seconds: <wait>}
  lookup: {interval: <interval>, rate_per_second: <rate>}
inventory: {name_patterns: [<pattern>], max_access_key_age: <age>}
detection_grace: <grace>
retention: <retention>
"""
CONFIG_SLOTS = {
    "rules": "rules",
    "state": "state.db",
    "listen": "127.0.0.1:9783",
    "account": '"123456789012"',
    "region": "us-east-1",
    "queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
    "wait": "20",
    "interval": "1m",
    "rate": "1.5",
    "pattern": '"*break-glass*"',
    "age": "90d",
    "grace": "30m",
    "retention": "400d",
}


def render(template: str, slots: dict[str, str], **changed: str) -> str:
    text = template
    for name, value in {**slots, **changed}.items():
        text = text.replace(f"<{name}>", value)
    return text


def rule_problems(text: str) -> list[str]:
    """Load a rule file's text the way the daemon does; the problems ([] when valid)."""
    try:
        parse_rules([("r.yaml", read_yaml(text.encode(), "r.yaml"))])
    except ConfigError as exc:
        assert exc.problems, "a ConfigError without problems"
        assert all(p.file == "r.yaml" and p.reason for p in exc.problems)
        return [str(p) for p in exc.problems]
    return []


def config_problems(text: str) -> list[str]:
    try:
        parse_config(read_yaml(text.encode(), "c.yaml"), label="c.yaml", base_dir=Path("/etc"))
    except ConfigError as exc:
        assert exc.problems, "a ConfigError without problems"
        assert all(p.file == "c.yaml" and p.reason for p in exc.problems)
        return [str(p) for p in exc.problems]
    return []


def test_the_templates_are_valid() -> None:
    assert rule_problems(render(RULES, RULE_SLOTS)) == []
    assert config_problems(render(CONFIG, CONFIG_SLOTS)) == []


@pytest.mark.parametrize(
    ("slot", "value", "expected"),
    [
        ("start", "2026-02-30T10:00:00Z", "line 19, column 12: cannot read '2026-02-30T10:00:00Z'"),
        ("start", "2026-13-01T10:00:00Z", "month must be in 1..12"),
        ("start", "2026-01-01T10:00:00+24:00", "line 19, column 12: cannot read"),
        ("start", '"2026-01-01T10:00:00+99:00"', "exercises[1].start: '2026-01-01T10:00:00+99:00'"),
        ("start", "!!timestamp nope", "line 19, column 12: cannot read 'nope' as timestamp"),
        ("start", "0001-01-01T00:00:00Z", "exercises[1].start: 0001-01-01T00:00:00+00:00 is not"),
        ("end", "9999-12-31T23:00:00-05:00", "exercises[1].end: 9999-12-31T23:00:00-05:00 is not"),
        ("max_days", "!!int abc", "line 5, column 30: cannot read 'abc' as int"),
        ("max_days", "!!float abc", "cannot read 'abc' as float"),
        ("max_days", "99999999999999999999999", "max_days_between_drills: 999"),
        ("max_days", ".inf", "max_days_between_drills: inf is not a finite number"),
        ("max_days", "!!python/name:os.system", "could not determine a constructor"),
        ("max_days", "!custom x", "could not determine a constructor for the tag '!custom'"),
        ("max_days", "!!binary aGVsbG8=", "expected a whole number, got bytes"),
        ("max_days", "!!set {a}", "expected a whole number, got set"),
        ("duration", "142857142w", "exercises[0].duration: '142857142w' is longer than 100"),
        ("duration", "999999999999w", "exercises[0].duration: '999999999999w' is too long"),
        ("timezone", "!!binary AAAA", "exercises[0].timezone: expected text, got bytes"),
        ("session_name", '"[z-a]*"', "the range [z-a] runs backwards"),
        ("session_name", '"x[!9-0]"', "the range [9-0] runs backwards"),
    ],
)
def test_each_hostile_rule_value_is_a_located_problem(slot: str, value: str, expected: str) -> None:
    problems = rule_problems(render(RULES, RULE_SLOTS, **{slot: value}))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("slot", "value", "expected"),
    [
        ("rate", ".nan", "sources.lookup.rate_per_second: nan is not a finite number"),
        ("rate", "-.inf", "rate_per_second: -inf is not a finite number"),
        ("wait", "!!int 0x", "line 8, column 94: cannot read '0x' as int"),
        ("grace", "99999w", "detection_grace: '99999w' is longer than 100 years"),
        ("state", '"a\\0b"', "state: contains a NUL character"),
        ("rules", '"a\\0b"', "rules: contains a NUL character"),
        ("pattern", '"[z-a]*"', "inventory.name_patterns[0]: '[z-a]*' can never match"),
        ("account", "2026-02-30", "line 5, column 9: cannot read '2026-02-30' as timestamp"),
    ],
)
def test_each_hostile_config_value_is_a_located_problem(
    slot: str, value: str, expected: str
) -> None:
    problems = config_problems(render(CONFIG, CONFIG_SLOTS, **{slot: value}))
    assert any(expected in p for p in problems), problems


# -- fuzzers ----------------------------------------------------------------------------------

TAGS = st.sampled_from(
    [
        "",
        "!!str ",
        "!!int ",
        "!!float ",
        "!!bool ",
        "!!null ",
        "!!timestamp ",
        "!!binary ",
        "!!merge ",
        "!!python/object ",
        "!local ",
        "!<tag:example.com,2026:x> ",
    ]
)
# Text shaped like what YAML resolves implicitly: numbers, dates, times, offsets, booleans.
SHAPED = (
    st.from_regex(r"\A-?[0-9]{1,30}(\.[0-9]{0,5})?(e[+-]?[0-9]{1,4})?\Z")
    | st.from_regex(
        r"\A[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ][0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
        r"(Z|[+-][0-9]{1,2}(:[0-9]{2})?)?)?\Z"
    )
    | st.from_regex(r"\A[0-9]{1,12}[wdhms]([0-9]{1,12}[wdhms])?\Z")
    | st.sampled_from(
        [".inf", "-.inf", ".nan", "0x1F", "0o17", "0b101", "1_000", "yes", "~", "null", "[]", "{}"]
    )
    | st.from_regex(r"\A\"?[\[\]!*?a-z0-9 -]{0,12}\"?\Z")
)
FLOW = st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=12).map(json.dumps)
SCALARS = st.builds(lambda tag, text: tag + text, TAGS, SHAPED | FLOW)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(slot=st.sampled_from(sorted(RULE_SLOTS)), value=SCALARS)
def test_fuzzed_rule_values_never_escape_as_anything_but_config_error(
    slot: str, value: str
) -> None:
    rule_problems(render(RULES, RULE_SLOTS, **{slot: value}))


@FUZZ
@given(slot=st.sampled_from(sorted(CONFIG_SLOTS)), value=SCALARS)
def test_fuzzed_config_values_never_escape_as_anything_but_config_error(
    slot: str, value: str
) -> None:
    config_problems(render(CONFIG, CONFIG_SLOTS, **{slot: value}))


# -- files and the CLI ------------------------------------------------------------------------


def test_a_rule_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    with pytest.raises(ConfigError) as caught:
        load_rules(big)
    assert str(caught.value) == f"{big}: is larger than 1024 KiB; split it up"


def test_a_fifo_is_no_rule_file_and_reading_it_does_not_block(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    os.mkfifo(folder / "pipe.yaml")
    with pytest.raises(ConfigError) as caught:
        load_rules(folder / "pipe.yaml")
    assert "is not a regular file" in str(caught.value)
    (folder / "r.yaml").write_text(render(RULES, RULE_SLOTS))
    (folder / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    with pytest.raises(ConfigError) as caught:
        load_rules(folder)  # neither the FIFO nor a dangling link is silently skipped
    assert [str(p) for p in caught.value.problems] == [
        f"{folder / 'gone.yaml'}: cannot read: No such file or directory",
        f"{folder / 'pipe.yaml'}: is not a regular file",
    ]
    config = tmp_path / "c.yaml"
    os.mkfifo(config)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(config)
    with pytest.raises(ConfigError, match="cannot read: Is a directory"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="cannot read: Not a directory"):
        load_config(folder / "r.yaml" / "c.yaml")


def run_cli(*args: str, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    """``breakglass-watcher ARGS``; ``unprivileged``: as root, without the capabilities that
    let root read any file (so a mode-000 folder is unreadable, as it is for everyone else)."""
    prefix: list[str] = []
    if unprivileged and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv (util-linux) is missing")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "watcher", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_and_replay_report_unreadable_rules_without_a_traceback(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(render(RULES, RULE_SLOTS))
    folder.chmod(0o000)
    try:
        for args in (
            ("validate", "--rules", str(folder)),
            ("replay", "--rules", str(folder), "x.json"),
        ):
            done = run_cli(*args, unprivileged=True)
            assert done.returncode == 2, done.stderr
            assert "Traceback" not in done.stderr
            assert f"{folder}: cannot list this directory: Permission denied" in done.stderr
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"principals:\n  - name: \xff\xfe\n", "not UTF-8 text (byte 22)"),
        (render(RULES, RULE_SLOTS, start="2026-02-30T10:00:00Z").encode(), "day is out of range"),
        (render(RULES, RULE_SLOTS, max_days="!!int abc").encode(), "cannot read 'abc' as int"),
    ],
)
def test_validate_and_replay_print_located_errors(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_bytes(content)
    for args in (("validate", "--rules", str(rules)), ("replay", "--rules", str(rules), "x")):
        done = run_cli(*args)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert f"error: {rules}: " in done.stderr and expected in done.stderr


# -- the running daemon -----------------------------------------------------------------------

BROKEN_RULES = {
    "impossible date": "\n  - {name: x, principals: [bg-user], start: 2026-02-30T10:00:00Z,"
    " end: 2026-03-01T10:00:00Z}",
    "day-long offset": "\n  - {name: x, principals: [bg-user], start: 2026-01-01T10:00:00+24:00,"
    " end: 2026-03-01T10:00:00Z}",
    "int tag": "\n  - {name: x, principals: [bg-user], start: !!int abc}",
    "timestamp tag": "\n  - {name: x, principals: [bg-user], start: !!timestamp nope}",
    "huge file": "\n#" + "x" * MAX_FILE_BYTES,
}


def test_a_typo_and_sighup_keep_the_daemon_up_with_the_last_good_rules(
    tmp_path: Path, emulator: Emulator
) -> None:
    good = break_glass_rules("exercises:")  # exercises: (empty) takes the broken items
    config = write_config(tmp_path, endpoint_url=emulator.endpoint_url, queue_url=None, rules=good)
    rules_file = tmp_path / "rules" / "rules.yaml"
    before = datetime.now(UTC) - timedelta(minutes=1)
    with running_daemon(config) as daemon:
        for n, (what, typo) in enumerate(BROKEN_RULES.items()):
            rules_file.write_text(good + typo)
            daemon.signal(signal.SIGHUP)
            wait_for(
                lambda: daemon.metric("breakglass_config_last_reload_success") == 0,
                what=f"the failed reload ({what})",
            )
            assert daemon.proc.poll() is None, daemon.log_path.read_text()
            failures = [
                line["problems"]
                for line in daemon.log_lines()
                if line.get("message", "").startswith("reload failed")
            ]
            assert len(failures) == n + 1 and str(rules_file) in failures[-1][0], failures
            # Each broken file is refused, and the last good rules still count uses.
            for record in user_calls([n], lambda _: before, tag=f"use-{what}"):
                emulator.lookup.add(record)
            counted = n + 1
            wait_for(
                lambda: daemon.metric("breakglass_events_total", principal="bg-user") == counted,  # noqa: B023
                what=f"use {n} counted under the kept rules",
            )
            rules_file.write_text(good)
            daemon.signal(signal.SIGHUP)
            wait_for(
                lambda: daemon.metric("breakglass_config_last_reload_success") == 1,
                what="the fixed reload",
            )
        assert daemon.get("/healthz")[0] == 200
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    assert "Traceback" not in daemon.log_path.read_text()
