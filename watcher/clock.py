"""The clock and how the watcher writes times: aware UTC datetimes, ISO 8601 text ending in ``Z``
(the form of CloudTrail's ``eventTime``, the store's JSON, replay output and exercise records)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, as an aware UTC datetime: the default :data:`Clock`."""
    return datetime.now(UTC)


def iso_z(t: datetime, *, timespec: Literal["auto", "seconds"] = "auto") -> str:
    """``t`` in UTC as ``2026-10-01T12:05:00Z``.

    Fractional seconds appear only when ``t`` has some; ``timespec="seconds"`` drops them, as
    CloudTrail writes ``eventTime``. A naive ``t`` is a ValueError: its zone would be a guess.
    """
    if t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()}: pass a timezone-aware one")
    return t.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
