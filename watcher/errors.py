"""One exception tree for everything the watcher reports to a person."""

from __future__ import annotations

from dataclasses import dataclass


class WatcherError(Exception):
    """Base of every error the watcher raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One located validation problem: ``FILE: path.to.field: reason``."""

    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.reason}"


class ConfigError(WatcherError):
    """Config or rule files are invalid; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class MalformedEventError(WatcherError):
    """An input record is not a CloudTrail record we can read."""


class StoreError(WatcherError):
    """The state store cannot be read or written."""
