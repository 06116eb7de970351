"""``breakglass-watcher replay``: classify CloudTrail files offline.

Reads every file (a folder: every ``.json``/``.json.gz`` file below it, other files skipped
quietly), classifies it with ``replay_file.classify_file`` (the prefilter parses only records
that can be break-glass uses; ``strict`` parses all), keeps only the uses, de-duplicated across
all inputs by dedup key (``replay_uses.Uses``, spilling to disk past a bound), and prints them in
event-time order, one JSON line each, or a table per principal with ``--summary``. Of the
records sharing a dedup key (the two account copies of one cross-account assume call) the one
carrying the caller's identity decides (``Verdict.copy_rank``), whatever the input order; between
equals the first seen stays. Malformed records are warned about on stderr with their location
(with the prefilter: those among the records parsed); Insights records and digest files are only
counted; a file that cannot be read makes the exit status 1, after the rest ran.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from watcher.clock import iso_z
from watcher.model import CLASSIFICATIONS, OUTCOMES, Rules
from watcher.replay_file import FileResult, ReplayEngine, Use, classify_file
from watcher.replay_uses import DEFAULT_BOUND, Uses

MAX_WARNINGS = 20
LOG_SUFFIXES = (".json", ".json.gz")


@dataclass
class Warnings:
    """A located warning per malformed record, the first ``MAX_WARNINGS`` of them, then counts."""

    err: TextIO
    count: int = 0
    skipped: int = 0

    def add(self, result: FileResult) -> None:
        self.skipped += result.skipped
        for warning in result.warnings[: max(0, MAX_WARNINGS - self.count)]:
            print(f"warning: malformed record: {warning}", file=self.err)
        self.count += result.malformed

    def finish(self) -> None:
        if self.count > MAX_WARNINGS:
            print(f"warning: {self.count - MAX_WARNINGS} more malformed records", file=self.err)
        if self.count:
            print(f"{self.count} malformed records skipped", file=self.err)
        if self.skipped:
            print(
                f"{self.skipped} items that are no management events skipped "
                "(CloudTrail Insights records, digest files)",
                file=self.err,
            )


class Collector:
    """The per-file results of a run, merged in the order they are added: uses de-duplicated
    (``Uses``), warnings, counts and the files that could not be read."""

    def __init__(self, warnings: Warnings, bound: int = DEFAULT_BOUND) -> None:
        self.uses = Uses(bound)
        self.warnings = warnings
        self.failed: list[str] = []
        self.records_read = 0
        self.records_parsed = 0

    def add(self, result: FileResult) -> None:
        for use in result.uses:
            self.uses.add(use)
        self.warnings.add(result)
        self.records_read += result.records_read
        self.records_parsed += result.records_parsed
        if result.error is not None:
            self.failed.append(result.error)


def input_files(paths: Sequence[Path]) -> Iterator[Path]:
    """``paths`` with each folder replaced by its ``.json``/``.json.gz`` files, recursively in
    name order (real archives are nested ``AWSLogs/ACCOUNT/CloudTrail/REGION/Y/M/D`` folders).
    Files named on the command line are read whatever their name."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.name.lower().endswith(LOG_SUFFIXES) and found.is_file():
                    yield found
        else:
            yield path


@dataclass
class _Row:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None
    exercises: set[str] = field(default_factory=set)

    def add(self, use: Use) -> None:
        key = (use.classification, use.outcome)
        self.counts[key] = self.counts.get(key, 0) + 1
        t = use.event_time
        self.first = t if self.first is None else min(self.first, t)
        self.last = t if self.last is None else max(self.last, t)
        if use.exercise:
            self.exercises.add(use.exercise)


def summary_table(rules: Rules, uses: Iterable[Use]) -> str:
    """A plain-text table: one row per principal of the rules (and any other seen)."""
    rows: dict[str, _Row] = {p.name: _Row() for p in rules.principals}
    for use in uses:
        rows.setdefault(use.principal, _Row()).add(use)
    columns = [f"{c} {o}" for c in CLASSIFICATIONS for o in OUTCOMES]
    header = ["principal", *columns, "first", "last", "exercises"]
    table = [header]
    for name, row in rows.items():
        table.append(
            [
                name,
                *(str(row.counts.get((c, o), 0)) for c in CLASSIFICATIONS for o in OUTCOMES),
                iso_z(row.first) if row.first else "-",
                iso_z(row.last) if row.last else "-",
                ",".join(sorted(row.exercises)) or "-",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table
    )


def read_file(path: Path, engine: ReplayEngine) -> FileResult:
    """``classify_file`` of a local file; one that cannot be read is a result with an error."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return FileResult(str(path), error=f"{path}: cannot read: {exc}")
    return classify_file(str(path), data, engine)


def run_replay(
    rules: Rules,
    files: Sequence[Path],
    *,
    summary: bool,
    out: TextIO,
    err: TextIO | None = None,
    strict: bool = False,
    bound: int = DEFAULT_BOUND,
) -> int:
    """Classify ``files``; print uses (or the summary) to ``out``, warnings to ``err``
    (stderr by default). ``strict`` parses every record (no prefilter); ``bound`` is the number
    of uses kept in memory before they spill to disk. Returns 0, or 1 when a file could not
    be read."""
    err = err if err is not None else sys.stderr
    engine = ReplayEngine(rules, strict=strict)
    collector = Collector(Warnings(err), bound)
    try:
        for path in input_files(files):
            collector.add(read_file(path, engine))
        if summary:
            print(summary_table(rules, collector.uses), file=out)
        else:
            for use in collector.uses:
                print(json.dumps(use.line()), file=out)
    finally:
        collector.uses.close()
    collector.warnings.finish()
    for problem in collector.failed:
        print(f"error: {problem}", file=err)
    return 1 if collector.failed else 0
