"""Durations as people write them in config and rule files: ``90s``, ``30m``, ``1h30m``, ``1w``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}
_ORDER = "wdhms"
_SHAPE = re.compile(r"(?:\d+[wdhms])+")
_PART = re.compile(r"(\d+)([wdhms])")


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """Parse ``1h30m``-style text: whole numbers with units w, d, h, m, s, largest unit first.

    Raises ValueError with a reason a person can act on.
    """
    if text == "":
        raise ValueError("is empty; write a duration like 4h or 30m")
    if text.startswith("-"):
        raise ValueError(f"{text!r} is negative; a duration like 4h or 30m counts forward")
    if not _SHAPE.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration like 4h or 30m")
    units = [unit for _, unit in _PART.findall(text)]
    if units != sorted(set(units), key=_ORDER.index):
        raise ValueError(
            f"{text!r}: write each unit once, largest first (w, d, h, m, s), like 1h30m"
        )
    try:
        total = sum((int(n) * _UNITS[unit] for n, unit in _PART.findall(text)), timedelta())
    except OverflowError:
        raise ValueError(f"{text!r} is too long") from None
    if not total and not allow_zero:
        raise ValueError(f"{text!r} is zero; it must be longer than that")
    return total


def format_duration(td: timedelta) -> str:
    """The shortest ``parse_duration`` text for ``td`` (days at most; ``0s`` for zero).

    Sub-second parts are shown as a decimal fraction of seconds (``1.5s``).
    """
    if td < timedelta(0):
        return "-" + format_duration(-td)
    seconds, micros = divmod(td // timedelta(microseconds=1), 1_000_000)
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hrs, "h"), (mins, "m")) if n]
    if micros:
        parts.append(f"{secs}.{micros:06d}".rstrip("0") + "s")
    elif secs or not parts:
        parts.append(f"{secs}s")
    return "".join(parts)
