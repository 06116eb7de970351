"""The yardsticks of ``bench/replay.py``: read every ``.json.gz`` below a folder and do only
this much with each file, as a whole process of its own.

    .venv/bin/python bench/replay_baselines.py {zlib,isal,sized,json,orjson} FOLDER

``zlib``/``isal``: gunzip alone (``gzip.decompress``, ``igzip.decompress``); ``sized``: replay's
own gunzip (isal, one buffer sized by the gzip trailer: the floor of replay); ``json``/``orjson``:
gunzip (zlib) and parse the document.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Callable
from pathlib import Path

import orjson
from isal import igzip

from watcher.gunzip import GUNZIP

MODES: dict[str, Callable[[bytes], object]] = {
    "zlib": gzip.decompress,
    "isal": igzip.decompress,
    "sized": GUNZIP,
    "json": lambda data: json.loads(gzip.decompress(data)),
    "orjson": lambda data: orjson.loads(gzip.decompress(data)),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    work = MODES[args.mode]
    for path in sorted(args.folder.rglob("*.json.gz")):
        work(path.read_bytes())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
