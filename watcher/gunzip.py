"""Gunzip a whole file into one buffer: isal's inflate where installed, zlib's otherwise.

gzip's trailer ends with the size (mod 2**32) of the last member's data. For the usual
one-member file that is the output's size, so the output is allocated once at that size
(plus one byte, to see the end) instead of grown step by step: growing touches fresh pages
for every file, and the page faults cost more system time than the inflating itself. Files
with several members, bytes after the member or a wrong size go to the library's own
whole-file reader, which reads or refuses them exactly as ``gzip`` does.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from typing import Protocol

_GZIP = 16 + zlib.MAX_WBITS  # wbits: a gzip header and trailer
_TRAILER = 18  # the smallest gzip member: 10-byte header, empty deflate, 8-byte trailer


class _Inflater(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def _sized(
    inflater: Callable[[], _Inflater], whole: Callable[[bytes], bytes]
) -> Callable[[bytes], bytes]:
    def gunzip(data: bytes) -> bytes:
        size = int.from_bytes(data[-4:], "little") + 1 if len(data) >= _TRAILER else 0
        one = inflater()
        out = one.decompress(data, size)
        if one.eof and not one.unused_data:
            return out
        return whole(data)

    return gunzip


ZLIB_GUNZIP = _sized(lambda: zlib.decompressobj(_GZIP), gzip.decompress)
ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error)
try:
    from isal import igzip, isal_zlib

    GUNZIP = _sized(lambda: isal_zlib.decompressobj(_GZIP), igzip.decompress)
    ERRORS += (isal_zlib.error,)  # type: ignore[operator]  # its stub calls it an instance
except ImportError:  # isal has no wheel for this platform
    GUNZIP = ZLIB_GUNZIP
