"""Persistent state: the :class:`Store` interface and its SQLite implementation."""

from watcher.store.base import CommitResult, Store, Totals, WindowHistory
from watcher.store.sqlite import SqliteStore

__all__ = ["CommitResult", "SqliteStore", "Store", "Totals", "WindowHistory"]
