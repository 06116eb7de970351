"""Shared fixtures: a real moto server (with the LookupEvents emulator) on loopback, port 0,
reset between tests.

Parallel-safe under pytest-xdist: each worker is its own process with its own emulator (moto's
backends and the LookupEvents store are process-wide, so they are per worker), every server binds
port 0 in the process that serves it, and a port meant to refuse connections stays bound.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

import pytest

from watcher.aws import AwsClients
from watcher.emulator.server import Emulator, start_emulator
from watcher.metrics import drop_created_series
from watcher.model import TrailEvent

# No test may reach real AWS: fake credentials and no instance metadata look-ups.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)
os.environ.pop("AWS_PROFILE", None)
# The test process builds metrics (in-process daemons, the demo's watcher) as the CLI does.
drop_created_series()


@pytest.fixture(scope="session")
def moto_emulator() -> Iterator[Emulator]:
    """One emulator (moto server + LookupEvents) for the session."""
    emulator = start_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def moto_server(moto_emulator: Emulator) -> str:
    """The session's endpoint URL."""
    return moto_emulator.endpoint_url


@pytest.fixture
def emulator(moto_emulator: Emulator) -> Emulator:
    """The emulator, emptied (moto backends and LookupEvents store) before each test."""
    moto_emulator.reset()
    return moto_emulator


@pytest.fixture
def moto_endpoint(emulator: Emulator) -> str:
    """The moto endpoint, emptied before each test."""
    return emulator.endpoint_url


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port where nothing listens, for the whole test.

    The socket stays bound (without ``listen``), so connections are refused and no other
    process can take the port meanwhile, as it could a port that was freed after probing."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


class RecordingSink:
    """An in-memory EventSink: keeps each batch; raises instead while ``failing`` is set."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[TrailEvent], str, dict[str, str]]] = []
        self.calls = 0
        self.failing: Exception | None = None

    async def __call__(
        self, events: Sequence[TrailEvent], source: str, checkpoints: Mapping[str, str]
    ) -> None:
        self.calls += 1
        if self.failing is not None:
            raise self.failing
        self.batches.append((list(events), source, dict(checkpoints)))

    @property
    def event_ids(self) -> list[str]:
        return [e.event_id for events, _, _ in self.batches for e in events]


class RecordingObserver:
    """An in-memory SourceObserver."""

    def __init__(self) -> None:
        self.successes: list[tuple[str, str, str]] = []
        self.errors: list[tuple[str, str, str, str]] = []
        self.malformed_seen: list[tuple[str, str, str]] = []

    def success(self, source: str, account: str, region: str) -> None:
        self.successes.append((source, account, region))

    def error(self, source: str, account: str, region: str, kind: str) -> None:
        self.errors.append((source, account, region, kind))

    def malformed(self, source: str, where: str, reason: str) -> None:
        self.malformed_seen.append((source, where, reason))


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
async def aws_clients(emulator: Emulator) -> AsyncIterator[AwsClients]:
    """The daemon's client factory for the emulator; its pooled clients closed after the test
    (an unclosed one fails the test with a ResourceWarning)."""
    clients = AwsClients(emulator.endpoint_url)
    yield clients
    await clients.close()
