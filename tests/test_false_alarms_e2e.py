"""Correct drills never page anyone (issue 11, points 4a-c), end to end on real record shapes.

The daemon runs as a subprocess against moto; the records of a correct MFA console sign-in of a
user (``CheckMfa`` + ``ConsoleLogin``) and of a correct console switch-role into a break-glass
role (both account copies of the ``AssumeRole`` AWS makes for the human, ``SwitchRole``, the
console session's call) go through moto's EventBridge rule (the rendered pattern) and SQS. They
are the corpus records (tests/data/real) with fresh ids and times inside the drill windows.
Then ``BreakGlassUnexpectedUse`` (deploy/prometheus/alerts.yml) is evaluated by ``promtool test
rules`` on the daemon's own counters. The same switch without MFA is the control: it pages.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import debian_binary, running_daemon, wait_for, write_pipeline_config

from watcher.emulator.infra import deliver_many
from watcher.emulator.server import Emulator

REPO = Path(__file__).resolve().parent.parent
REAL = REPO / "tests" / "data" / "real"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"


def rules_text(now: datetime) -> str:
    start, end = (now - timedelta(minutes=30)).isoformat(), (now + timedelta(hours=2)).isoformat()
    return f"""
principals:
  - name: bg-anaya
    match: {{user_name: anaya}}
    account: "111122223333"
  - name: bg-switch-role
    match: {{role_arn: "arn:aws:iam::555566667777:role/assume-admin-role-example"}}
exercises:
  - name: user-mfa-drill
    principals: [bg-anaya]
    start: "{start}"
    end: "{end}"
    require_mfa: true
  - name: switch-role-drill
    principals: [bg-switch-role]
    start: "{start}"
    end: "{end}"
    session_name: "*@example.com"
    source_cidrs: [198.51.100.0/24]
    require_mfa: true
"""


def _records(name: str) -> list[dict[str, Any]]:
    data = json.loads((REAL / name).read_text())
    return data if isinstance(data, list) else [data]


def fresh(records: list[dict[str, Any]], at: datetime) -> list[dict[str, Any]]:
    """The records with new event ids (one new sharedEventID for the lot) and ``at`` as time."""
    shared = str(uuid.uuid4())
    out = []
    for record in records:
        copy = json.loads(json.dumps(record))
        copy["eventID"] = str(uuid.uuid4())
        copy["eventTime"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if "sharedEventID" in copy:
            copy["sharedEventID"] = shared
        out.append(copy)
    return out


def _series(labels: frozenset[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels))
    return f"breakglass_events_total{{{inner}}}"


def _alert_test(folder: Path, series: dict[str, float]) -> subprocess.CompletedProcess[str]:
    """``promtool test rules``: the counters start at 0 (the daemon initialises every label
    set) and hold the scraped value from minute 5; no BreakGlassUnexpectedUse is expected."""
    lines = [
        f"      - series: '{name}'\n        values: '0x4 {value:g}x40'"
        for name, value in sorted(series.items())
    ]
    test = folder / "false_alarms_test.yml"
    test.write_text(
        f"rule_files:\n  - {ALERTS}\n\nevaluation_interval: 1m\n\ntests:\n"
        "  - interval: 1m\n    input_series:\n"
        + "\n".join(lines)
        + "\n    alert_rule_test:\n"
        + "".join(
            f"      - eval_time: {m}m\n        alertname: BreakGlassUnexpectedUse\n"
            "        exp_alerts: []\n"
            for m in (6, 20, 34)
        )
    )
    return subprocess.run(
        [debian_binary("promtool"), "test", "rules", str(test)],
        capture_output=True,
        text=True,
        cwd=folder,
    )


@pytest.mark.slow  # the daemon as a subprocess, then promtool
@pytest.mark.parametrize(
    "switch", ["console-switch-role-mfa.json", "console-switch-role-no-mfa.json"]
)
def test_correct_drills_raise_no_unexpected_use_and_no_alert(
    emulator: Emulator, tmp_path: Path, switch: str
) -> None:
    debian_binary("promtool")  # skips without it (fails under CI=true)
    now = datetime.now(UTC)
    config, _ = write_pipeline_config(
        tmp_path, endpoint_url=emulator.endpoint_url, rules=rules_text(now)
    )
    at = now - timedelta(minutes=1)
    sign_in = fresh(_records("iam-user-checkmfa.json"), at) + fresh(
        _records("iam-user-console-login-mfa.json"), at
    )
    caller_copy, role_copy, switch_role, console_call = fresh(_records(switch), at)
    # The weaker (role-account) copy first: the daemon must converge on the caller's copy.
    switched = [role_copy, switch_role, caller_copy, console_call]

    with running_daemon(config) as daemon:
        deliver_many(emulator.endpoint_url, sign_in + switched)

        def settled() -> bool:  # five events, the AssumeRole decided by the caller's copy
            events = daemon.events()
            return len(events) == 5 and caller_copy["eventID"] in {e["event_id"] for e in events}

        wait_for(settled, 30, "the five events, converged")
        events = daemon.events()
        by_name = sorted((e["event_name"], e["classification"]) for e in events)
        counters = {
            labels: value
            for (name, labels), value in daemon.metrics().items()
            if name == "breakglass_events_total"
        }
    unexpected = sum(
        v for labels, v in counters.items() if ("classification", "unexpected") in labels
    )
    alert = _alert_test(tmp_path, {_series(labels): v for labels, v in counters.items()})

    if switch == "console-switch-role-mfa.json":
        assert by_name == [
            ("AssumeRole", "drill"),
            ("CheckMfa", "drill"),
            ("ConsoleLogin", "drill"),
            ("CreateUser", "drill"),
            ("SwitchRole", "drill"),
        ]
        assert unexpected == 0
        assert sum(counters.values()) == 5  # the copy deciding the same is not counted twice
        assert alert.returncode == 0, alert.stdout + alert.stderr
    else:  # the control: without MFA the switch pages, so the test above can fail
        assert ("AssumeRole", "unexpected") in by_name and ("CreateUser", "unexpected") in by_name
        assert unexpected >= 2
        assert alert.returncode != 0 and "BreakGlassUnexpectedUse" in alert.stdout + alert.stderr
