"""The exercise record a drill leaves behind, as Markdown and JSON (docs/design.md "Drills", 5).

Pure: the record is data, rendering is string building; ``drill.py`` gathers the facts and writes
the files. A record is ``ok`` only when every step was; a step is skipped when an earlier failure
made it pointless, and a skipped step is not a passed one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from watcher.clock import iso_z
from watcher.durations import format_duration
from watcher.model import Window

StepStatus = Literal["ok", "failed", "skipped"]

STEP_WINDOW = "window"
STEP_CREDENTIALS = "credentials"
STEP_AUTHENTICATE = "authenticate"
STEP_DETECTION = "detection"


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the drill: what it found (``detail``) and how long it took."""

    name: str
    status: StepStatus
    started: datetime
    finished: datetime
    detail: str

    @property
    def took(self) -> timedelta:
        return self.finished - self.started


@dataclass(frozen=True, slots=True)
class Detection:
    """The watcher's report of the drill: the first matching event of ``/api/events``."""

    event_id: str
    event_name: str
    event_time: datetime
    classification: str
    exercise: str | None
    source: str | None
    seen_at: datetime
    delay: timedelta  # from the drill's first break-glass call to ``seen_at``


@dataclass(frozen=True, slots=True)
class ExerciseRecord:
    """Everything a person auditing the exercise later needs to know."""

    exercise: str
    principal: str
    principal_arn: str | None
    participants: tuple[str, ...]
    started: datetime
    finished: datetime
    window: Window | None
    session_name: str | None
    source_identity: str | None
    watcher_url: str
    steps: tuple[Step, ...]
    detection: Detection | None
    issues: tuple[str, ...]
    notes: tuple[str, ...]
    next_window: datetime | None

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.status == "ok" for s in self.steps)

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


def verdict(record: ExerciseRecord) -> str:
    """One sentence: passed, or what is broken, in plain words."""
    if record.ok and record.detection is not None:
        return (
            f"PASSED: the watcher reported the drill as {record.detection.classification} "
            f"{_span(record.detection.delay)} after the first break-glass call."
        )
    auth = record.step(STEP_AUTHENTICATE)
    if auth is not None and auth.status != "ok":
        return (
            "FAILED: break-glass access itself did not work; fix it before it is needed "
            "(see the steps below)."
        )
    detection = record.step(STEP_DETECTION)
    if detection is not None and detection.status != "ok":
        return (
            "FAILED: monitoring has a gap: the watcher did not report this drill as expected, "
            "so a real break-glass use could go unnoticed. Treat break-glass use as unmonitored "
            "until this is fixed."
        )
    return "FAILED: a step of the drill failed (see the steps below)."


def record_basename(record: ExerciseRecord) -> str:
    """A file name (no suffix) that sorts by time: ``20261126T153000Z-quarterly-drill``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", record.exercise)
    return f"{_utc(record.started):%Y%m%dT%H%M%SZ}-{safe}"


def record_to_dict(record: ExerciseRecord) -> dict[str, Any]:
    """The record as JSON-ready data: times ISO 8601 UTC, durations in seconds."""
    detection = record.detection
    return {
        "exercise": record.exercise,
        "result": "passed" if record.ok else "failed",
        "verdict": verdict(record),
        "date": _utc(record.started).date().isoformat(),
        "started": iso_z(record.started),
        "finished": iso_z(record.finished),
        "participants": list(record.participants),
        "principal": record.principal,
        "principal_arn": record.principal_arn,
        "window": (
            {"start": iso_z(record.window.start), "end": iso_z(record.window.end)}
            if record.window
            else None
        ),
        "session_name": record.session_name,
        "source_identity": record.source_identity,
        "watcher_url": record.watcher_url,
        "steps": [
            {
                "name": s.name,
                "status": s.status,
                "started": iso_z(s.started),
                "finished": iso_z(s.finished),
                "seconds": round(s.took.total_seconds(), 3),
                "detail": s.detail,
            }
            for s in record.steps
        ],
        "time_to_detection_seconds": (
            round(detection.delay.total_seconds(), 3) if detection else None
        ),
        "detection": (
            {
                "event_id": detection.event_id,
                "event_name": detection.event_name,
                "event_time": iso_z(detection.event_time),
                "classification": detection.classification,
                "exercise": detection.exercise,
                "source": detection.source,
                "seen_at": iso_z(detection.seen_at),
            }
            if detection
            else None
        ),
        "issues": list(record.issues),
        "notes": list(record.notes),
        "next_window_start": iso_z(record.next_window) if record.next_window else None,
    }


def render_json(record: ExerciseRecord) -> str:
    return json.dumps(record_to_dict(record), indent=2, ensure_ascii=False) + "\n"


def render_markdown(record: ExerciseRecord) -> str:
    """A record a person reads: summary table, steps, detection, issues, next window."""
    detection = record.detection
    rows = [
        ("Date", f"{_utc(record.started):%Y-%m-%d %H:%M} UTC"),
        ("Exercise", record.exercise),
        ("Window", _window(record.window)),
        ("Participants", ", ".join(record.participants) or "none named"),
        ("Principal", _principal(record)),
        ("Session name", record.session_name or "none (IAM user)"),
        ("Source identity", record.source_identity or "none"),
        ("Watcher", record.watcher_url),
        ("Time to detection", _span(detection.delay) if detection else "not detected"),
        ("Next scheduled window", _when(record.next_window) if record.next_window else "none"),
    ]
    lines = [
        f"# Break-glass exercise record: {record.exercise}",
        "",
        f"**{verdict(record)}**",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {_cell(value)} |" for key, value in rows),
        "",
        "## Steps",
        "",
        "| # | Step | Result | Started (UTC) | Took | Details |",
        "|---|---|---|---|---|---|",
        *(
            f"| {i} | {s.name} | {s.status.upper()} | {_utc(s.started):%H:%M:%S} | "
            f"{_span(s.took)} | {_cell(s.detail)} |"
            for i, s in enumerate(record.steps, 1)
        ),
        "",
        "## Detection",
        "",
    ]
    if detection is None:
        lines.append("The watcher did not report the drill.")
    else:
        lines += [
            f"- event `{detection.event_name}` at {_when(detection.event_time)} "
            f"(id `{detection.event_id}`)",
            f"- classified `{detection.classification}`"
            + (f" for exercise `{detection.exercise}`" if detection.exercise else ""),
            f"- first reported by source `{detection.source or 'unknown'}`, seen by the drill "
            f"at {_when(detection.seen_at)}",
        ]
    lines += ["", "## Issues found", ""]
    lines += [f"- {_line(i)}" for i in record.issues] or ["None."]
    if record.notes:
        lines += ["", "## Notes", "", *(f"- {_line(n)}" for n in record.notes)]
    return "\n".join(lines) + "\n"


def _principal(record: ExerciseRecord) -> str:
    if record.principal_arn:
        return f"{record.principal} (`{record.principal_arn}`)"
    return record.principal


def _window(window: Window | None) -> str:
    if window is None:
        return "none open: run outside the exercise's windows"
    return f"{_when(window.start)} to {_when(window.end)}"


def _when(t: datetime) -> str:
    return f"{_utc(t):%Y-%m-%d %H:%M:%S} UTC"


def _span(delta: timedelta) -> str:
    """A duration to a tenth of a second: ``1m23.4s``, ``0.2s``."""
    tenths = round(max(delta, timedelta(0)) / timedelta(milliseconds=100))
    return format_duration(timedelta(milliseconds=100 * tenths))


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return _line(text).replace("|", "\\|")


def _line(text: str) -> str:
    return " ".join(text.split())


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC)
