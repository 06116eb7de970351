"""``replay``'s progress bar (stderr on a terminal only) and its final summary line (always).

The bar counts megabytes read against the megabytes listed so far, with files and records
beside it. For its ETA the listing runs ahead of the reading (up to ``LOOKAHEAD`` files), so the
total is the archive's as soon as the listing is done, and grows until then.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Never, TextIO

from tqdm import tqdm

from watcher.archive import Object
from watcher.replay_pool import FileDone

LOOKAHEAD = 100_000
_LIST_STEP = 64  # files listed ahead per file handed on


@dataclass
class Totals:
    files: int = 0
    records_read: int = 0
    records_parsed: int = 0
    megabytes: float = 0.0

    def add(self, done: FileDone) -> None:
        self.files += 1
        self.records_read += done.result.records_read
        self.records_parsed += done.result.records_parsed
        self.megabytes += done.size / 1e6


class Progress:
    """A tqdm bar on ``err`` when it is a terminal; nothing otherwise."""

    def __init__(self, err: TextIO) -> None:
        isatty = getattr(err, "isatty", None)
        self._bar: tqdm[Never] | None = None
        if isatty is not None and isatty():
            self._bar = tqdm(
                total=0,
                unit="B",
                unit_scale=True,
                unit_divisor=1000,
                file=err,
                desc="replay",
                dynamic_ncols=True,
            )

    def objects(self, objects: Iterable[Object]) -> Iterator[Object]:
        """``objects`` unchanged; with a bar, listed ahead so its total (and ETA) is known."""
        if self._bar is None:
            yield from objects
            return
        bar = self._bar
        listed = iter(objects)
        ahead: deque[Object] = deque()
        exhausted = False
        while True:
            if not exhausted and len(ahead) < LOOKAHEAD:
                for _ in range(_LIST_STEP):
                    obj = next(listed, None)
                    if obj is None:
                        exhausted = True
                        break
                    ahead.append(obj)
                    bar.total = (bar.total or 0) + obj.size
                bar.refresh()
            if not ahead:
                return
            yield ahead.popleft()

    def update(self, done: FileDone, totals: Totals) -> None:
        if self._bar is not None:
            self._bar.set_postfix(files=totals.files, records=totals.records_read, refresh=False)
            self._bar.update(done.size)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def summary_line(totals: Totals, uses: int, skipped: int) -> str:
    """The last line on stderr; ``skipped``: objects and folders of a CloudTrail layout that
    hold no log files (digests, Insights, anything else), not read."""
    line = (
        f"replay: {totals.files} files ({totals.megabytes:.1f} MB), "
        f"{totals.records_read} records read, {totals.records_parsed} parsed, {uses} uses found"
    )
    return f"{line}, {skipped} other objects and folders skipped" if skipped else line
