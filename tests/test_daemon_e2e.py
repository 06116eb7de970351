"""The daemon as a subprocess against moto (SQS, EventBridge) and the LookupEvents emulator."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from harness import (
    ACCOUNT,
    ROLE_ARN,
    running_daemon,
    send_to_queue,
    wait_for,
    write_config,
    write_pipeline_config,
)

from watcher.emulator import records
from watcher.emulator.infra import Pipeline, deliver_many
from watcher.emulator.server import Emulator

pytestmark = pytest.mark.slow  # the daemon as a subprocess, end to end


def rules_text(now: datetime) -> str:
    return f"""
principals:
  - name: bg-role
    match: {{role_arn: "{ROLE_ARN}"}}
  - name: bg-user
    match: {{user_name: break-glass-admin}}
    account: "{ACCOUNT}"
exercises:
  - name: live-drill
    principals: [bg-role]
    start: "{(now - timedelta(minutes=30)).isoformat()}"
    end: "{(now + timedelta(hours=2)).isoformat()}"
    session_name: "break-glass-exercise*"
"""


@pytest.fixture
def setup(emulator: Emulator, tmp_path: Path) -> tuple[Path, Pipeline]:
    now = datetime.now(UTC)
    # A short visibility timeout: messages in flight at a kill -9 come back quickly.
    return write_pipeline_config(
        tmp_path, endpoint_url=emulator.endpoint_url, rules=rules_text(now), visibility_timeout=5
    )


CALLER = records.iam_user_identity(ACCOUNT, "alice")


def drill(n: int, at: datetime) -> dict[str, object]:
    return records.assume_role_record(
        caller=CALLER,
        role_arn=ROLE_ARN,
        session_name=f"break-glass-exercise-{n}",
        event_time=at,
    )


def unexpected(n: int, at: datetime) -> dict[str, object]:
    return records.assume_role_record(
        caller=CALLER, role_arn=ROLE_ARN, session_name=f"oops-{n}", event_time=at
    )


def test_both_sources_counted_once(setup: tuple[Path, Pipeline], emulator: Emulator) -> None:
    config, _ = setup
    now = datetime.now(UTC) - timedelta(minutes=1)
    both = [drill(1, now), unexpected(2, now)]
    sqs_only = [unexpected(3, now)]
    lookup_only = [
        records.console_login_record(
            identity=records.iam_user_identity(ACCOUNT, "break-glass-admin"),
            success=False,
            mfa_used=False,
            event_time=now,
        )
    ]
    decoy = records.assume_role_record(
        caller=CALLER,
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role-backup",
        session_name="break-glass-exercise-x",
        event_time=now,
    )
    with running_daemon(config) as daemon:
        deliver_many(emulator.endpoint_url, [*both, *sqs_only, decoy])
        for record in [*both, *lookup_only, decoy]:
            emulator.lookup.add(record)
        wait_for(lambda: len(daemon.events()) == 4, what="four break-glass events")
        # Both sources have had time to deliver everything twice over: still four.
        wait_for(
            lambda: emulator.lookup.calls() and daemon.metric("breakglass_events_total") == 4,
            what="the lookup source to re-poll",
        )
        assert daemon.metric("breakglass_events_total", principal="bg-role") == 3
        assert (
            daemon.metric(
                "breakglass_events_total",
                principal="bg-role",
                classification="drill",
                outcome="success",
            )
            == 1
        )
        assert (
            daemon.metric(
                "breakglass_events_total",
                principal="bg-user",
                classification="unexpected",
                outcome="failure",
            )
            == 1
        )
        assert daemon.metric("breakglass_sessions_total", principal="bg-role") == 3
        assert (
            daemon.metric(
                "breakglass_exercise_windows_total", exercise="live-drill", result="detected"
            )
            == 1
        )
        events = {e["session_name"]: e for e in daemon.events()}
        assert events["break-glass-exercise-1"]["classification"] == "drill"
        assert events["break-glass-exercise-1"]["exercise"] == "live-drill"
        assert events["oops-2"]["classification"] == "unexpected"
        assert {e["source"] for e in daemon.events()} == {"eventbridge", "lookup"}
        status, body = daemon.get("/readyz")
        assert status == 200, body
        _, exposition = daemon.get("/metrics")
        assert b"breakglass_events_total" in exposition
        assert b"_created" not in exposition


def test_malformed_sqs_bodies_beside_good_ones(
    setup: tuple[Path, Pipeline], emulator: Emulator
) -> None:
    config, pipeline = setup
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=emulator.endpoint_url)
    now = datetime.now(UTC)
    good = records.eventbridge_envelope(unexpected(1, now))
    for body in ["{not json", json.dumps({"detail": {"eventID": 7}}), json.dumps(good), "[]"]:
        sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=body)
    with running_daemon(config) as daemon:
        wait_for(
            lambda: daemon.metric("breakglass_events_malformed_total", source="eventbridge") == 3,
            what="three malformed bodies counted",
        )
        assert daemon.metric("breakglass_events_total", classification="unexpected") == 1
        assert daemon.proc.poll() is None
    # The malformed ones are left for the redrive policy, the good one deleted.
    attributes = sqs.get_queue_attributes(
        QueueUrl=pipeline.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "3"


def session_calls(session: int, count: int, start: datetime) -> list[dict[str, object]]:
    """``count`` calls made by one role session (drill sessions have even numbers)."""
    name = f"break-glass-exercise-{session}" if session % 2 == 0 else f"oops-{session}"
    identity = records.assumed_role_identity(ROLE_ARN, name, f"ASIAKILLTEST{session:08d}")
    return [
        records.api_call_record(
            identity=identity,
            event_name="DescribeInstances",
            event_source="ec2.amazonaws.com",
            account=ACCOUNT,
            event_time=start + timedelta(milliseconds=n),
        )
        for n in range(count)
    ]


def test_restart_after_kill_counts_each_event_once(
    setup: tuple[Path, Pipeline], emulator: Emulator
) -> None:
    """kill -9 while a stream is flowing, restart: every event counted exactly once.

    The stream is delivered by a thread while the daemon runs, as in production; moto's SQS
    gets slow with deep queues (it recounts the queue on every send), so it is not pre-filled.
    """
    config, pipeline = setup
    base = datetime.now(UTC) - timedelta(minutes=10)
    stream = [call for s in range(10) for call in session_calls(s, 200, base)]
    stream.sort(key=lambda record: str(record["eventTime"]))
    for record in stream[::7]:  # the LookupEvents path sees some of them too
        emulator.lookup.add(record)
    delivery = threading.Thread(
        target=send_to_queue,
        args=(emulator.endpoint_url, pipeline.queue_url, stream),
        kwargs={"max_depth": 100},
    )
    try:  # the sender thread is joined however this ends: it must not outlive the test
        with running_daemon(config) as daemon:
            delivery.start()
            wait_for(lambda: daemon.metric("breakglass_events_total") >= 300, what="some events")
            daemon.signal(signal.SIGKILL)
            daemon.wait()
        with running_daemon(config) as daemon:
            wait_for(
                lambda: daemon.metric("breakglass_events_total") == len(stream),
                timeout=120,
                what=f"all {len(stream)} events",
            )
            calls = len(emulator.lookup.calls())
            wait_for(lambda: len(emulator.lookup.calls()) > calls + 2, what="lookups to re-read")
            assert daemon.metric("breakglass_events_total") == len(stream)
            assert daemon.metric("breakglass_events_total", classification="drill") == 1000
            assert daemon.metric("breakglass_sessions_total") == 10
    finally:
        if delivery.ident is not None:  # started
            delivery.join(120)


def test_sigterm_exits_zero_and_sighup_reloads(
    setup: tuple[Path, Pipeline], emulator: Emulator
) -> None:
    config, _ = setup
    rules_file = config.parent / "rules" / "rules.yaml"
    good_rules = rules_file.read_text()
    with running_daemon(config) as daemon:
        assert daemon.metric("breakglass_config_last_reload_success") == 1
        rules_file.write_text(good_rules.replace("session_name:", "session_nmae:"))
        daemon.signal(signal.SIGHUP)
        wait_for(
            lambda: daemon.metric("breakglass_config_last_reload_success") == 0,
            what="the failed reload to show",
        )
        failure = next(
            line
            for line in daemon.log_lines()
            if line.get("message", "").startswith("reload failed")
        )
        assert any("session_nmae" in problem for problem in failure["problems"])
        # The last good rules still classify drills.
        deliver_many(emulator.endpoint_url, [drill(1, datetime.now(UTC))])
        wait_for(
            lambda: daemon.metric("breakglass_events_total", classification="drill") == 1,
            what="a drill under the kept rules",
        )
        rules_file.write_text(good_rules.replace("bg-user", "bg-user-2"))
        daemon.signal(signal.SIGHUP)
        wait_for(
            lambda: daemon.metric("breakglass_config_last_reload_success") == 1,
            what="the fixed reload",
        )
        assert daemon.metric("breakglass_principal_info", principal="bg-user-2") == 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_metrics(setup: tuple[Path, Pipeline], emulator: Emulator) -> None:
    config, _ = setup
    with running_daemon(config) as daemon:
        deliver_many(emulator.endpoint_url, [drill(1, datetime.now(UTC))])
        wait_for(lambda: daemon.metric("breakglass_events_total") == 1, what="one event")
        _, body = daemon.get("/metrics")
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert b"breakglass_events_total" in body


def test_bad_rules_refuse_to_start(tmp_path: Path, emulator: Emulator) -> None:
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=None,
        rules="principals:\n  - name: x\n    match: {role_name: r}\n",
    )
    run = subprocess.run(
        [sys.executable, "-m", "watcher", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "rules.yaml: principals[0]" in run.stderr
