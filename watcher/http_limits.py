"""A cap on open HTTP connections, for the watcher's small HTTP server.

aiohttp bounds idle and half-sent connections with its keep-alive timeout (armed from the
moment a connection opens, so it is also the header-read timeout), but it has no cap on how
many are open at once: a peer holding a thousand connections used up the process's file
descriptors, and with them the SQS receives. :class:`CappedFactory` wraps the server's protocol
factory: at the cap, the *oldest* connection is closed to make room, so a fresh ``/healthz``
or scrape always gets in while whoever holds connections open loses them first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast


class CappedFactory:
    """Protocol factory: at most ``limit`` connections open; ``on_evict`` hears each eviction."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        limit: int,
        on_evict: Callable[[int], None],
    ) -> None:
        self._factory = factory
        self.limit = limit
        self._on_evict = on_evict
        self._open: dict[_Tracked, asyncio.Transport] = {}  # insertion order: oldest first

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def __call__(self) -> asyncio.Protocol:
        return _Tracked(self, self._factory())

    def _opened(self, connection: _Tracked, transport: asyncio.Transport) -> None:
        while len(self._open) >= self.limit:
            oldest = next(iter(self._open))
            self._open.pop(oldest).abort()  # its connection_lost follows, as for any close
            self._on_evict(self.limit)
        self._open[connection] = transport

    def _closed(self, connection: _Tracked) -> None:
        self._open.pop(connection, None)


class _Tracked(asyncio.Protocol):
    """Passes every protocol call to aiohttp's handler; tells the factory of open and close."""

    def __init__(self, cap: CappedFactory, inner: asyncio.Protocol) -> None:
        self._cap = cap
        self._inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._cap._opened(self, cast(asyncio.Transport, transport))
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cap._closed(self)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
