"""What an event source is, and what the daemon gives it.

A source is one kind of input (``sources.KEY`` in the config) that the daemon runs as one or
more :class:`Source` tasks. A kind is described by a :class:`SourceKind`: how to validate its
config section and how to build its running sources; ``registry.py`` maps config keys to kinds.
Everything else the daemon does with sources (metric label sets, ``/readyz``, restarts on reload)
is derived from the running :class:`Source` objects. docs/design.md ("Adding an event source")
walks through adding one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from watcher.aws import AwsClients
from watcher.model import Principal, TrailEvent
from watcher.scheduling import PollScheduler
from watcher.sources.retry import RateBudgets
from watcher.validation import Fields, Key, Report

if TYPE_CHECKING:
    from watcher.settings import Config

SourceLabels = tuple[str, str, str]
"""(source, account, region): the labels of one running source in metrics and ``/readyz``."""

Settings = TypeVar("Settings")


class EventSink(Protocol):
    """Classifies and stores ``events``, then sets ``checkpoints`` (never before the events).

    Returns only once everything is stored; raises :class:`~watcher.errors.StoreError` if it
    could not be (then the source acknowledges nothing and retries later).
    """

    async def __call__(
        self, events: Sequence[TrailEvent], source: str, checkpoints: Mapping[str, str]
    ) -> None: ...


class SourceObserver(Protocol):
    """Told what the sources see, for ``/readyz`` and the ``breakglass_source_*`` metrics.

    ``kind`` is one of :data:`watcher.sources.retry.ErrorKind`.
    """

    def success(self, source: str, account: str, region: str) -> None: ...

    def error(self, source: str, account: str, region: str, kind: str) -> None: ...

    def malformed(self, source: str, where: str, reason: str) -> None: ...


class CheckpointReader(Protocol):
    """Reads a source's persisted checkpoint (the store; the sink writes them)."""

    async def checkpoint(self, key: str) -> str | None: ...


class Source(Protocol):
    """One running source task."""

    @property
    def labels(self) -> SourceLabels:
        """Its ``(source, account, region)``; every observer call it makes uses these."""
        ...

    @property
    def staleness(self) -> timedelta:
        """How long after its last success ``/readyz`` still counts it as working."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver events to the sink until ``stop`` is set (the batch in hand is finished)."""
        ...


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What the daemon hands every source it builds."""

    clients: AwsClients
    sink: EventSink
    observer: SourceObserver
    checkpoints: CheckpointReader
    principals: Callable[[], Sequence[Principal]]
    """The principals watched now (declared and discovered); changes with reloads."""
    clock: Callable[[], datetime]
    budgets: RateBudgets
    """Rate limits that outlive a restart of the sources (one per account and region...)."""
    scheduler: PollScheduler = field(default_factory=PollScheduler)
    """Concurrency and jitter shared by periodic pollers (``scheduling.py``)."""


@dataclass(frozen=True, slots=True)
class SourceKind(Generic[Settings]):
    """One kind of source: its config section's validation and its running sources.

    ``spec`` lists the keys of its config section ``sources.KEY``; ``parse`` checks what the
    values mean (``regions``: the config's default regions) and returns the settings, or None
    when the source is disabled or has problems (reported). ``build`` makes the running
    sources from the settings.
    ``retention_floor``, if given, says how long stored event ids must be kept at least for
    this source's re-reads to stay de-duplicated, and why. ``leader_only`` sources run on the
    leading replica only (see ``leadership.py``); the others on every replica.
    """

    spec: Mapping[str, Key]
    parse: Callable[[Fields, tuple[str, ...], Report], Settings | None]
    build: Callable[[Settings, Config, SourceContext], Sequence[Source]]
    retention_floor: Callable[[Settings], tuple[timedelta, str]] | None = None
    leader_only: bool = False
