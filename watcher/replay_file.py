"""``replay``'s work on one file: decompress once, prefilter, parse only the candidate records
(docs/design.md "Replay prefilter").

``classify_file(name, data, engine)`` takes a file's bytes as stored and returns a
``FileResult``: the break-glass uses found (``Use``, only what output, de-duplication and the
summary need), counts and located warnings. A CloudTrail log file (``{"Records":[...]}`` on one
line) takes the fast path: one hyperscan scan for the prefilter's needles, each match mapped to
the record around it by the record starts before and after it, only those records parsed. Any
file that does not fit (another shape, JSON lines, a pretty-printed document, a candidate that
does not parse as one record object) is read in full as ``events.iter_data`` reads it, so the
uses found never differ; ``strict`` reads every file in full. No I/O here: the caller reads.
"""

from __future__ import annotations

import gc
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from watcher.classify import Classifier
from watcher.clock import iso_z
from watcher.errors import MalformedEventError
from watcher.events import (
    GZIP_MAGIC,
    FileReadError,
    Item,
    Malformed,
    Skipped,
    iter_data,
    iter_stream,
    one_record,
)
from watcher.gunzip import ERRORS as GUNZIP_ERRORS
from watcher.gunzip import GUNZIP, ZLIB_GUNZIP
from watcher.model import Rules, TrailEvent, Verdict
from watcher.prefilter import Prefilter, needles
from watcher.trail_layout import Selection

MAX_FILE_WARNINGS = 20  # located warnings kept per file (the run prints at most as many)
RECORD_START = b'{"eventVersion"'  # how CloudTrail starts every record of a log file
_JSON_SPACE = b" \t\r\n"
NESTED_RECORD_START = b"[" + RECORD_START  # only the list of records opens so (CloudTrail
# writes no space between tokens; a file that does is caught by the check on each use)
_HEAD = re.compile(rb'\{[ \t\r\n]*"Records"[ \t\r\n]*:[ \t\r\n]*\[[ \t\r\n]*')
_TAIL = re.compile(rb"\][ \t\r\n]*\}\Z")


class Use(NamedTuple):
    """One break-glass use, as ``replay`` prints, de-duplicates and sums it up."""

    event_id: str
    event_time: datetime
    principal: str
    classification: str
    exercise: str | None
    outcome: str
    event_name: str
    session_name: str | None
    source_ip: str | None
    account: str
    region: str
    dedup_key: str
    copy_rank: int

    @classmethod
    def of(cls, verdict: Verdict) -> Use:
        event = verdict.event
        return cls(
            event.event_id,
            event.event_time,
            verdict.principal,
            verdict.classification,
            verdict.exercise,
            verdict.outcome,
            event.event_name,
            event.session_name,
            event.source_ip,
            event.account,
            event.region,
            event.dedup_key,
            verdict.copy_rank,
        )

    def line(self) -> dict[str, Any]:
        """The JSON object ``replay`` prints for this use."""
        return {
            "event_id": self.event_id,
            "event_time": iso_z(self.event_time),
            "principal": self.principal,
            "classification": self.classification,
            "exercise": self.exercise,
            "outcome": self.outcome,
            "event_name": self.event_name,
            "session_name": self.session_name,
            "source_ip": self.source_ip,
            "account": self.account,
            "region": self.region,
            "dedup_key": self.dedup_key,
        }


@dataclass
class FileResult:
    """What one file contributed: uses in file order, counts, the first located warnings, and
    why the file could not be read to its end (``error``; uses before that point stay)."""

    name: str
    uses: list[Use] = field(default_factory=list)
    records_read: int = 0
    records_parsed: int = 0
    malformed: int = 0
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    error: str | None = None
    prefiltered: bool = False


class ReplayEngine:
    """The rules prepared once per process: classifier and prefilter. Pickles as its rules (a
    worker process rebuilds it; hyperscan databases do not pickle)."""

    def __init__(
        self, rules: Rules, *, strict: bool = False, gunzip: Callable[[bytes], bytes] = GUNZIP
    ) -> None:
        self.rules = rules
        self.strict = strict
        self.gunzip = gunzip
        self.classifier = Classifier(rules)
        found = needles(rules)
        self.prefilter = (
            Prefilter(found, alarms=[NESTED_RECORD_START])
            if found is not None and not strict
            else None
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.rules, self.strict, self.gunzip is ZLIB_GUNZIP))


def _rebuild(rules: Rules, strict: bool, use_zlib: bool) -> ReplayEngine:
    return ReplayEngine(rules, strict=strict, gunzip=ZLIB_GUNZIP if use_zlib else GUNZIP)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No garbage collection while a whole document's objects are built: they hold no cycles,
    and the collector would walk them again and again as they are allocated."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _add(result: FileResult, item: Item, engine: ReplayEngine) -> None:
    if isinstance(item, Malformed):
        result.malformed += 1
        if len(result.warnings) < MAX_FILE_WARNINGS:
            result.warnings.append(str(item))
        return
    if isinstance(item, Skipped):
        result.skipped += 1
        return
    try:
        verdict = engine.classifier.classify(item)
    except MalformedEventError as exc:
        _add(result, Malformed(f"{result.name}: eventID {item.event_id}", str(exc)), engine)
        return
    if verdict is not None:
        result.uses.append(Use.of(verdict))


