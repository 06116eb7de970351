"""When each account's IAM inventory runs: every account on its own schedule, spread out.

An organization of 300 accounts must not read 300 IAMs in the same second every hour. Each
account runs at once when first watched (discovery must not wait an hour), at most
``concurrency`` accounts at a time; its next run comes after a wait drawn over a whole interval
(``PollScheduler.spread_wait``: ½ to 1½ of it), and every later one after the interval ± 5 %
(``next_wait``). So from the second hour on the accounts' runs are spread evenly over the
interval, and stay apart.

Accounts come and go (an organization's refresh, a reload): :meth:`InventorySchedule.changed`
makes :meth:`~InventorySchedule.run` start the new accounts, stop the removed ones, and restart
an account whose settings changed (its role, its regions). An account's next due time survives
such a restart, so an organization refresh does not make every account run again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from watcher.scheduling import PollScheduler
from watcher.settings import Account
from watcher.waits import wait_any

Job = Callable[[Account], Awaitable[None]]


class InventorySchedule:
    """Runs a job per account, each on its own spread schedule (see the module docstring)."""

    def __init__(
        self, scheduler: PollScheduler, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._scheduler = scheduler
        self._clock = clock
        self._due: dict[str, float] = {}
        self._changed = asyncio.Event()
        self.runs = 0
        """Jobs started so far (for tests and the benchmark)."""

    def changed(self) -> None:
        """The watched accounts (or their settings) changed: apply that now."""
        self._changed.set()

    def due(self, account: str) -> float | None:
        """When ``account`` runs next (the clock's time), None before its first run."""
        return self._due.get(account)

    async def run(
        self,
        accounts: Callable[[], Sequence[Account]],
        interval: float,
        job: Job,
        stop: asyncio.Event,
    ) -> None:
        """Run ``job`` for each of ``accounts()`` on schedule until ``stop``; jobs in progress
        are cancelled then (a job applies its result only once it has it all)."""
        tasks: dict[str, tuple[Account, asyncio.Task[None]]] = {}
        async with asyncio.TaskGroup() as group:
            while not stop.is_set():
                self._changed.clear()
                current = {a.id: a for a in accounts()}
                for account_id, (account, task) in list(tasks.items()):
                    if current.get(account_id) != account:
                        task.cancel()
                        del tasks[account_id]
                for gone in self._due.keys() - current.keys():
                    del self._due[gone]
                for account_id, account in current.items():
                    if account_id not in tasks:
                        task = group.create_task(self._account(account, interval, job, stop))
                        tasks[account_id] = (account, task)
                await wait_any(self._changed, stop)
            for _, task in tasks.values():
                task.cancel()

    async def _account(
        self, account: Account, interval: float, job: Job, stop: asyncio.Event
    ) -> None:
        while True:
            due = self._due.get(account.id)
            if due is not None and await wait_any(stop, seconds=due - self._clock()):
                return
            async with self._scheduler.slot():
                self.runs += 1
                await job(account)
            wait = (
                self._scheduler.spread_wait(interval)
                if due is None
                else self._scheduler.next_wait(interval)
            )
            self._due[account.id] = self._clock() + wait
