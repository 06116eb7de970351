"""One file's worth of ``replay``: its bytes in, the break-glass uses and counts out.

The per-file engine behind ``replay``'s parallel and archive paths, built on today's parse
(``events.iter_stream``, every record parsed) and ``Classifier``. Issue 16's prefilter engine
replaces this module with the same shape: ``classify_file(name, data, engine) -> FileResult``;
everything the rest of ``replay`` knows of the engine and of a use is in this module.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from watcher.classify import Classifier
from watcher.events import Malformed, Skipped, iter_stream
from watcher.model import Rules, Verdict
from watcher.trail_layout import Selection

Use = Verdict


class ReplayEngine:
    """The rules prepared once per process."""

    def __init__(self, rules: Rules) -> None:
        self.classifier = Classifier(rules)


@dataclass
class FileResult:
    """What one file held: its break-glass uses in file order, records read and parsed, located
    malformed records, skipped items (Insights, digests), and why it could not be read."""

    name: str
    uses: list[Use] = field(default_factory=list)
    records_read: int = 0
    records_parsed: int = 0
    malformed: list[Malformed] = field(default_factory=list)
    skipped: int = 0
    error: str | None = None


def classify_file(name: str, data: bytes, engine: ReplayEngine) -> FileResult:
    """Every record of ``data`` (a file as stored: gzip by content, or plain), as
    ``events.iter_file`` reads a file; a file that cannot be read to its end keeps the records
    read before and says why in ``error``."""
    result = FileResult(name)
    classify = engine.classifier.classify
    # iter_stream only formats its ``path`` into locations: an s3:// name must stay whole,
    # which a Path would not keep ("s3:/b/k").
    where = cast(Path, name)
    try:
        with _unzipped(data) as stream:
            for item in iter_stream(stream, where):
                result.records_read += 1
                result.records_parsed += 1
                if isinstance(item, Malformed):
                    result.malformed.append(item)
                elif isinstance(item, Skipped):
                    result.skipped += 1
                elif (verdict := classify(item)) is not None:
                    result.uses.append(verdict)
    except (OSError, EOFError, zlib.error) as exc:
        result.error = f"{name}: cannot read: {exc}"
    return result


def _unzipped(data: bytes) -> io.BufferedIOBase:
    raw = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def unreadable(name: str, error: str) -> FileResult:
    """The result of a file that could not be read at all."""
    return FileResult(name, error=error)


def selected(use: Use, selection: Selection) -> bool:
    """Whether a use is in the ``--since/--until/--accounts/--regions`` selection."""
    event = use.event
    return selection.keeps(event.event_time, event.account, event.region)
