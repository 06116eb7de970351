"""Many periodic pollers on one loop: bounded concurrency and jitter.

An organization is thousands of account-region pollers. Started together they would all poll
in the same second every interval; the scheduler spreads their first polls over one interval
(an offset fixed by the poller's labels, so a restart keeps the spread) and adds a little
random jitter to each later wait, and lets at most ``concurrency`` polls run at once (each
still paced by its own account and region's token bucket).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

DEFAULT_CONCURRENCY = 64
JITTER = 0.05  # each wait is the interval ± 5 %


def spread(labels: Sequence[str], interval: float) -> float:
    """The first poll's offset in ``[0, interval)``, the same for the same labels."""
    digest = hashlib.sha256("\x00".join(labels).encode()).digest()
    return interval * int.from_bytes(digest[:8], "big") / 2**64


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
