"""``breakglass-watcher replay``: classify CloudTrail files offline.

Reads named files, folders and ``s3://`` prefixes (``archive.py``: CloudTrail's layout pruned
to ``--since/--until/--accounts/--regions``; other folders: every ``.json``/``.json.gz`` file
below), each file classified on its own (``replay_file.py``), in ``--jobs`` worker processes
(``replay_pool.py``) whose results come back in file order. Keeps only break-glass verdicts in
the selection, de-duplicated across all inputs by ``TrailEvent.dedup_key``, and prints them in
event-time order, one JSON line each, or a table per principal with ``--summary``. Of the
records sharing a dedup key (the two account copies of one cross-account assume call) the one
carrying the caller's identity decides (``Verdict.copy_rank``), whatever the input order;
between equals the first seen stays. Malformed records are warned about on stderr with their
location; Insights records and digest files are only counted; a file that cannot be read makes
the exit status 1, after the rest ran. The last line on stderr sums up what was read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from watcher.archive import Listing, objects
from watcher.classify import Classifier
from watcher.clock import iso_z
from watcher.events import Malformed, Skipped
from watcher.model import CLASSIFICATIONS, OUTCOMES, Rules, TrailEvent, Verdict
from watcher.replay_file import selected
from watcher.replay_pool import results
from watcher.replay_progress import Progress, Totals, summary_line
from watcher.rules import ANY_ACCOUNT
from watcher.trail_layout import Selection

MAX_WARNINGS = 20
EVERYTHING = Selection()


def verdict_line(verdict: Verdict) -> dict[str, Any]:
    """The JSON object ``replay`` prints for one verdict."""
    event = verdict.event
    return {
        "event_id": event.event_id,
        "event_time": iso_z(event.event_time),
        "principal": verdict.principal,
        "classification": verdict.classification,
        "exercise": verdict.exercise,
        "outcome": verdict.outcome,
        "event_name": event.event_name,
        "session_name": event.session_name,
        "source_ip": event.source_ip,
        "account": event.account,
        "region": event.region,
        "dedup_key": event.dedup_key,
    }


@dataclass
class Warnings:
    """A located warning per malformed record, the first ``MAX_WARNINGS`` of them, then counts."""

    err: TextIO
    count: int = 0
    skipped: int = 0

    def malformed(self, item: Malformed) -> None:
        self.count += 1
        if self.count <= MAX_WARNINGS:
            print(f"warning: malformed record: {item}", file=self.err)

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
    """Classifies records as they stream past and keeps only the break-glass verdicts,
    de-duplicated by ``dedup_key`` (the highest ``copy_rank`` wins, then the first seen), in
    order of first arrival."""

    def __init__(self, classifier: Classifier, warnings: Warnings) -> None:
        self._classify = classifier.classify
        self._warnings = warnings
        self._at: dict[str, int] = {}  # dedup key -> index in verdicts
        self.verdicts: list[Verdict] = []

    def add(self, item: TrailEvent | Malformed | Skipped) -> None:
        if isinstance(item, Malformed):
            self._warnings.malformed(item)
            return
        if isinstance(item, Skipped):
            self._warnings.skipped += 1
            return
        verdict = self._classify(item)
        if verdict is not None:
            self.keep(verdict)

    def keep(self, verdict: Verdict) -> None:
        """Take a break-glass verdict classified elsewhere (a worker process)."""
        key = verdict.event.dedup_key
        at = self._at.get(key)
        if at is None:
            self._at[key] = len(self.verdicts)
            self.verdicts.append(verdict)
        elif verdict.copy_rank > self.verdicts[at].copy_rank:
            self.verdicts[at] = verdict


@dataclass
class _Row:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None
    exercises: set[str] = field(default_factory=set)

    def add(self, verdict: Verdict) -> None:
        key = (verdict.classification, verdict.outcome)
        self.counts[key] = self.counts.get(key, 0) + 1
        t = verdict.event.event_time
        self.first = t if self.first is None else min(self.first, t)
        self.last = t if self.last is None else max(self.last, t)
        if verdict.exercise:
            self.exercises.add(verdict.exercise)


def summary_table(rules: Rules, verdicts: Sequence[Verdict]) -> str:
    """A plain-text table: one row per principal of the rules (and any other seen). An
    ``account: any`` principal has a row per account it was seen in (``NAME@ACCOUNT``)."""
    rows: dict[str, _Row] = {p.name: _Row() for p in rules.principals if p.account != ANY_ACCOUNT}
    for verdict in verdicts:
        rows.setdefault(verdict.principal, _Row()).add(verdict)
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
) -> int:
    """Classify the files of ``sources``; print verdicts (or the summary) to ``out``, warnings,
    progress and the summary line to ``err`` (stderr by default). Returns 0, or 1 when a file
    or folder could not be read."""
    err = err if err is not None else sys.stderr
    warnings = Warnings(err)
    collector = Collector(Classifier(rules), warnings)
    listing = Listing()
    totals = Totals()
    failed: list[str] = []
    progress = Progress(err)
    try:
        listed = progress.objects(objects([str(s) for s in sources], selection, listing))
        for done in results(listed, rules, jobs):
            result = done.result
            totals.add(done)
            for item in result.malformed:
                warnings.malformed(item)
            warnings.skipped += result.skipped
            for use in result.uses:
                if selected(use, selection):
                    collector.keep(use)
            if result.error is not None:
                failed.append(result.error)
            progress.update(done, totals)
    finally:
        progress.close()
    verdicts = sorted(collector.verdicts, key=lambda v: v.event.event_time)  # stable
    if summary:
        print(summary_table(rules, verdicts), file=out)
    else:
        for verdict in verdicts:
            print(json.dumps(verdict_line(verdict)), file=out)
    warnings.finish()
    for problem in [*listing.errors, *failed]:
        print(f"error: {problem}", file=err)
    print(summary_line(totals, len(verdicts), listing.skipped), file=err)
    return 1 if failed or listing.errors else 0
