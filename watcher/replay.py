"""``breakglass-watcher replay``: classify CloudTrail files offline.

Reads named files, folders and ``s3://`` prefixes (``archive.py``: CloudTrail's layout pruned to
``--since/--until/--accounts/--regions``; other folders: every ``.json``/``.json.gz`` file
below), each file classified on its own (``replay_file.py``: the prefilter parses only records
that can be break-glass uses; ``strict`` parses all), in ``--jobs`` worker processes
(``replay_pool.py``) whose results come back in file order. Keeps only break-glass uses in the
selection, de-duplicated across all inputs by dedup key (``replay_uses.Uses``, spilling to disk
past a bound), and prints them in event-time order, one JSON line each, or a table per principal
with ``--summary``. Of the records sharing a dedup key (the two account copies of one cross-
account assume call) the one carrying the caller's identity decides (``Verdict.copy_rank``),
whatever the input order; between equals the first seen stays. Malformed records are warned
about on stderr with their location (with the prefilter: those among the records parsed);
Insights records and digest files are only counted; a file that cannot be read makes the exit
status 1, after the rest ran. The last line on stderr sums up what was read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from watcher.archive import Listing, objects
from watcher.clock import iso_z
from watcher.model import CLASSIFICATIONS, OUTCOMES, Rules
from watcher.replay_file import FileResult, ReplayEngine, Use, selected
from watcher.replay_pool import results
from watcher.replay_progress import Progress, Totals, summary_line
from watcher.replay_uses import DEFAULT_BOUND, Uses
from watcher.rules import ANY_ACCOUNT
from watcher.trail_layout import Selection

MAX_WARNINGS = 20
EVERYTHING = Selection()


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
    """A plain-text table: one row per principal of the rules (and any other seen). An
    ``account: any`` principal has a row per account it was seen in (``NAME@ACCOUNT``)."""
    rows: dict[str, _Row] = {p.name: _Row() for p in rules.principals if p.account != ANY_ACCOUNT}
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


def run_replay(
    rules: Rules,
    sources: Sequence[str | Path],
    *,
    summary: bool,
    out: TextIO,
    err: TextIO | None = None,
    selection: Selection = EVERYTHING,
    jobs: int = 1,
    strict: bool = False,
    bound: int = DEFAULT_BOUND,
) -> int:
    """Classify the files of ``sources``; print uses (or the summary) to ``out``, warnings,
    progress and the summary line to ``err`` (stderr by default). ``strict`` parses every
    record (no prefilter); ``bound`` is the number of uses kept in memory before they spill to
    disk. Returns 0, or 1 when a file or folder could not be read."""
    err = err if err is not None else sys.stderr
    warnings = Warnings(err)
    uses = Uses(bound)
    listing = Listing()
    totals = Totals()
    failed: list[str] = []
    progress = Progress(err)
    try:
        try:
            listed = progress.objects(objects([str(s) for s in sources], selection, listing))
            for done in results(listed, ReplayEngine(rules, strict=strict), jobs):
                result = done.result
                totals.add(done)
                warnings.add(result)
                for use in result.uses:
                    if selected(use, selection):
                        uses.add(use)
                if result.error is not None:
                    failed.append(result.error)
                progress.update(done, totals)
        finally:
            progress.close()
        if summary:
            print(summary_table(rules, uses), file=out)
        else:
            for use in uses:
                print(json.dumps(use.line()), file=out)
        found = len(uses)
    finally:
        uses.close()
    warnings.finish()
    for problem in [*listing.errors, *failed]:
        print(f"error: {problem}", file=err)
    print(summary_line(totals, found, listing.skipped), file=err)
    return 1 if failed or listing.errors else 0
