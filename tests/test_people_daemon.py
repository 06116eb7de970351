"""People and exercise history through the running daemon: a drill recorded by the LookupEvents
emulator is attributed from its SourceIdentity, exported per person, listed with the drill
record in ``/api/exercises`` and by ``breakglass-watcher exercises``, unchanged by a restart."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from harness import ACCOUNT, ROLE_ARN, wait_for, write_config

from watcher.config import load_config
from watcher.daemon import Daemon
from watcher.drill import write_record
from watcher.drill_record import ExerciseRecord, Step
from watcher.emulator import records
from watcher.emulator.server import Emulator
from watcher.exercises import run_exercises
from watcher.model import Window

LAST = "breakglass_person_last_drill_timestamp_seconds"
DUE = "breakglass_person_drill_due_timestamp_seconds"
WINDOW_START = "breakglass_exercise_last_window_start_timestamp_seconds"
DETECTED = {"exercise": "live-drill", "result": "detected"}


def rules_text(now: datetime) -> str:
    return f"""
principals:
  - name: bg-admin
    match: {{role_arn: "{ROLE_ARN}"}}
exercises:
  - name: live-drill
    principals: [bg-admin]
    start: "{(now - timedelta(minutes=30)).isoformat()}"
    end: "{(now + timedelta(hours=2)).isoformat()}"
    session_name: "break-glass-exercise*"
people:
  - name: alice
    principals: [bg-admin]
  - name: zed
    principals: [bg-admin]
    max_days_between_drills: 30
"""


async def until(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition`` (off the loop, which the daemon needs) for up to 30 seconds."""
    await asyncio.to_thread(wait_for, condition, 30, what)


def sample(daemon: Daemon, name: str, person: str) -> float | None:
    return daemon.registry.get_sample_value(name, {"person": person})


def api(daemon: Daemon, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}{path}", timeout=10) as answer:
        return json.loads(answer.read())


def drill_record(window: Window, started: datetime) -> ExerciseRecord:
    """The record ``drill --participant alice`` leaves in the config's records folder."""
    return ExerciseRecord(
        exercise="live-drill",
        principal="bg-admin",
        principal_arn=ROLE_ARN,
        participants=("alice",),
        started=started,
        finished=started + timedelta(seconds=40),
        window=window,
        session_name="break-glass-exercise-1",
        source_identity="alice",
        watcher_url="http://127.0.0.1:9783",
        steps=(Step("authenticate", "ok", started, started + timedelta(seconds=1), "assumed"),),
        detection=None,
        issues=(),
        notes=(),
        next_window=None,
    )


@pytest.mark.slow  # the daemon as a subprocess, started twice
async def test_person_metrics_from_source_identity_survive_a_restart(
    emulator: Emulator, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    config = write_config(
        tmp_path, endpoint_url=emulator.endpoint_url, queue_url=None, rules=rules_text(now)
    )
    drill_time = now - timedelta(minutes=1)
    emulator.lookup.add(
        records.assume_role_record(
            caller=records.iam_user_identity(ACCOUNT, "ops-runner"),
            role_arn=ROLE_ARN,
            session_name="break-glass-exercise-1",
            event_time=drill_time,
            source_identity="alice",
        )
    )
    # Someone not on the list: a drill, but nobody's.
    emulator.lookup.add(
        records.assume_role_record(
            caller=records.iam_user_identity(ACCOUNT, "ops-runner"),
            role_arn=ROLE_ARN,
            session_name="break-glass-exercise-2",
            event_time=drill_time + timedelta(seconds=20),
            source_identity="mallory",
        )
    )

    window = Window("live-drill", now - timedelta(minutes=30), now + timedelta(hours=2))
    _, record_file = write_record(drill_record(window, drill_time), tmp_path / "records")

    daemon = Daemon.load(config)
    task = asyncio.create_task(daemon.run())
    try:
        await until(lambda: sample(daemon, LAST, "alice") is not None, "alice's drill")
        await until(lambda: sample(daemon, DUE, "zed") is not None, "zed's due time")
        before = {
            (name, person): sample(daemon, name, person)
            for name in (LAST, DUE)
            for person in ("alice", "zed")
        }
        await until(lambda: api(daemon, "/api/exercises"), "the window decided")
        history = await asyncio.to_thread(api, daemon, "/api/exercises")
        decided = daemon.registry.get_sample_value(WINDOW_START, DETECTED)
    finally:
        daemon.stop.set()
        assert await asyncio.wait_for(task, 30) == 0

    assert before[(LAST, "alice")] == drill_time.timestamp()
    assert before[(DUE, "alice")] == (drill_time + timedelta(days=180)).timestamp()
    assert before[(LAST, "zed")] is None  # never practised: absent, not 0
    listed = before[(DUE, "zed")]
    assert listed is not None
    assert abs(listed - (now + timedelta(days=30)).timestamp()) < 120  # first listed + 30 days
    assert sample(daemon, LAST, "mallory") is None
    assert decided == window.start.timestamp()
    (entry,) = history
    assert (entry["exercise"], entry["result"]) == ("live-drill", "detected")
    assert entry["start"] == window.start.isoformat().replace("+00:00", "Z")
    assert entry["drill_events"] == 2 and entry["unattributed_drill_events"] == 1
    assert entry["people"] == [{"name": "alice", "drill_events": 1}]
    assert [(r["file"], r["participants"], r["result"]) for r in entry["records"]] == [
        (record_file.name, ["alice"], "passed")
    ]

    again = Daemon.load(config)
    task = asyncio.create_task(again.run())
    try:
        await asyncio.wait_for(again.listening.wait(), 20)
        await until(lambda: sample(again, DUE, "zed") is not None, "zed's due time")
        after = {
            (name, person): sample(again, name, person)
            for name in (LAST, DUE)
            for person in ("alice", "zed")
        }
        assert await asyncio.to_thread(api, again, "/api/exercises?limit=5") == history
        assert again.registry.get_sample_value(WINDOW_START, DETECTED) == decided
    finally:
        again.stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    assert after == before

    out, err = io.StringIO(), io.StringIO()
    exercises = partial(run_exercises, load_config(config), fmt="json", limit=10, out=out, err=err)
    assert await asyncio.to_thread(exercises) == 0  # the CLI runs its own event loop
    assert json.loads(out.getvalue()) == history and err.getvalue() == ""
