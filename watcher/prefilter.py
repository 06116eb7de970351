"""The replay prefilter: byte strings without which a record cannot be a break-glass use
(docs/design.md "Replay prefilter").

``needles(rules)`` derives them from what ``identify.py`` reads; ``Prefilter`` scans a buffer for
all of them at once (hyperscan, ASCII-caseless, as identification compares IAM names) and
returns where they occur. A record that contains none of them is never identified, so
``replay`` need not parse it.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence

import hyperscan

from watcher.model import Principal, Rules

# A name may be spelled with JSON escapes (``\u0041`` for ``A``; ``\/`` for ``/``): a record
# holding one is always a candidate.
ESCAPE_NEEDLES = (b"\\u", b"\\/")
# Characters outside ASCII whose ``str.lower()`` holds an ASCII letter (KELVIN SIGN -> "k",
# LATIN CAPITAL LETTER I WITH DOT ABOVE -> "i" + a combining dot): identification lower-cases
# names, so such a character can stand for a letter of a name. Computed over all of Unicode:
# ``[c for c in map(chr, range(128, 0x110000)) if any(ord(x) < 128 for x in c.lower())]``.
LOWER_TO_ASCII = ("\u0130", "\u212a")
# Root principals: the acting identity type (``"type": "Root"``), and ``AssumeRoot`` whose
# ``targetPrincipal`` names the root of another account (its caller is someone else).
ROOT_NEEDLES = (b'"Root"', b'"AssumeRoot"')
# Insights records are counted as skipped (``events._skip_reason``); they live in files of their
# own, so parsing them costs nothing in a log-file archive.
SKIP_NEEDLES = (b'"AwsCloudTrailInsight"', b'"Insight"')
_GLOB_SPECIAL = re.compile(r"\[[^\]]*\]|[*?]")


def glob_literal(pattern: str) -> str:
    """The longest run of literal characters in an ``fnmatch`` glob ("" when there is none).

    Every name the glob matches contains that run (``[...]`` sets, ``*`` and ``?`` stand for
    characters not known in advance; an unclosed ``[`` is literal, as in ``fnmatch``).
    """
    return max(_GLOB_SPECIAL.split(pattern), key=len)


def _principal_needles(principal: Principal) -> list[bytes] | None:
    """None: the principal can be named without any fixed text (a glob like ``*``)."""
    if principal.kind == "root":
        return list(ROOT_NEEDLES)
    found = [name.encode() for name in principal.iam_names]
    if principal.name_pattern is not None:
        literal = glob_literal(principal.name_pattern)
        if not literal:
            return None
        found.append(literal.encode())
    return found


def needles(rules: Rules) -> list[bytes] | None:
    """The byte strings (matched ASCII-caseless) one of which every break-glass record of
    ``rules`` contains; None when no such set exists (a name glob without literal text): then
    every record is a candidate. A needle that contains another is left out: where it occurs,
    the other does."""
    found: set[bytes] = {*ESCAPE_NEEDLES, *SKIP_NEEDLES}
    found.update(c.encode() for c in LOWER_TO_ASCII)
    for principal in rules.principals:
        own = _principal_needles(principal)
        if own is None:
            return None
        found.update(n.lower() for n in own)
    return _minimal(found)


def _minimal(found: set[bytes]) -> list[bytes]:
    """``found`` without the needles that contain another one (one ``find`` pass per needle
    over all of them joined, not one comparison per pair)."""
    ordered = sorted(found)
    joined = b"\0".join(ordered)
    starts = list(itertools.accumulate((len(n) + 1 for n in ordered[:-1]), initial=0))
    redundant: set[int] = set()
    for index, needle in enumerate(ordered):
        at = joined.find(needle)
        while at >= 0:
            holder = bisect.bisect_right(starts, at) - 1
            if holder != index:
                redundant.add(holder)
            at = joined.find(needle, at + 1)
    return [n for i, n in enumerate(ordered) if i not in redundant]


class Prefilter:
    """Hyperscan databases of ``needles`` (literals, ASCII-caseless) and ``alarms`` (literals,
    exact): ``scan(data)`` says where each kind of match ends. Needles that are not ASCII are
    looked for only in data that is not all ASCII (checking that is ten times cheaper than
    looking)."""

    def __init__(self, patterns: Sequence[bytes], alarms: Sequence[bytes] = ()) -> None:
        self.patterns = tuple(patterns)
        self._alarms = tuple(alarms)
        self._ascii = self._compile([p for p in self.patterns if p.isascii()], alarms)
        self._any: tuple[hyperscan.Database, int] | None = None  # compiled when first needed

    @staticmethod
    def _compile(
        patterns: Sequence[bytes], alarms: Sequence[bytes]
    ) -> tuple[hyperscan.Database, int]:
        expressions = [re.escape(p) for p in (*patterns, *alarms)]
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(
            expressions=expressions,
            ids=list(range(len(expressions))),
            elements=len(expressions),
            flags=[hyperscan.HS_FLAG_CASELESS] * len(patterns) + [0] * len(alarms),
        )
        return db, len(patterns)

    def scan(self, data: bytes) -> tuple[list[int], list[int]]:
        """The end offsets of every needle occurrence and of every alarm in ``data``, ascending."""
        if data.isascii():
            db, first_alarm = self._ascii
        else:
            if self._any is None:
                self._any = self._compile(self.patterns, self._alarms)
            db, first_alarm = self._any
        ends: list[int] = []
        alarms: list[int] = []

        def on_match(index: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            (alarms if index >= first_alarm else ends).append(end)

        db.scan(data, match_event_handler=on_match)
        ends.sort()  # hyperscan reports in end order already, but does not promise it
        return ends, alarms
