"""The one table of event sources: config key (``sources.KEY``) → kind.

Adding a source is a new module with a :class:`~watcher.sources.base.SourceKind` and one line
here; config validation, the daemon, metrics and ``/readyz`` take it from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcher.sources import lookup, sqs
from watcher.sources.base import SourceKind

SOURCE_KINDS: Mapping[str, SourceKind[Any]] = {
    "eventbridge": sqs.KIND,
    "lookup": lookup.KIND,
}
