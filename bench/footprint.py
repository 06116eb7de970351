"""Memory and disk footprint: resident memory over a million events, the state file's growth
per million events, and how retention (``prune``) bounds it.

1. Resident memory (VmRSS, peak VmHWM from /proc) of this process while a million events go
   through the daemon's path (``parse_body`` + ``Daemon.sink`` in batches of 10, as from SQS;
   bench/pipeline.py) — sampled after every 50 000, so growth per event shows; and, for
   reference, the real daemon process idle against the emulator (what the imports cost).
2. The state file (``state.db`` + WAL) after a million events of the usual mix (about 1%
   break-glass: only those are stored) and after a million break-glass events.
3. Retention: ``--days`` days of ``--per-day`` break-glass events, stored with the simulated
   day as the store's clock and pruned daily at ``--retention-days``, as the daemon's hourly
   prune does with ``retention``. SQLite reuses freed pages, so the file stops growing once
   pruning starts; it never shrinks (no VACUUM).

    .venv/bin/python bench/footprint.py                  # the full run (a few minutes)
    .venv/bin/python bench/footprint.py --count 200000 --days 20 --per-day 5000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from emulated import emulated
from harness import running_daemon
from pipeline import measure, state_bytes, write_config
from stream import chunk, templates

from watcher.daemon import Daemon
from watcher.events import parse_body
from watcher.metrics import drop_created_series
from watcher.model import TrailEvent

MB = 1024 * 1024


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def memory(count: int, seed: int) -> tuple[list[tuple[int, int]], int, int]:
    """RSS samples (bodies done, bytes), peak RSS, and the state file's size. The stream is
    generated 5 000 bodies at a time, so the benchmark's own buffers stay small."""
    samples = [(0, proc_status()["VmRSS"])]
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as folder:
        asyncio.run(
            measure(
                count,
                10,
                seed,
                Path(folder),
                progress=lambda done: samples.append((done, proc_status()["VmRSS"])),
                chunk_size=5_000,
            )
        )
        size = state_bytes(Path(folder))
    return samples, proc_status()["VmHWM"], size


def stored_growth(count: int, seed: int) -> int:
    """The state file's size after ``count`` break-glass events."""
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as folder:
        asyncio.run(measure(count, 50, seed, Path(folder), break_glass_only=True))
        return state_bytes(Path(folder))


def daemon_idle_rss() -> dict[str, int]:
    """The real daemon's memory, idle against the emulator (examples/config.yaml)."""
    with (
        tempfile.TemporaryDirectory() as name,
        emulated(Path(name)) as setup,
        running_daemon(setup.config) as daemon,
    ):
        time.sleep(5)  # a few polls of both sources and the first inventory
        return proc_status(daemon.proc.pid)


async def retention(days: int, per_day: int, keep: int, seed: int) -> list[tuple[int, int, int]]:
    """(day, state.db bytes, WAL bytes) at the end of each simulated day."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    today = start

    def clock() -> datetime:
        return today

    sizes = []
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as name:
        folder = Path(name)
        config = write_config(folder)
        daemon = Daemon.load(config, clock=clock)
        await daemon.store.open()
        rng = random.Random(seed)
        _, bg = templates(rng)
        try:
            for day in range(days):
                today = start + timedelta(days=day)
                data, _, _ = chunk(rng, bg, bg, day * per_day, per_day)
                lines = data.split(b"\n")
                for first in range(0, len(lines), 50):
                    events = [
                        item
                        for line in lines[first : first + 50]
                        for item in parse_body(line, "bench")
                        if isinstance(item, TrailEvent)
                    ]
                    await daemon.sink(events, "eventbridge", {})
                await daemon.store.prune(today - timedelta(days=keep))
                wal = folder / "state.db-wal"
                sizes.append(
                    (
                        day + 1,
                        (folder / "state.db").stat().st_size,
                        wal.stat().st_size if wal.exists() else 0,
                    )
                )
        finally:
            await daemon.store.close()
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="events (default 1e6)")
    parser.add_argument("--days", type=int, default=60, help="simulated days")
    parser.add_argument("--per-day", type=int, default=10_000, help="break-glass events a day")
    parser.add_argument("--retention-days", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    drop_created_series()

    samples, peak, mixed_size = memory(args.count, args.seed)
    print(f"\nresident memory while {args.count:,} events go through parse + Daemon.sink:")
    print(f"{'bodies':>10} {'RSS MiB':>8}")
    for done, rss in [*samples[:: max(1, len(samples) // 10)], samples[-1]]:
        print(f"{done:>10,} {rss / MB:>8.1f}")
    settled = [rss for _, rss in samples[1:]]
    half = len(settled) // 2
    print(
        f"peak RSS {peak / MB:.1f} MiB; after the first 5 000 bodies RSS stays between "
        f"{min(settled) / MB:.1f} and {max(settled) / MB:.1f} MiB (highest in the first half "
        f"{max(settled[: half or 1]) / MB:.1f}, in the second {max(settled[half:]) / MB:.1f})"
    )

    stored_size = stored_growth(args.count, args.seed)
    scale = 1_000_000 / args.count
    print("\nstate file (state.db + WAL), MiB:")
    print(f"  per million events of the usual mix (~1% break-glass): {mixed_size * scale / MB:.1f}")
    print(
        f"  per million break-glass events stored:                 {stored_size * scale / MB:.1f}"
    )

    sizes = asyncio.run(retention(args.days, args.per_day, args.retention_days, args.seed))
    print(
        f"\nretention {args.retention_days} days, {args.per_day:,} break-glass events a day "
        "(pruned daily):"
    )
    print(f"{'day':>5} {'stored so far':>14} {'state.db MiB':>13} {'WAL MiB':>8}")
    for day, db, wal in sizes:
        if day % max(1, args.days // 12) == 0 or day == args.days:
            print(f"{day:>5} {day * args.per_day:>14,} {db / MB:>13.1f} {wal / MB:>8.1f}")
    idle = daemon_idle_rss()
    print(
        f"\nthe real daemon, idle (examples/config.yaml against the emulator): "
        f"RSS {idle['VmRSS'] / MB:.1f} MiB, peak {idle['VmHWM'] / MB:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
