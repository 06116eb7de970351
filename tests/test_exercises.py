"""The exercise history's pure parts: drill records read (bad ones skipped with a located
problem), matched to decided windows, and shown as a table."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from harness import write_config
from prometheus_client import CollectorRegistry

from watcher.cli import main
from watcher.drill import write_record
from watcher.drill_record import ExerciseRecord
from watcher.exercises import format_table, history, read_records
from watcher.http import HttpServer, Readiness
from watcher.model import Window
from watcher.store.base import WindowHistory

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
RULES = """
principals:
  - name: bg-admin
    match: {role_arn: "arn:aws:iam::123456789012:role/break-glass-admin-role"}
"""
WINDOW = Window("q4-drill", T0, T0 + timedelta(hours=4))


def record(
    window: Window | None, participants: tuple[str, ...], started: datetime
) -> ExerciseRecord:
    return ExerciseRecord(
        exercise="q4-drill",
        principal="bg-admin",
        principal_arn=None,
        participants=participants,
        started=started,
        finished=started + timedelta(minutes=2),
        window=window,
        session_name="break-glass-exercise-1",
        source_identity=participants[0] if participants else None,
        watcher_url="http://127.0.0.1:9783",
        steps=(),
        detection=None,
        issues=(),
        notes=(),
        next_window=None,
    )


def decided(window: Window, result: str, people: dict[str, int], events: int) -> WindowHistory:
    return WindowHistory(
        exercise=window.exercise,
        start=window.start,
        end=window.end,
        result=result,
        decided_at=window.start + timedelta(minutes=6),
        drill_events=events,
        people=people,
        first_drill=window.start + timedelta(minutes=5) if events else None,
        last_drill=window.start + timedelta(minutes=9) if events else None,
    )


def test_records_are_matched_to_their_window(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    _, alice_json = write_record(record(WINDOW, ("alice",), T0 + timedelta(minutes=4)), folder)
    write_record(record(None, ("zed",), T0 - timedelta(days=3)), folder)  # outside any window
    (folder / "notes.json").write_text("[1, 2")
    (folder / "other.json").write_text('{"exercise": "q4-drill", "participants": "alice"}')
    records, problems = read_records(folder)
    assert [r.participants for r in records] == [("zed",), ("alice",)]
    assert problems == [
        f"{folder / 'notes.json'}: unexpected end of data: line 1 column 6 (char 5)",
        f"{folder / 'other.json'}: participants: expected a list of names",
    ]

    later = Window("q4-drill", T0 + timedelta(days=91), T0 + timedelta(days=91, hours=4))
    entries = history(
        [decided(later, "missed", {}, 0), decided(WINDOW, "detected", {"alice": 2}, 3)], records
    )
    missed, detected = entries
    assert missed["records"] == [] and missed["people"] == [] and missed["first_drill"] is None
    assert detected == {
        "exercise": "q4-drill",
        "start": "2026-10-01T12:00:00Z",
        "end": "2026-10-01T16:00:00Z",
        "result": "detected",
        "decided_at": "2026-10-01T12:06:00Z",
        "drill_events": 3,
        "first_drill": "2026-10-01T12:05:00Z",
        "last_drill": "2026-10-01T12:09:00Z",
        "people": [{"name": "alice", "drill_events": 2}],
        "unattributed_drill_events": 1,
        "records": [
            {
                "file": alice_json.name,
                "result": "failed",  # no steps: a record is passed only when every step was
                "started": "2026-10-01T12:04:00Z",
                "participants": ["alice"],
                "source_identity": "alice",
                "verdict": "FAILED: a step of the drill failed (see the steps below).",
            }
        ],
    }
    assert format_table(entries).splitlines() == [
        "exercise  window (UTC)            result    drills  people  record",
        "q4-drill  2026-12-31 12:00-16:00  missed    0       -       -",
        f"q4-drill  2026-10-01 12:00-16:00  detected  3       alice   failed ({alice_json.name})",
    ]


def test_no_records_folder_and_no_windows(tmp_path: Path) -> None:
    assert read_records(tmp_path / "absent") == ([], [])
    assert format_table(history([], [])) == "no exercise window decided yet\n"


def test_cli_needs_the_daemons_state_and_a_sane_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, endpoint_url="http://127.0.0.1:1", queue_url=None, rules=RULES)
    assert main(["exercises", "-c", str(config)]) == 2
    assert f"no state file at {tmp_path / 'state.db'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["exercises", "-c", str(config), "--limit", "0"])
    assert "limit must be a whole number from 1 to 1000, not '0'" in capsys.readouterr().err


async def test_http_answers_the_history_and_refuses_a_bad_limit() -> None:
    asked: list[int] = []

    async def entries(limit: int) -> list[dict[str, Any]]:
        asked.append(limit)
        return [{"exercise": "q4-drill"}]

    server = HttpServer(
        CollectorRegistry(),
        readiness=lambda: Readiness({}),
        recent_events=lambda limit: asyncio.sleep(0, result=[]),
        exercises=entries,
    )
    port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/exercises?limit=7") as answer:
                assert (answer.status, await answer.json()) == (200, [{"exercise": "q4-drill"}])
            async with http.get(f"http://127.0.0.1:{port}/api/exercises?limit=x") as answer:
                assert answer.status == 400
    finally:
        await server.stop()
    assert asked == [7]
