"""People through the running daemon: a drill recorded by the LookupEvents emulator is
attributed from its SourceIdentity, exported per person, and unchanged by a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import ACCOUNT, ROLE_ARN, wait_for, write_config

from watcher.daemon import Daemon
from watcher.emulator import records
from watcher.emulator.server import Emulator

LAST = "breakglass_person_last_drill_timestamp_seconds"
DUE = "breakglass_person_drill_due_timestamp_seconds"


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
    finally:
        again.stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    assert after == before
