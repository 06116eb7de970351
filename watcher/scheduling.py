"""Many periodic pollers on one loop: bounded concurrency and jitter.

An organization is thousands of account-region pollers. At most ``concurrency`` polls run at
once (each still paced by its own account and region's token bucket), so the first round is
spread by the gate itself: pollers poll as slots free up, as fast as the bound allows, and none
waits longer than needed (a single account is ready at once). Each later wait is the interval
with a little random jitter, so pollers that finished together drift apart instead of staying
in step.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

DEFAULT_CONCURRENCY = 64
JITTER = 0.05  # each wait is the interval ± 5 %
SPREAD = 0.5  # a spread wait is the interval ± 50 %


class PollScheduler:
    """Shared by every poller of a daemon (and kept across source rebuilds)."""

    def __init__(
        self, concurrency: int = DEFAULT_CONCURRENCY, rng: random.Random | None = None
    ) -> None:
        self.concurrency = concurrency
        self._gate = asyncio.Semaphore(concurrency)
        self._rng = rng or random.Random()
        self.running = 0
        self.peak = 0
        """Most polls seen running at once (for the benchmark and tests)."""

    def next_wait(self, interval: float) -> float:
        return interval * (1 + self._rng.uniform(-JITTER, JITTER))

    def spread_wait(self, interval: float) -> float:
        """A wait drawn over a whole interval (half to one and a half of it): jobs that ran
        together at start (an inventory of every account) then land anywhere in the interval."""
        return interval * self._rng.uniform(1 - SPREAD, 1 + SPREAD)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``concurrency`` poll slots."""
        async with self._gate:
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                yield
            finally:
                self.running -= 1
