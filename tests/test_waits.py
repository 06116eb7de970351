"""wait_any: the "this, or stop" wait of the daemon's tasks and the sources' back-off."""

from __future__ import annotations

import asyncio

import pytest

from watcher.waits import wait_any


async def test_times_out_false_and_returns_at_once_when_set() -> None:
    stop = asyncio.Event()
    assert await wait_any(stop, seconds=0.01) is False
    assert await wait_any(stop, seconds=-1) is False
    stop.set()
    async with asyncio.timeout(5):  # would wait an hour if the set event were missed
        assert await wait_any(stop, seconds=3600) is True


async def test_the_first_of_several_events_ends_the_wait() -> None:
    reload, stop = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, reload.set)
    async with asyncio.timeout(5):
        assert await wait_any(reload, stop) is True
    assert reload.is_set() and not stop.is_set()


async def test_leaves_no_task_behind_also_when_cancelled() -> None:
    before = asyncio.all_tasks()
    await wait_any(asyncio.Event(), seconds=0.01)
    waiting = asyncio.create_task(wait_any(asyncio.Event()))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert asyncio.all_tasks() == before
