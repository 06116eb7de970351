"""The one table of state store backends: config key (``store.KEY``) → kind.

Adding a backend is a new module with a :class:`~watcher.store.base.StoreKind` and one line here;
config validation, the daemon and ``audit`` take it from there. ``state: FILE`` alone (or no
``store:``) is SQLite in that file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcher.settings import Config
from watcher.store import dynamodb, sqlite
from watcher.store.base import Store, StoreKind

STORE_KINDS: Mapping[str, StoreKind[Any]] = {
    "sqlite": sqlite.KIND,
    "dynamodb": dynamodb.KIND,
}


def build_store(config: Config, *, read_only: bool = False) -> Store:
    """The store ``config`` selects (not yet open)."""
    kind = STORE_KINDS[config.store.kind]
    return kind.build(config.store.settings, config, read_only)
