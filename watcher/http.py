"""The watcher's HTTP endpoints: metrics, liveness, readiness, recent events, the calendar and
the exercise history.

``/metrics`` negotiates the exposition format with the scraper (Prometheus text by default,
OpenMetrics when asked for), as prometheus_client's own handlers do, and formats again only the
samples that changed since the last scrape (``exposition.py``). Access logs are off: a
scrape every 15 s would drown the watcher's own log lines.

Limits, so that no peer can starve the process of file descriptors: a connection that sends no
complete request head within ``keepalive_timeout`` (from connecting, or from its last response)
is closed; at most ``max_connections`` are open, the oldest closed first to make room; request
lines and headers are bounded by aiohttp's defaults (8 KiB each, 128 headers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from watcher.errors import StoreError, WatcherError
from watcher.exposition import CachedExposition
from watcher.http_limits import CappedFactory

log = logging.getLogger(__name__)

DEFAULT_EVENTS_LIMIT = 100
MAX_EVENTS_LIMIT = 1000
MAX_CONNECTIONS = 128  # scrapers, probes and people: a handful; LimitNOFILE leaves room for AWS
KEEPALIVE_TIMEOUT = 15.0  # seconds to send a request head, on a new or an idle connection


@dataclass(frozen=True, slots=True)
class Readiness:
    """Named readiness checks (rules loaded, store open, each enabled source polled recently)."""

    checks: Mapping[str, bool]

    @property
    def ready(self) -> bool:
        return all(self.checks.values())


def parse_limit(raw: str | None) -> int:
    """``limit`` of ``/api/events`` and ``/api/exercises``: absent → default; else a whole
    number in 1..MAX."""
    if raw is None:
        return DEFAULT_EVENTS_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_EVENTS_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_EVENTS_LIMIT}, not {raw!r}")
    return int(raw)


class HttpServer:
    """Serves ``registry`` and the daemon's state; :meth:`start` then :meth:`stop`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        readiness: Callable[[], Readiness],
        recent_events: Callable[[int], Awaitable[list[dict[str, Any]]]],
        max_connections: int = MAX_CONNECTIONS,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        calendar: Callable[[], bytes] | None = None,
        exercises: Callable[[int], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> None:
        self._exposition = CachedExposition(registry)
        self._readiness = readiness
        self._recent_events = recent_events
        self._max_connections = max_connections
        self._keepalive_timeout = keepalive_timeout
        self._calendar = calendar
        self._exercises = exercises
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._cap: CappedFactory | None = None
        self._evicted = Counter(
            "breakglass_http_connections_evicted_total",
            "HTTP connections closed to stay within the connection cap.",
            registry=registry,
        )

    @property
    def open_connections(self) -> int:
        return self._cap.open_connections if self._cap is not None else 0

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port bound."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/api/events", self._events)
        if self._calendar is not None:
            app.router.add_get("/calendar.ics", self._calendar_ics)
        if self._exercises is not None:
            app.router.add_get("/api/exercises", self._exercise_history)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self._keepalive_timeout,
        )
        await runner.setup()
        assert runner.server is not None  # set by setup()
        self._cap = CappedFactory(runner.server, self._max_connections, self._evict)
        try:
            # Our own listener rather than a TCPSite: the protocol factory is wrapped.
            self._listener = await asyncio.get_running_loop().create_server(
                self._cap, host, port, reuse_address=True
            )
        except OSError as exc:
            await runner.cleanup()
            raise WatcherError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._runner = runner
        bound: int = self._listener.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()  # closes the open connections
            self._runner = None

    def _evict(self, limit: int) -> None:
        self._evicted.inc()
        log.warning(
            "HTTP connection cap reached; closed the oldest connection", extra={"cap": limit}
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._exposition.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        readiness = self._readiness()
        body = {"ready": readiness.ready, "checks": dict(readiness.checks)}
        return web.json_response(body, status=200 if readiness.ready else 503)

    async def _events(self, request: web.Request) -> web.Response:
        try:
            limit = parse_limit(request.query.get("limit"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        try:
            events = await self._recent_events(limit)
        except StoreError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response(events)

    async def _calendar_ics(self, request: web.Request) -> web.Response:
        assert self._calendar is not None  # routed only when given
        # Off the loop: a year of weekly windows of ten exercises takes ~0.4 s to render.
        body = await asyncio.to_thread(self._calendar)
        return web.Response(body=body, headers={"Content-Type": "text/calendar; charset=utf-8"})

    async def _exercise_history(self, request: web.Request) -> web.Response:
        assert self._exercises is not None  # routed only when given
        try:
            limit = parse_limit(request.query.get("limit"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        try:
            entries = await self._exercises(limit)
        except StoreError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response(entries)
