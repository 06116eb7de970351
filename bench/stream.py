"""The stream of ``pipeline.py`` and ``footprint.py``: EventBridge envelopes as JSON lines.

The records are ``watcher.emulator.archive``'s (about 1 % break-glass: assumptions of the
break-glass role, its sessions' calls, console sign-ins; 5 % of those twice), each in the
envelope the SQS source receives, times cycling through 10:00-18:00 UTC on the drill day of
``rules/break-glass.yaml`` (the window is 12:00-16:00).
"""

from __future__ import annotations

import json
import random
from datetime import timedelta

from watcher.emulator.archive import (
    ACCOUNT,
    T0,
    break_glass_record,
    noise_record,
    stamp,
)
from watcher.emulator.records import eventbridge_envelope

__all__ = ["ACCOUNT", "chunk", "templates"]


def templates(rng: random.Random) -> tuple[list[str], list[str]]:
    """Serialised envelopes (id and time to be stamped): noise and break-glass."""

    def text(record: dict[str, object]) -> str:
        return json.dumps(eventbridge_envelope(record), separators=(",", ":"))

    accounts = (ACCOUNT, "210987654321", "345678901234")
    noise = [text(noise_record(rng, rng.choice(accounts), "us-east-1")) for _ in range(400)]
    return noise, [text(break_glass_record(rng, "us-east-1")) for _ in range(40)]


def chunk(
    rng: random.Random, noise: list[str], bg: list[str], start: int, size: int
) -> tuple[bytes, int, int]:
    """``size`` records from number ``start``, one a line: about 1% break-glass, 5% of those
    twice. Returns the lines, the break-glass records and the lines written."""
    lines = []
    bg_count = 0
    for n in range(start, start + size):
        is_bg = rng.random() < 0.01
        template = rng.choice(bg) if is_bg else rng.choice(noise)
        bg_count += is_bg
        line = stamp(template, n, T0 + timedelta(seconds=n * 7 % 28_800))
        lines.append(line)
        if is_bg and rng.random() < 0.05:
            lines.append(line)
    return "\n".join(lines).encode(), bg_count, len(lines)
