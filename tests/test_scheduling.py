"""Scheduling many pollers: first polls spread over the interval, bounded concurrency."""

from __future__ import annotations

import asyncio
import random

from watcher.scheduling import JITTER, PollScheduler, spread


def test_first_polls_are_spread_over_the_interval_and_stable() -> None:
    offsets = [spread(("lookup", f"{i:012d}", "us-east-1"), 60.0) for i in range(1200)]
    assert all(0 <= o < 60 for o in offsets)
    assert offsets == [spread(("lookup", f"{i:012d}", "us-east-1"), 60.0) for i in range(1200)]
    per_ten_seconds = [sum(1 for o in offsets if k * 10 <= o < (k + 1) * 10) for k in range(6)]
    assert min(per_ten_seconds) > 150  # 200 expected in each sixth of the minute


def test_waits_are_jittered_within_bounds() -> None:
    scheduler = PollScheduler(rng=random.Random(1))
    waits = [scheduler.next_wait(60.0) for _ in range(1000)]
    assert all(60 * (1 - JITTER) <= w <= 60 * (1 + JITTER) for w in waits)
    assert len(set(waits)) > 900


async def test_no_more_polls_run_at_once_than_the_concurrency() -> None:
    scheduler = PollScheduler(concurrency=5)

    async def poll() -> None:
        async with scheduler.slot():
            await asyncio.sleep(0.01)

    await asyncio.gather(*(poll() for _ in range(100)))
    assert scheduler.peak == 5 and scheduler.running == 0
