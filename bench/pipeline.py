"""Daemon pipeline throughput: parse + classify + de-duplicate + store, against bare
``json.loads`` of the same bytes.

The stream is bench/stream.py's (EventBridge envelopes as the SQS source receives them, about
1% break-glass, 5% of those delivered twice). Each body goes through ``events.parse_body`` as in
the SQS source, then batches of 10 (an SQS receive) or 50 (a LookupEvents page) through the
daemon's own ``Daemon.sink``: classify, ``SqliteStore.commit`` (dedup, WAL, ``synchronous=FULL``)
on the store's thread, metrics. Times are split into parsing and the sink; the commits that
reach the store are counted and timed (one with a break-glass event in it is one fsync).

    .venv/bin/python bench/pipeline.py                 # 1,000,000 events, batches of 10 and 50
    .venv/bin/python bench/pipeline.py --count 100000  # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from stream import ACCOUNT, chunk, templates

from watcher.daemon import Daemon
from watcher.events import parse_body
from watcher.metrics import drop_created_series
from watcher.model import TrailEvent, Verdict
from watcher.store.base import CommitResult
from watcher.store.sqlite import SqliteStore

RULES = Path(__file__).resolve().parent.parent / "rules"
CHUNK = 50_000


@dataclass
class Run:
    """What one batch size measured."""

    batch: int
    lines: int = 0
    json_seconds: float = 0.0
    parse_seconds: float = 0.0
    sink_seconds: float = 0.0
    batches: int = 0
    stored: int = 0
    db_bytes: int = 0
    commits: int = 0
    commit_seconds: float = 0.0

    @property
    def pipeline_seconds(self) -> float:
        return self.parse_seconds + self.sink_seconds


class CountingStore(SqliteStore):
    """The real store, counting the commits that reach it and the time they take."""

    def __init__(self, path: Path, run: Run) -> None:
        super().__init__(path)
        self.run = run

    async def commit(self, items: Sequence[tuple[Verdict, str]], *, now: datetime) -> CommitResult:
        began = time.perf_counter()
        try:
            return await super().commit(items, now=now)
        finally:
            self.run.commits += 1
            self.run.commit_seconds += time.perf_counter() - began


def write_config(folder: Path) -> Path:
    config = folder / "config.yaml"
    config.write_text(
        f"rules: {RULES}\nstate: state.db\n"
        f'accounts: [{{id: "{ACCOUNT}"}}]\n'
        "sources:\n"
        "  eventbridge: {queue_url: https://sqs.us-east-1.amazonaws.com/123456789012/q}\n"
        "inventory: {enabled: false}\n"
    )
    return config


def state_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("state.db*"))


async def measure(
    count: int,
    batch: int,
    seed: int,
    folder: Path,
    *,
    break_glass_only: bool = False,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK,
) -> Run:
    """``count`` events through parse and ``Daemon.sink`` in batches of ``batch`` bodies;
    ``progress`` is told the bodies done after each chunk of ``chunk_size`` generated."""
    config = write_config(folder)
    run = Run(batch)
    daemon = Daemon.load(config, store_factory=lambda c: CountingStore(c.state_path, run))
    await daemon.store.open()
    rng = random.Random(seed)
    noise, bg = templates(rng)
    try:
        for start in range(0, count, chunk_size):
            size = min(chunk_size, count - start)
            data, _, _ = chunk(rng, bg if break_glass_only else noise, bg, start, size)
            lines = data.split(b"\n")
            run.lines += len(lines)
            began = time.perf_counter()
            for line in lines:
                json.loads(line)
            run.json_seconds += time.perf_counter() - began
            for first in range(0, len(lines), batch):
                began = time.perf_counter()
                events = [
                    item
                    for line in lines[first : first + batch]
                    for item in parse_body(line, "bench")
                    if isinstance(item, TrailEvent)
                ]
                parsed = time.perf_counter()
                await daemon.sink(events, "eventbridge", {})
                run.parse_seconds += parsed - began
                run.sink_seconds += time.perf_counter() - parsed
                run.batches += 1
            if progress is not None:
                progress(run.lines)
        run.stored = int(sum(daemon.metrics.events.totals.values()))
    finally:
        await daemon.store.close()
    run.db_bytes = state_bytes(folder)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="events (default 1e6)")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (10 and 50)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    drop_created_series()
    runs = []
    for batch in args.batch or [10, 50]:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder:
            runs.append(asyncio.run(measure(args.count, batch, args.seed, Path(folder))))
    first = runs[0]
    print(
        f"{first.lines:,} bodies, {first.stored:,} break-glass events stored "
        f"(duplicates dropped), Python {sys.version.split()[0]}"
    )
    print(
        f"{'batch':>5} {'json.loads s':>12} {'parse s':>8} {'sink s':>8} {'total s':>8} "
        f"{'events/s':>9} {'vs json':>8} {'commits':>8} {'commit s':>9} {'ms/commit':>9} "
        f"{'state MB':>9}"
    )
    for run in runs:
        print(
            f"{run.batch:>5} {run.json_seconds:>12.2f} {run.parse_seconds:>8.2f} "
            f"{run.sink_seconds:>8.2f} {run.pipeline_seconds:>8.2f} "
            f"{run.lines / run.pipeline_seconds:>9,.0f} "
            f"{run.json_seconds / run.pipeline_seconds:>7.2f}x "
            f"{run.commits:>8,} {run.commit_seconds:>9.2f} "
            f"{run.commit_seconds / max(1, run.commits) * 1000:>9.2f} {run.db_bytes / 1e6:>9.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
