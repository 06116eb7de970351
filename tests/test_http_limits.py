"""Idle and half-sent HTTP connections cannot exhaust the watcher (issue 12, point 4).

The review held 1 100 connections open: ``/healthz`` stopped answering, SQS receives failed for
want of file descriptors and the logs grew by 100 MB of "Too many open files". Here the same
attack runs against the real server, in process and as the daemon: the connection cap closes
the oldest connections, the keep-alive timeout closes the ones that never finish a request,
``/healthz`` answers throughout, and the repeated warning is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import break_glass_rules, running_daemon, user_calls, wait_for, write_config
from prometheus_client import CollectorRegistry

from watcher.emulator.server import Emulator
from watcher.http import HttpServer, Readiness
from watcher.logs import RepeatFilter

HALF_SENT = b"GET /healthz HTTP/1.1\r\nHost: watcher\r\nX-Slow: "


@contextmanager
def held_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections, every other one idle, the rest stopped inside their headers."""
    with ExitStack() as stack:
        held = []
        for n in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            if n % 2:
                sock.sendall(HALF_SENT)
            held.append(sock)
        yield held


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def no_events(limit: int) -> list[dict[str, object]]:
    return []


async def test_held_connections_are_capped_and_timed_out_while_healthz_answers() -> None:
    registry = CollectorRegistry()
    server = HttpServer(
        registry,
        readiness=lambda: Readiness({"rules": True}),
        recent_events=no_events,
        max_connections=8,
        keepalive_timeout=1.0,
    )
    port = await server.start("127.0.0.1", 0)
    try:
        with held_connections(port, 30) as held:
            await wait_for_async(lambda: server.open_connections <= 8, "the cap to hold")
            reader, writer = await asyncio_open(port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: watcher\r\nConnection: close\r\n\r\n")
            started = time.monotonic()
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"ok\n")
            assert time.monotonic() - started < 1.0
            evicted = registry.get_sample_value("breakglass_http_connections_evicted_total")
            assert evicted is not None and evicted >= 30 + 1 - 8
            assert sum(closed_by_server(s) for s in held) >= 30 - 8
            # Whatever is still held, idle or half-sent, is closed after the timeout.
            await wait_for_async(
                lambda: all(closed_by_server(s) for s in held), "the keep-alive timeout"
            )
            assert server.open_connections == 0
    finally:
        await server.stop()


async def asyncio_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def wait_for_async(predicate: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    try:
        async with asyncio.timeout(seconds):
            while not predicate():  # noqa: ASYNC110 - polls sockets and the server's state
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_identical_warnings_are_logged_once_a_window_with_a_count() -> None:
    now = [0.0]
    repeat = RepeatFilter(window=60.0, clock=lambda: now[0])

    def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
        made = logging.LogRecord("asyncio", level, __file__, 1, message, None, None)
        made.socket = "<socket fd=6>"
        return made

    passed = [repeat.filter(record("socket.accept() out of system resource")) for _ in range(1000)]
    assert passed.count(True) == 1
    assert repeat.filter(record("another error"))  # a different line is not held back
    assert repeat.filter(record("an info line", logging.INFO))
    assert all(repeat.filter(record("an info line", logging.INFO)) for _ in range(5))
    now[0] = 61.0
    later = record("socket.accept() out of system resource")
    assert repeat.filter(later) and later.__dict__["repeated"] == 999


def test_the_daemon_answers_healthz_and_counts_events_while_held_open(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = write_config(
        tmp_path, endpoint_url=emulator.endpoint_url, queue_url=None, rules=break_glass_rules()
    )
    with running_daemon(config) as daemon, held_connections(daemon.port, 400):
        started = time.monotonic()
        with urllib.request.urlopen(f"{daemon.base_url}/healthz", timeout=5) as answer:
            assert answer.status == 200
        assert time.monotonic() - started < 1.0
        before = datetime.now(UTC) - timedelta(minutes=1)
        for record in user_calls(range(3), lambda _: before):
            emulator.lookup.add(record)
        wait_for(
            lambda: daemon.metric("breakglass_events_total") == 3,
            what="events counted while connections are held",
        )
        assert daemon.metric("breakglass_http_connections_evicted_total") >= 400 - 128
        warnings = [
            line
            for line in daemon.log_lines()
            if line.get("message", "").startswith("HTTP connection cap reached")
        ]
        assert len(warnings) == 1, warnings  # hundreds of evictions, one line
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


@pytest.mark.parametrize("unit", ["deploy/systemd/breakglass-watcher.service"])
def test_the_systemd_unit_bounds_file_descriptors(unit: str) -> None:
    text = (Path(__file__).resolve().parent.parent / unit).read_text()
    assert "\nLimitNOFILE=4096\n" in text
