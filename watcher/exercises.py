"""The exercise history: every decided window with its drill events, the people seen and the
records ``drill`` wrote, for ``/api/exercises`` and ``breakglass-watcher exercises``.

Windows and their drill events come from the store (never pruned, so a restart or the event
retention loses nothing); records are the JSON files ``drill`` writes into the config's
``records`` folder, matched to a window by exercise name and window start. A record file that
cannot be read is skipped with a located problem (``FILE: reason``), never an error.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from watcher.errors import WatcherError
from watcher.settings import Config
from watcher.store.base import WindowHistory
from watcher.store.registry import build_store

#: Record files larger than this are not exercise records (they are a few kilobytes).
MAX_RECORD_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """What the history shows of one exercise record."""

    file: str
    exercise: str
    window_start: datetime | None
    result: str
    participants: tuple[str, ...]
    source_identity: str | None
    started: datetime
    verdict: str


def read_records(folder: Path) -> tuple[list[RecordSummary], list[str]]:
    """Every ``*.json`` record in ``folder`` (none if it does not exist), and the problems."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"{folder}: cannot list: {exc.strerror or exc}"]
    records: list[RecordSummary] = []
    problems: list[str] = []
    for name in names:
        path = folder / name
        try:
            if path.stat().st_size > MAX_RECORD_BYTES:
                raise ValueError(f"larger than {MAX_RECORD_BYTES} bytes: not an exercise record")
            records.append(parse_record(name, orjson.loads(path.read_bytes())))
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")
        except (ValueError, orjson.JSONDecodeError) as exc:
            problems.append(f"{path}: {exc}")
    return records, problems


def parse_record(name: str, data: object) -> RecordSummary:
    """The fields of a ``drill`` record (``drill_record.record_to_dict``); ValueError if not."""
    if not isinstance(data, dict):
        raise ValueError("not an exercise record (expected a JSON object)")
    window = data.get("window")
    if window is not None and not isinstance(window, dict):
        raise ValueError("window: expected an object or null")
    participants = data.get("participants")
    if not isinstance(participants, list) or not all(isinstance(p, str) for p in participants):
        raise ValueError("participants: expected a list of names")
    source_identity = data.get("source_identity")
    return RecordSummary(
        file=name,
        exercise=_text(data, "exercise"),
        window_start=_time(window, "start", "window.start") if window else None,
        result=_text(data, "result"),
        participants=tuple(participants),
        source_identity=source_identity if isinstance(source_identity, str) else None,
        started=_time(data, "started", "started"),
        verdict=_text(data, "verdict"),
    )


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected text")
    return value


def _time(data: dict[str, Any], key: str, where: str) -> datetime:
    value = data.get(key)
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() is None:
        raise ValueError(f"{where}: expected an ISO 8601 time with an offset")
    return parsed.astimezone(UTC)


def history(
    windows: Sequence[WindowHistory], records: Sequence[RecordSummary]
) -> list[dict[str, Any]]:
    """The history as JSON-ready dicts, in the order of ``windows`` (newest first)."""
    by_window: dict[tuple[str, datetime], list[RecordSummary]] = {}
    for record in sorted(records, key=lambda r: r.started):
        if record.window_start is not None:
            by_window.setdefault((record.exercise, record.window_start), []).append(record)
    return [
        {
            "exercise": w.exercise,
            "start": _iso(w.start),
            "end": _iso(w.end),
            "result": w.result,
            "decided_at": _iso(w.decided_at),
            "drill_events": w.drill_events,
            "first_drill": _iso(w.first_drill) if w.first_drill else None,
            "last_drill": _iso(w.last_drill) if w.last_drill else None,
            "people": [{"name": name, "drill_events": n} for name, n in w.people.items()],
            "unattributed_drill_events": w.drill_events - sum(w.people.values()),
            "records": [
                {
                    "file": r.file,
                    "result": r.result,
                    "started": _iso(r.started),
                    "participants": list(r.participants),
                    "source_identity": r.source_identity,
                    "verdict": r.verdict,
                }
                for r in by_window.get((w.exercise, w.start), [])
            ],
        }
        for w in windows
    ]


def format_table(entries: Sequence[dict[str, Any]]) -> str:
    """One line per window: when, result, drill events, people seen, records."""
    header = ("exercise", "window (UTC)", "result", "drills", "people", "record")
    rows = [header]
    for e in entries:
        start, end = _parse(e["start"]), _parse(e["end"])
        same_day = start.date() == end.date()
        window = f"{start:%Y-%m-%d %H:%M}-{end:{'%H:%M' if same_day else '%Y-%m-%d %H:%M'}}"
        people = ", ".join(p["name"] for p in e["people"]) or "-"
        records = ", ".join(f"{r['result']} ({r['file']})" for r in e["records"]) or "-"
        rows.append((e["exercise"], window, e["result"], str(e["drill_events"]), people, records))
    if len(rows) == 1:
        return "no exercise window decided yet\n"
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
    return "\n".join(f"{line}  {row[-1]}" for line, row in zip(lines, rows, strict=True)) + "\n"


def run_exercises(config: Config, *, fmt: str, limit: int, out: TextIO, err: TextIO) -> int:
    """``breakglass-watcher exercises``: the history from the daemon's state, read-only."""
    if config.store.kind == "sqlite" and not config.state_path.exists():
        raise WatcherError(
            f"no state file at {config.state_path}: the daemon has not run with this config yet"
        )
    windows = asyncio.run(_windows(config, limit))
    records, problems = read_records(config.records_path)
    for problem in problems:
        err.write(f"warning: {problem}\n")
    entries = history(windows, records)
    if fmt == "json":
        out.write(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(format_table(entries))
    return 0


async def _windows(config: Config, limit: int) -> list[WindowHistory]:
    store = build_store(config, read_only=True)  # beside a running daemon
    await store.open()
    try:
        return await store.exercise_history(limit)
    finally:
        await store.close()


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
