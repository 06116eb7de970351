"""The HTTP server: a real aiohttp server on a free port, queried with a real HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from watcher.errors import WatcherError
from watcher.http import HttpServer, Readiness
from watcher.metrics import WatcherMetrics
from watcher.model import Principal, Rules, TrailEvent, Verdict
from watcher.store.sqlite import SqliteStore

T0 = datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
RULES = Rules((Principal("bg-admin", "role", "123456789012"),), ())

EventsFn = Callable[[int], Awaitable[list[dict[str, Any]]]]


class Fixture:
    """A running server whose readiness and events the test controls."""

    def __init__(self) -> None:
        self.metrics = WatcherMetrics()
        self.metrics.init_labels(RULES, [("lookup", "123456789012", "us-east-1")])
        self.checks: dict[str, bool] = {"rules": True, "store": True}
        self.limits: list[int] = []
        self.events: EventsFn = self.record_limit
        self.server = HttpServer(
            self.metrics.registry,
            readiness=lambda: Readiness(self.checks),
            recent_events=lambda limit: self.events(limit),
        )
        self.url = ""

    async def record_limit(self, limit: int) -> list[dict[str, Any]]:
        self.limits.append(limit)
        return [{"event_id": "e1"}]


@pytest.fixture
async def app() -> AsyncIterator[Fixture]:
    fixture = Fixture()
    port = await fixture.server.start("127.0.0.1", 0)
    fixture.url = f"http://127.0.0.1:{port}"
    try:
        yield fixture
    finally:
        await fixture.server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def test_metrics_in_prometheus_text_format(app: Fixture, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{app.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        body = await response.text()
    families = {f.name: f.type for f in text_string_to_metric_families(body)}
    assert families["breakglass_events"] == "counter"
    assert 'breakglass_events_total{classification="drill",outcome="success",' in body


async def test_metrics_in_openmetrics_when_asked(app: Fixture, http: aiohttp.ClientSession) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with http.get(f"{app.url}/metrics", headers={"Accept": accept}) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")


async def test_healthz(app: Fixture, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{app.url}/healthz") as response:
        assert (response.status, await response.text()) == (200, "ok\n")


async def test_readyz_lists_every_check(app: Fixture, http: aiohttp.ClientSession) -> None:
    app.checks["lookup:123456789012:us-east-1"] = True
    async with http.get(f"{app.url}/readyz") as response:
        assert response.status == 200
        assert (await response.json())["ready"] is True
    app.checks["lookup:123456789012:us-east-1"] = False
    async with http.get(f"{app.url}/readyz") as response:
        assert response.status == 503
        assert await response.json() == {
            "ready": False,
            "checks": {"rules": True, "store": True, "lookup:123456789012:us-east-1": False},
        }


async def test_events_limit_default_and_range(app: Fixture, http: aiohttp.ClientSession) -> None:
    for query in ("", "?limit=1", "?limit=1000"):
        async with http.get(f"{app.url}/api/events{query}") as response:
            assert response.status == 200
            assert await response.json() == [{"event_id": "e1"}]
    assert app.limits == [100, 1, 1000]
    for bad in ("0", "1001", "-1", "1.5", "abc", "", "%D9%A5"):  # the last: Arabic-Indic 5
        async with http.get(f"{app.url}/api/events?limit={bad}") as response:
            assert response.status == 400, bad
            assert "limit must be a whole number" in (await response.json())["error"]
    assert app.limits == [100, 1, 1000]


async def test_events_from_a_real_store(
    app: Fixture, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "watcher.db")
    await store.open()
    try:
        batch = []
        for i in range(3):
            at = T0 + timedelta(minutes=i)
            event = TrailEvent(f"e{i}", at, "123456789012", "us-east-1", "ConsoleLogin", "", {}, {})
            batch.append((Verdict(event, "bg-admin", "unexpected", "success"), "eventbridge"))
        await store.commit(batch, now=T0 + timedelta(hours=1))
        app.events = store.recent_events
        async with http.get(f"{app.url}/api/events?limit=2") as response:
            events = await response.json()
        assert [e["event_id"] for e in events] == ["e2", "e1"]
        assert events[0]["event_time"] == "2026-01-01T14:02:00Z"
    finally:
        await store.close()
    # A closed (failing) store is a 503 with the reason, not a crash.
    async with http.get(f"{app.url}/api/events") as response:
        assert response.status == 503
        assert "not open" in (await response.json())["error"]


async def test_only_get(app: Fixture, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{app.url}/metrics") as response:
        assert response.status == 405


async def test_a_busy_port_is_a_clear_error_and_stop_frees_it(
    app: Fixture, http: aiohttp.ClientSession
) -> None:
    port = int(app.url.rsplit(":", 1)[1])
    other = HttpServer(
        WatcherMetrics().registry, readiness=lambda: Readiness({}), recent_events=_none
    )
    with pytest.raises(WatcherError, match=f"cannot listen on 127.0.0.1:{port}"):
        await other.start("127.0.0.1", port)
    await app.server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(f"{app.url}/healthz")
    assert await other.start("127.0.0.1", port) == port
    await other.stop()


async def _none(limit: int) -> list[dict[str, Any]]:
    return []
