"""``breakglass-watcher demo --once`` end to end, as a person runs it: a subprocess with no AWS
credentials or configuration of any kind in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from watcher.demo.scenario import (
    DRILL_EXERCISE,
    EMULATOR_ENV,
    PARTICIPANT,
    ROLE_PRINCIPAL,
    UNEXPECTED_SESSION,
)

TIMEOUT = 90  # the run itself takes ~10 s; the bound only stops a hung demo


@pytest.mark.slow  # the whole demo, end to end
def test_demo_once_passes_every_check() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = "/nonexistent"  # no ~/.aws either
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "--log-level", "WARNING", "demo", "--once"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    took = time.monotonic() - began
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert took < 60, f"demo --once took {took:.1f}s"
    for line in (
        "PASS  drill classified drill: drill (demo-drill); record passed",
        f"PASS  other use classified unexpected: session {UNEXPECTED_SESSION}: unexpected",
        f'PASS  window detected: breakglass_exercise_windows_total{{exercise="{DRILL_EXERCISE}",'
        'result="detected"} = 1',
        "PASS  each event counted once: 4 records delivered twice each",
        f"PASS  drill recorded for {PARTICIPANT}: last drill ",
        "PASS  canary travels both paths, never counted as a use: seen through eventbridge and "
        "lookup",
        "/calendar.ics  (subscribe a team calendar to it)\n",
    ):
        assert line in out, out
    assert "FAIL" not in out
    # A demo set up as deploy/ describes passes the watcher's own drift checks too.
    assert "pipeline check failing" not in out + done.stderr
    assert "# Break-glass exercise record: demo-drill" in out
    assert "CloudTrail stand-in" in out
    # The canary's delay per source (send → classified).
    for source in ("eventbridge", "lookup"):
        assert f"{source:<12} canary seen, delay send → classified " in out, out
    for path in ("/metrics", "/api/events", "/api/exercises", "/readyz"):
        assert f"{path}\n" in out
    # The table of what the watcher classified: the drill's two calls and the unexpected use's.
    rows = [r for r in map(str.split, out.splitlines()) if len(r) == 8 and r[1] == ROLE_PRINCIPAL]
    assert sorted((r[2], r[4]) for r in rows) == [
        ("AssumeRole", "drill"),
        ("AssumeRole", "unexpected"),
        ("GetCallerIdentity", "drill"),
        ("GetCallerIdentity", "unexpected"),
    ]
    # The emulator's dummy credentials are never shown.
    for secret in (EMULATOR_ENV["AWS_ACCESS_KEY_ID"], EMULATOR_ENV["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in out + done.stderr
