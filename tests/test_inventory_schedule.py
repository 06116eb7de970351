"""Each account's inventory on its own schedule (``watcher/inventory_schedule.py``): all at
once at start within the concurrency, then spread over the interval; accounts that come, go or
change; stop. The job here is a stand-in that records its runs: the schedule does no AWS call."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from harness import wait_for

from watcher.inventory_schedule import InventorySchedule
from watcher.scheduling import PollScheduler
from watcher.settings import Account

HOUR = 3600.0


def accounts(n: int) -> list[Account]:
    return [Account(f"{i:012d}", ("us-east-1",)) for i in range(n)]


class Runs:
    """A job that records which accounts ran, and can be held while running."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def __call__(self, account: Account) -> None:
        self.started.set()
        await self.release.wait()
        self.ran.append(account.id)


async def until(condition: Callable[[], object], what: str = "the schedule") -> None:
    """Poll ``condition`` off the loop (which the schedule needs) for up to 30 seconds."""
    await asyncio.to_thread(wait_for, condition, 30, what)


async def test_every_account_runs_at_start_within_the_bound_then_spreads_over_the_interval() -> (
    None
):
    gate = PollScheduler(concurrency=8, rng=random.Random(7))
    now = [1000.0]
    schedule = InventorySchedule(gate, clock=lambda: now[0])
    watched = accounts(300)
    runs, stop = Runs(), asyncio.Event()
    task = asyncio.create_task(schedule.run(lambda: watched, HOUR, runs, stop))
    await until(lambda: len(runs.ran) == 300)
    assert sorted(runs.ran) == [a.id for a in watched] and gate.peak <= 8
    await until(lambda: all(schedule.due(a.id) is not None for a in watched))
    offsets = sorted((schedule.due(a.id) or 0.0) - now[0] for a in watched)
    assert offsets[0] >= HOUR / 2 and offsets[-1] <= 1.5 * HOUR
    # Spread over the whole interval: every tenth of it holds some of the 300 next runs.
    tenths = {int((o - HOUR / 2) / (HOUR / 10)) for o in offsets}
    assert tenths == set(range(10))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert runs.ran.count(watched[0].id) == 1


async def test_later_runs_come_an_interval_apart_with_a_little_jitter() -> None:
    schedule = InventorySchedule(PollScheduler(rng=random.Random(3)))
    (account,) = accounts(1)
    runs, stop = Runs(), asyncio.Event()
    started = asyncio.get_running_loop().time()
    interval = 0.05
    task = asyncio.create_task(schedule.run(lambda: [account], interval, runs, stop))
    await until(lambda: len(runs.ran) == 4)
    elapsed = asyncio.get_running_loop().time() - started
    stop.set()
    await asyncio.wait_for(task, 5)
    # first at once, second after 0.5-1.5 intervals, two more after ~1 interval each
    assert 2.4 * interval <= elapsed


async def test_accounts_that_come_go_or_change_without_running_the_others_again() -> None:
    now = [0.0]
    schedule = InventorySchedule(PollScheduler(), clock=lambda: now[0])
    first, second, third = accounts(3)
    watched = [first, second]
    runs, stop = Runs(), asyncio.Event()
    task = asyncio.create_task(schedule.run(lambda: watched, HOUR, runs, stop))
    await until(lambda: sorted(runs.ran) == [first.id, second.id])
    await until(lambda: schedule.due(second.id) is not None)

    watched = [first, third]  # the organization gained one and lost one
    schedule.changed()
    await until(lambda: third.id in runs.ran)
    await until(lambda: schedule.due(second.id) is None)
    assert runs.ran.count(first.id) == 1  # its next run still an interval away

    changed = Account(first.id, ("eu-west-1",), role_arn="arn:aws:iam::000000000000:role/r")
    watched = [changed, third]
    due = schedule.due(first.id)
    schedule.changed()
    await asyncio.sleep(0.05)
    assert runs.ran.count(first.id) == 1 and schedule.due(first.id) == due  # restarted, on time
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_stop_cancels_a_run_in_progress() -> None:
    schedule = InventorySchedule(PollScheduler())
    runs, stop = Runs(), asyncio.Event()
    runs.release.clear()  # the run never finishes by itself
    task = asyncio.create_task(schedule.run(lambda: accounts(1), HOUR, runs, stop))
    await asyncio.wait_for(runs.started.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert runs.ran == []  # nothing applied from a cancelled run
