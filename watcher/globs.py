"""Many ``fnmatch`` globs against one name in one scan: which is the first that matches.

A loop over compiled globs costs O(globs) per name, and Python's regex alternation is no
cheaper (it tries the alternatives one by one). One hyperscan database of all of them finds,
in one pass over the name, a superset of the globs that match (each set ``[...]`` and ``?``
widened to "one UTF-8 character", 1 to 4 bytes); those few are confirmed in order with
``fnmatch``'s own regexes, so the answer is exactly the loop's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import translate

import hyperscan

_ANY = rb"[\s\S]"
_ONE_CHARACTER = _ANY + rb"{1,4}"  # one code point, however many bytes UTF-8 gives it


def _class_end(glob: str, i: int) -> int:
    """Where the set ``[...]`` opened at ``i`` closes, read as ``fnmatch`` reads it; -1 when
    it does not close (the ``[`` is then a literal)."""
    j = i + 1
    if j < len(glob) and glob[j] == "!":
        j += 1
    if j < len(glob) and glob[j] == "]":
        j += 1
    return glob.find("]", j)


def widened(glob: str) -> bytes:
    """A hyperscan regex (over UTF-8 bytes) matching every name ``glob`` matches. A leading or
    trailing ``*`` becomes an open end (a smaller automaton, compiled faster)."""
    core = glob.strip("*") or glob
    head = rb"\A" if core == glob or not glob.startswith("*") else b""
    tail = rb"\z" if core == glob or not glob.endswith("*") else b""
    glob = core
    parts = [head]
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            parts.append(_ANY + b"*")
        elif char == "?":
            parts.append(_ONE_CHARACTER)
        elif char == "[" and (end := _class_end(glob, i)) >= 0:
            parts.append(_ONE_CHARACTER)
            i = end
        else:
            parts.append(re.escape(char.encode()))
        i += 1
    parts.append(tail)
    return b"".join(parts)


class GlobSet:
    """``first(name)``: the index of the first glob in ``globs`` that matches ``name`` whole."""

    def __init__(self, globs: Sequence[str]) -> None:
        self._globs = tuple(globs)
        self._exact: dict[int, re.Pattern[str]] = {}  # compiled when first a candidate
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(
            expressions=[widened(glob) for glob in globs],
            ids=list(range(len(globs))),
            elements=len(globs),
            flags=hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_ALLOWEMPTY,
        )

    def first(self, name: str) -> int | None:
        if not name:  # hyperscan reports no match in an empty buffer
            candidates: Sequence[int] = range(len(self._globs))
        else:
            hits: list[int] = []

            def on_match(index: int, _start: int, _end: int, _flags: int, _ctx: object) -> None:
                hits.append(index)

            self._db.scan(name.encode("utf-8", "surrogatepass"), match_event_handler=on_match)
            candidates = sorted(hits)
        return next((i for i in candidates if self._confirm(i, name)), None)

    def _confirm(self, index: int, name: str) -> bool:
        exact = self._exact.get(index)
        if exact is None:
            exact = self._exact[index] = re.compile(translate(self._globs[index]))
        return exact.match(name) is not None
