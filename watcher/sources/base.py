"""What the event sources need from the daemon: somewhere to put events, someone to tell."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from watcher.model import TrailEvent

#: ``source`` label values of the two event sources.
SOURCE_EVENTBRIDGE = "eventbridge"
SOURCE_LOOKUP = "lookup"


class EventSink(Protocol):
    """Classifies and stores ``events`` and sets ``checkpoints`` with them, atomically.

    Returns only once everything is stored; raises if it could not be (then the source
    acknowledges nothing and retries later).
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