def _full(result: FileResult, items: Iterator[Item], engine: ReplayEngine) -> FileResult:
    """Every record of the file, parsed and classified (today's reading, exactly)."""
    try:
        with _gc_paused():
            for item in items:
                result.records_read += 1
                result.records_parsed += 1
                _add(result, item, engine)
    except FileReadError as exc:
        result.error = str(exc)
    return result


class _NotFast(Exception):
    """The file does not fit the fast path: read it in full."""


def _record(text: bytes, start: int, end: int) -> tuple[dict[str, Any], int]:
    """The record whose text starts at ``start`` and runs to the next record start (or to
    ``end``, the list's closing bracket), parsed; and where it ends."""
    record_end = text.find(RECORD_START, start + 1, end)
    piece = text[start : end if record_end < 0 else record_end].rstrip(_JSON_SPACE)
    if record_end >= 0:
        if not piece.endswith(b","):
            raise _NotFast
        piece = piece[:-1]
    try:
        record = orjson.loads(piece)
    except orjson.JSONDecodeError:
        raise _NotFast from None
    if type(record) is not dict:
        raise _NotFast
    return record, end if record_end < 0 else record_end


def _fast(result: FileResult, text: bytes, prefilter: Prefilter, engine: ReplayEngine) -> None:
    """Parse only the records around the prefilter's matches; raise ``_NotFast`` at the first
    sign that the file is not a one-line CloudTrail log file whose records can be cut apart."""
    stop = len(text.rstrip(_JSON_SPACE))
    begin = len(text) - len(text.lstrip(_JSON_SPACE))
    if text.find(b"\n", begin, stop) >= 0:  # JSON lines, or a pretty-printed document
        raise _NotFast
    head = _HEAD.match(text, begin)
    tail = _TAIL.search(text, max(begin, stop - 64), stop)
    if head is None or tail is None:
        raise _NotFast
    first, end = head.end(), tail.start()  # the list's first element; its closing "]"
    matches, nested = prefilter.scan(text)
    if matches and any(at != first + len(RECORD_START) for at in nested):
        raise _NotFast  # a record start opening a list inside a record
    result.records_read = text.count(RECORD_START, first, end)
    candidates: list[tuple[int, dict[str, Any]]] = []
    record_end = -1
    for match_end in matches:
        at = match_end - 1  # the match's last byte: inside the record holding the match
        if at < first or at >= end or at < record_end:
            continue  # in the document's head or tail, or in the record just parsed
        start = text.rfind(RECORD_START, first, at + len(RECORD_START))
        if start < 0:
            raise _NotFast
        record, record_end = _record(text, start, end)
        candidates.append((start, record))
    result.records_parsed = len(candidates)
    line = text.count(b"\n", 0, begin) + 1
    with _gc_paused():
        for start, record in candidates:
            item = one_record(record, "")
            if not isinstance(item, TrailEvent):  # locate it as the full reading would
                index = text.count(RECORD_START, first, start)
                item = type(item)(f"{result.name}:{line}: Records[{index}]", item.reason)
            found = len(result.uses)
            _add(result, item, engine)
            if len(result.uses) > found and start != first:
                # A use: its record must follow a record, not an object of a list in one.
                previous = text.rfind(RECORD_START, first, start)
                if previous < 0:
                    raise _NotFast
                _record(text, previous, end)


def classify_file(name: str, data: bytes, engine: ReplayEngine) -> FileResult:
    """The break-glass uses in one file's bytes ``data`` (gzip or plain, by content)."""
    result = FileResult(name)
    if data[:2] == GZIP_MAGIC:
        try:
            text = engine.gunzip(data)
        except GUNZIP_ERRORS:  # corrupt or truncated: the streaming reader says where,
            # and keeps what it read before the damage
            return _full(result, iter_data(data, name), engine)
    else:
        text = data
    if engine.prefilter is not None and not text.startswith(b"\xef\xbb\xbf"):
        try:
            _fast(result, text, engine.prefilter, engine)
            result.prefiltered = True
            return result
        except _NotFast:
            result = FileResult(name)
    return _full(result, iter_stream(io.BytesIO(text), name), engine)


def unreadable(name: str, error: str) -> FileResult:
    """The result of a file that could not be read at all."""
    return FileResult(name, error=error)


def selected(use: Use, selection: Selection) -> bool:
    """Whether a use is in the ``--since/--until/--accounts/--regions`` selection."""
    return selection.keeps(use.event_time, use.account, use.region)
