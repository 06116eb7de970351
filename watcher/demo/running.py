"""The daemon as a task of the caller's event loop, for the demo and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from watcher.daemon import Daemon
from watcher.errors import WatcherError


@dataclass(frozen=True, slots=True)
class RunningWatcher:
    daemon: Daemon
    task: asyncio.Task[int]
    url: str


@asynccontextmanager
async def running_watcher(config_path: Path) -> AsyncIterator[RunningWatcher]:
    """The daemon as a task of this event loop, listening; stopped on exit (its exit code, or
    what stopped it, stays in ``task``)."""
    daemon = Daemon.load(config_path)
    task = asyncio.create_task(daemon.run(), name="watcher")
    try:
        port = await _listening(daemon, task)
        yield RunningWatcher(daemon, task, f"http://127.0.0.1:{port}")
    finally:
        daemon.stop.set()
        await asyncio.wait({task})


async def _listening(daemon: Daemon, task: asyncio.Task[int]) -> int:
    """The daemon's HTTP port once it listens (or what stopped it before)."""
    listening = asyncio.ensure_future(daemon.listening.wait())
    try:
        await asyncio.wait({listening, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        listening.cancel()
    if daemon.port is None:
        task.result()  # raises what stopped it
        raise WatcherError("the watcher stopped before it listened")
    return daemon.port
