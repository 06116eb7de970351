"""A bounded pool of long-lived clients, leased per use, least recently used closed first.

An organization is thousands of account-region pollers, each polling for a moment every
interval; a client held by each for its lifetime cost most of the daemon's memory. Pollers
lease a client for one poll instead. At most ``size`` clients stay open: when a new one pushes
the pool over, the least recently used *idle* clients are closed. A leased client is never
closed under its holder (a call may be in flight): if every client is leased, the pool holds
more for a while and closes the surplus as leases end. ``close`` (the daemon stopping, or the
endpoint changed) closes the idle clients at once and each leased one when its lease ends;
a lease asked of a closed pool gets a client of its own, closed when the lease ends.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

Opener = Callable[[], AbstractAsyncContextManager[Any]]


@dataclass(slots=True)
class _Entry:
    opened: AbstractAsyncContextManager[Any]
    client: Any
    leases: int = 0


class ClientPool:
    """Clients by key (e.g. service, region, account), at most ``size`` of them open when
    none is leased."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"pool size {size} must be at least 1")
        self.size = size
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # least recent first
        self._closed = False
        self.created = 0
        """Clients opened so far (the churn, for the benchmark and tests)."""
        self.peak = 0
        """Most clients seen open at once."""

    @property
    def live(self) -> int:
        """Clients open now."""
        return len(self._entries)

    @asynccontextmanager
    async def lease(self, key: Hashable, opener: Opener) -> AsyncIterator[Any]:
        """The pool's client for ``key`` (opened by ``opener`` if it has none), held until the
        block ends."""
        if self._closed:  # a user not yet stopped: a client of its own, closed after
            async with opener() as client:
                self.created += 1
                yield client
            return
        entry = self._entries.get(key)
        if entry is None:
            await self._trim(room=1)
            entry = await self._open(key, opener)
        entry.leases += 1
        self._entries.move_to_end(key)
        try:
            await self._trim()
            yield entry.client
        finally:
            entry.leases -= 1
            await self._trim()

    async def close(self) -> None:
        """Close every idle client now, and each leased one as its lease ends."""
        self._closed = True
        await self._trim()

    async def _open(self, key: Hashable, opener: Opener) -> _Entry:
        opened = opener()
        client = await opened.__aenter__()
        self.created += 1
        raced = self._entries.get(key)
        if raced is not None:  # another lease opened this key while we awaited
            await opened.__aexit__(None, None, None)
            return raced
        entry = _Entry(opened, client)
        self._entries[key] = entry
        self.peak = max(self.peak, len(self._entries))
        return entry

    async def _trim(self, room: int = 0) -> None:
        """Close idle clients, least recently used first, down to ``size`` less ``room``
        (0 once closed)."""
        bound = 0 if self._closed else self.size - room
        while len(self._entries) > bound:
            # Looked for again after each close: a lease may have taken a client meanwhile.
            idle = next((k for k, e in self._entries.items() if e.leases == 0), None)
            if idle is None:
                return  # all leased: the surplus is closed as leases end
            entry = self._entries.pop(idle)
            await entry.opened.__aexit__(None, None, None)
