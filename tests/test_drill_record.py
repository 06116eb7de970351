"""The exercise record: pass/fail logic, verdicts, Markdown and JSON rendering."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from watcher.drill_record import (
    STEP_AUTHENTICATE,
    STEP_CREDENTIALS,
    STEP_DETECTION,
    STEP_WINDOW,
    Detection,
    ExerciseRecord,
    Step,
    StepStatus,
    record_basename,
    record_to_dict,
    render_json,
    render_markdown,
    verdict,
)
from watcher.model import Window

T0 = datetime(2026, 11, 26, 15, 30, 0, tzinfo=UTC)


def _step(
    name: str, status: StepStatus = "ok", at: float = 0.0, took: float = 1.0, detail: str = ""
) -> Step:
    start = T0 + timedelta(seconds=at)
    return Step(name, status, start, start + timedelta(seconds=took), detail or f"{name} done")


def _passed() -> ExerciseRecord:
    detection = Detection(
        event_id="0f8a2c1e-1111-4222-8333-444455556666",
        event_name="AssumeRole",
        event_time=T0 + timedelta(seconds=2),
        classification="drill",
        exercise="quarterly-drill",
        source="eventbridge",
        seen_at=T0 + timedelta(seconds=85, milliseconds=420),
        delay=timedelta(seconds=83, milliseconds=420),
    )
    return ExerciseRecord(
        exercise="quarterly-drill",
        principal="break-glass-admin-role",
        principal_arn="arn:aws:iam::123456789012:role/break-glass-admin-role",
        participants=("Alice Example", "Bob"),
        started=T0,
        finished=T0 + timedelta(seconds=86),
        window=Window("quarterly-drill", T0 - timedelta(hours=1), T0 + timedelta(hours=3)),
        session_name="break-glass-exercise-20261126T1530Z",
        source_identity="Alice-Example",
        watcher_url="http://127.0.0.1:9783",
        steps=(
            _step(STEP_WINDOW, took=0),
            _step(STEP_CREDENTIALS, at=0, took=0.4),
            _step(STEP_AUTHENTICATE, at=1, took=1),
            _step(STEP_DETECTION, at=2, took=83.4, detail="reported AssumeRole as drill"),
        ),
        detection=detection,
        issues=(),
        notes=(),
        next_window=datetime(2027, 1, 1, 13, 0, tzinfo=UTC),
    )


def _timed_out() -> ExerciseRecord:
    record = _passed()
    steps = (*record.steps[:3], _step(STEP_DETECTION, "failed", at=2, took=1800, detail="no"))
    problem = "the watcher at http://127.0.0.1:9783 did not report the drill within 30m"
    return replace(record, steps=steps, detection=None, issues=(problem,))


def test_ok_only_when_every_step_passed() -> None:
    assert _passed().ok
    assert not _timed_out().ok
    skipped = replace(_passed(), steps=(*_passed().steps[:3], _step(STEP_DETECTION, "skipped")))
    assert not skipped.ok
    assert not replace(_passed(), steps=()).ok


def test_verdicts_say_plainly_what_is_wrong() -> None:
    assert verdict(_passed()).startswith("PASSED: the watcher reported the drill as drill 1m23.4s")
    assert "monitoring has a gap" in verdict(_timed_out())
    record = _passed()
    auth_failed = replace(
        record,
        steps=(
            *record.steps[:2],
            _step(STEP_AUTHENTICATE, "failed"),
            _step(STEP_DETECTION, "skipped"),
        ),
        detection=None,
    )
    assert "break-glass access itself did not work" in verdict(auth_failed)
    creds_failed = replace(
        record, steps=(record.steps[0], _step(STEP_CREDENTIALS, "failed"), *record.steps[2:])
    )
    assert verdict(creds_failed) == "FAILED: a step of the drill failed (see the steps below)."


def test_markdown_has_every_part_of_the_record() -> None:
    text = render_markdown(_passed())
    assert text.startswith("# Break-glass exercise record: quarterly-drill\n")
    for expected in (
        "**PASSED: the watcher reported the drill as drill 1m23.4s after the first "
        "break-glass call.**",
        "| Date | 2026-11-26 15:30 UTC |",
        "| Participants | Alice Example, Bob |",
        "| Principal | break-glass-admin-role "
        "(`arn:aws:iam::123456789012:role/break-glass-admin-role`) |",
        "| Window | 2026-11-26 14:30:00 UTC to 2026-11-26 18:30:00 UTC |",
        "| Session name | break-glass-exercise-20261126T1530Z |",
        "| Time to detection | 1m23.4s |",
        "| Next scheduled window | 2027-01-01 13:00:00 UTC |",
        "| 4 | detection | OK | 15:30:02 | 1m23.4s | reported AssumeRole as drill |",
        "- classified `drill` for exercise `quarterly-drill`",
        "- first reported by source `eventbridge`",
        "## Issues found\n\nNone.",
    ):
        assert expected in text, expected


def test_markdown_of_a_failed_drill_lists_the_issue() -> None:
    text = render_markdown(_timed_out())
    assert "**FAILED: monitoring has a gap" in text
    assert "| Time to detection | not detected |" in text
    assert "The watcher did not report the drill." in text
    assert "- the watcher at http://127.0.0.1:9783 did not report the drill within 30m" in text
    assert "| 4 | detection | FAILED |" in text


def test_markdown_cells_stay_on_one_line_and_escape_pipes() -> None:
    record = _passed()
    step = _step(STEP_CREDENTIALS, "failed", detail="a | b\nc")
    text = render_markdown(
        replace(
            record,
            steps=(record.steps[0], step, *record.steps[2:]),
            participants=(),
            window=None,
            notes=("run\noutside",),
        )
    )
    assert "| 2 | credentials | FAILED | 15:30:00 | 1s | a \\| b c |" in text
    assert "| Participants | none named |" in text
    assert "| Window | none open: run outside the exercise's windows |" in text
    assert "## Notes\n\n- run outside" in text


def test_json_carries_the_same_facts() -> None:
    data = json.loads(render_json(_passed()))
    assert data == record_to_dict(_passed())
    assert data["result"] == "passed"
    assert data["date"] == "2026-11-26"
    assert data["started"] == "2026-11-26T15:30:00Z"
    assert data["participants"] == ["Alice Example", "Bob"]
    assert data["window"] == {"start": "2026-11-26T14:30:00Z", "end": "2026-11-26T18:30:00Z"}
    assert data["time_to_detection_seconds"] == 83.42
    assert [s["name"] for s in data["steps"]] == [
        "window",
        "credentials",
        "authenticate",
        "detection",
    ]
    assert data["steps"][3] == {
        "name": "detection",
        "status": "ok",
        "started": "2026-11-26T15:30:02Z",
        "finished": "2026-11-26T15:31:25.400000Z",
        "seconds": 83.4,
        "detail": "reported AssumeRole as drill",
    }
    assert data["detection"]["event_id"] == "0f8a2c1e-1111-4222-8333-444455556666"
    assert data["next_window_start"] == "2027-01-01T13:00:00Z"


def test_json_of_a_failed_drill() -> None:
    data = json.loads(render_json(replace(_timed_out(), next_window=None)))
    assert data["result"] == "failed"
    assert "monitoring has a gap" in data["verdict"]
    assert data["detection"] is None
    assert data["time_to_detection_seconds"] is None
    assert data["next_window_start"] is None
    assert data["issues"] == [
        "the watcher at http://127.0.0.1:9783 did not report the drill within 30m"
    ]


def test_basename_sorts_by_time_and_is_a_safe_file_name() -> None:
    assert record_basename(_passed()) == "20261126T153000Z-quarterly-drill"
    odd = replace(
        _passed(), exercise="team:drill/1", started=T0.astimezone(timezone(timedelta(hours=2)))
    )
    assert record_basename(odd) == "20261126T153000Z-team_drill_1"
