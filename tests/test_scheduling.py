"""Scheduling many pollers: bounded concurrency, jittered waits."""

from __future__ import annotations

import asyncio
import random

from watcher.scheduling import JITTER, PollScheduler


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
