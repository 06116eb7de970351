"""CloudTrail's S3 key layout, and which folders of it ``replay``'s selection can need.

A trail writes ``[PREFIX/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/
ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_RANDOM.json.gz`` (the ``o-ORGID`` level only for an
organization trail; both layouts can share a bucket). Beside ``CloudTrail/`` lie
``CloudTrail-Digest/`` and ``CloudTrail-Insight/``: no management events, never read.

The day folder is the day the file was *delivered*, up to ~15 minutes (sometimes much more) after
its events: an event at 23:58 lies in the next day's folder. So a selection keeps the day folders
from one day before ``since`` to one day after ``until``, and the records themselves are then
kept by their exact ``eventTime`` (:meth:`Selection.keeps`).

Pure: the walk itself (listing folders on disk or in S3) is ``archive.py``'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum

#: How far from ``since``/``until`` a day folder may hold a record of the range (delivery lag).
DELIVERY_MARGIN = timedelta(days=1)
LOG_SUFFIXES = (".json", ".json.gz")

_ACCOUNT = re.compile(r"\d{12}")
_ORG = re.compile(r"o-[a-z0-9]{10,32}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_YEAR = re.compile(r"\d{4}")
_TWO_DIGITS = re.compile(r"\d{2}")


class Level(Enum):
    """What a folder of the layout holds."""

    ROOT = "a bucket or a trail's key prefix (holds AWSLogs)"
    LOGS = "AWSLogs (organization ids and accounts)"
    ORG = "an organization (accounts)"
    ACCOUNT = "an account (CloudTrail, CloudTrail-Digest, CloudTrail-Insight)"
    TRAIL = "CloudTrail (regions)"
    REGION = "a region (years)"
    YEAR = "a year (months)"
    MONTH = "a month (days)"
    DAY = "a day (log files)"


@dataclass(frozen=True, slots=True)
class Selection:
    """What ``replay`` was asked for: ``since`` inclusive, ``until`` exclusive (UTC), accounts
    and regions (None: all)."""

    since: datetime | None = None
    until: datetime | None = None
    accounts: frozenset[str] | None = None
    regions: frozenset[str] | None = None

    def keeps(self, event_time: datetime, account: str, region: str) -> bool:
        """Whether a record of this time, account and region is in the selection."""
        return (
            (self.since is None or event_time >= self.since)
            and (self.until is None or event_time < self.until)
            and (self.accounts is None or account in self.accounts)
            and (self.regions is None or region in self.regions)
        )

    def first_day(self) -> date | None:
        """The earliest day folder that can hold a selected record."""
        return None if self.since is None else (self.since - DELIVERY_MARGIN).date()

    def last_day(self) -> date | None:
        """The latest day folder that can hold a selected record (``until`` is exclusive)."""
        if self.until is None:
            return None
        return (self.until - timedelta(microseconds=1) + DELIVERY_MARGIN).date()


@dataclass(frozen=True, slots=True)
class Folder:
    """A folder of the layout: its level and what its path says (account, region, date)."""

    level: Level
    account: str | None = None
    region: str | None = None
    year: int | None = None
    month: int | None = None

    def child(self, name: str) -> Folder | None:
        """The subfolder ``name``, or None when it is no part of the layout that holds log
        files (``CloudTrail-Digest``, ``CloudTrail-Insight``, anything else)."""
        level = self.level
        if level is Level.ROOT:
            return Folder(Level.LOGS) if name == "AWSLogs" else None
        if level in (Level.LOGS, Level.ORG) and _ACCOUNT.fullmatch(name):
            return Folder(Level.ACCOUNT, account=name)
        if level is Level.LOGS and _ORG.fullmatch(name):
            return Folder(Level.ORG)
        if level is Level.ACCOUNT:
            return replace(self, level=Level.TRAIL) if name == "CloudTrail" else None
        if level is Level.TRAIL and _REGION.fullmatch(name):
            return replace(self, level=Level.REGION, region=name)
        if level is Level.REGION and _YEAR.fullmatch(name):
            return replace(self, level=Level.YEAR, year=int(name))
        if level is Level.YEAR and _TWO_DIGITS.fullmatch(name) and 1 <= int(name) <= 12:
            return replace(self, level=Level.MONTH, month=int(name))
        if level is Level.MONTH and self._day(name) is not None:
            return replace(self, level=Level.DAY)
        return None

    def _day(self, name: str) -> date | None:
        if self.year is None or self.month is None or not _TWO_DIGITS.fullmatch(name):
            return None
        try:
            return date(self.year, self.month, int(name))
        except ValueError:
            return None

    def wanted(self, name: str, selection: Selection) -> bool:
        """Whether the subfolder ``name`` (a valid :meth:`child`) can hold a selected record."""
        level = self.level
        if level in (Level.LOGS, Level.ORG) and _ACCOUNT.fullmatch(name):
            return selection.accounts is None or name in selection.accounts
        if level is Level.TRAIL:
            return selection.regions is None or name in selection.regions
        first, last = selection.first_day(), selection.last_day()
        if level is Level.REGION:
            span = (date(int(name), 1, 1), date(int(name), 12, 31))
        elif level is Level.YEAR:
            assert self.year is not None
            start = date(self.year, int(name), 1)
            span = (start, (start + timedelta(days=31)).replace(day=1) - timedelta(days=1))
        elif level is Level.MONTH:
            day = self._day(name)
            assert day is not None
            span = (day, day)
        else:
            return True
        return (first is None or span[1] >= first) and (last is None or span[0] <= last)

    def fixed_children(self, selection: Selection) -> list[str] | None:
        """The subfolders to visit without listing this folder, when the selection names them
        all (None: list it)."""
        if self.level is Level.ROOT:
            return ["AWSLogs"]
        if self.level is Level.ORG and selection.accounts is not None:
            return sorted(selection.accounts)
        if self.level is Level.TRAIL and selection.regions is not None:
            return sorted(selection.regions)
        return None


def locate(parts: Iterable[str]) -> Folder | None:
    """The folder a path inside the layout names (its components from the bucket root or any
    folder above ``AWSLogs``); a path with no ``AWSLogs`` is a ROOT (a bucket or a trail's key
    prefix). None: a path into the layout that holds no log files (``CloudTrail-Digest/…``)."""
    parts = list(parts)
    if "AWSLogs" not in parts:
        return Folder(Level.ROOT)
    at = len(parts) - 1 - parts[::-1].index("AWSLogs")
    folder: Folder | None = Folder(Level.LOGS)
    for name in parts[at + 1 :]:
        if folder is None or folder.level is Level.DAY:
            return None
        folder = folder.child(name)
    return folder


def is_account(name: str) -> bool:
    return _ACCOUNT.fullmatch(name) is not None


def is_region(name: str) -> bool:
    return _REGION.fullmatch(name) is not None


def is_log_name(name: str) -> bool:
    """Whether an object in a day folder is read: every ``.json``/``.json.gz`` file (CloudTrail
    writes nothing else there; a renamed or re-compressed copy is still read, never missed)."""
    return name.lower().endswith(LOG_SUFFIXES)


def parse_bound(text: str, *, end: bool) -> datetime:
    """``--since``/``--until``: an ISO 8601 date or time (UTC unless it has an offset). A bare
    date as ``--until`` (``end``) means the end of that day: ``--since 2026-11-01 --until
    2026-11-03`` is the three days."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1) if end else day, time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date (2026-11-30) or time (2026-11-30T23:58:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
