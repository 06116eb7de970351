"""Replay throughput over a CloudTrail archive, whole processes side by side.

Generates ``--count`` real-shaped records (``watcher.emulator.archive``: CloudTrail's key layout,
one minified ``.json.gz`` log file per account, region and five minutes, about 0.5 % break-glass)
into a temporary folder, then times, as whole processes run in turn (A B C ... A B C ...),
``--runs`` times each, min/median/max of wall seconds:

- ``replay`` (the prefilter, ``--jobs 1``: one core), ``replay --strict`` (every record
  parsed) and ``replay --jobs 2``,
- ``gunzip`` alone with zlib, with isal, and as replay does it (isal into one buffer sized by
  the gzip trailer: the floor of replay), ``gunzip + json.loads``, ``gunzip + orjson.loads`` of
  the same files (``bench/replay_baselines.py``),
- ``replay`` with 1, 10, 100 and 1 000 declared principals (half IAM names, half name
  patterns; the two of the archive among them).

Ratios are of medians against ``gunzip + json.loads``. Goal: ``replay`` >= 4x. The output of
``replay`` and ``replay --strict`` is compared: it must be identical.

    .venv/bin/python bench/replay.py                 # 1,000,000 records, 3 runs
    .venv/bin/python bench/replay.py --count 20000 --runs 1 --principals 1 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from watcher.emulator.archive import ACCOUNT, BREAK_GLASS_ROLE, BREAK_GLASS_USER, write_archive

BENCH = Path(__file__).resolve().parent
BASELINE = "gunzip + json.loads"
GOAL = 4.0


def rules_text(principals: int) -> str:
    """A rule file declaring ``principals`` principals: the archive's user and role, then
    others by role name and by name pattern, alternately."""
    lines = [
        "principals:",
        f"  - {{name: bg-user, match: {{user_name: {BREAK_GLASS_USER}}}, account: '{ACCOUNT}'}}",
    ]
    if principals > 1:
        lines.append(
            f"  - {{name: bg-role, match: {{role_name: {BREAK_GLASS_ROLE}}}, account: '{ACCOUNT}'}}"
        )
    for n in range(2, principals):
        match = f"role_name: bg-extra-{n}" if n % 2 else f"name_pattern: 'bg-team-{n}-*'"
        kind = "" if n % 2 else ", kind: role"
        lines.append(f"  - {{name: extra-{n}, match: {{{match}}}, account: '{ACCOUNT}'{kind}}}")
    return "\n".join(lines) + "\nexercises: []\n"


def timed(commands: dict[str, list[str]], runs: int, out: Path) -> dict[str, list[float]]:
    """Wall seconds of each command, ``runs`` times, in turn; stdout kept per command."""
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            with (out / f"{len(seconds[name])}-{name}.out").open("wb") as sink:
                start = time.perf_counter()
                subprocess.run(command, stdout=sink, stderr=subprocess.DEVNULL, check=True)
                seconds[name].append(time.perf_counter() - start)
    return seconds


def report(seconds: dict[str, list[float]], records: int) -> None:
    base = statistics.median(seconds[BASELINE]) if BASELINE in seconds else None
    header = ("command", "min s", "median s", "max s", "records/s", "vs json")
    print("{:<34} {:>7} {:>9} {:>7} {:>11} {:>8}".format(*header))
    for name, values in seconds.items():
        median = statistics.median(values)
        ratio = f"{base / median:.2f}x" if base else "-"
        print(
            f"{name:<34} {min(values):>7.2f} {median:>9.2f} {max(values):>7.2f} "
            f"{records / median:>11,.0f} {ratio:>8}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="records (default 1e6)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--principals", type=int, nargs="*", default=[1, 10, 100, 1000])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as temp:
        root = Path(temp)
        archive = write_archive(root / "archive", args.count, seed=args.seed)
        folder = str(root / "archive")
        print(
            f"archive: {archive.files:,} files, {archive.records:,} records "
            f"({archive.break_glass:,} break-glass), {archive.raw_bytes / 1e6:,.0f} MB "
            f"({archive.stored_bytes / 1e6:,.0f} MB gzipped); load average "
            f"{os.getloadavg()[0]:.2f}"
        )
        rules = {}
        for count in sorted({2, *args.principals}):
            rules[count] = root / f"rules-{count}.yaml"
            rules[count].write_text(rules_text(count))
        replay = [python, "-m", "watcher", "replay", "--jobs", "1", "--rules"]
        baseline = [python, str(BENCH / "replay_baselines.py")]
        commands = {
            "replay": [*replay, str(rules[2]), folder],
            "replay --strict": [*replay, str(rules[2]), "--strict", folder],
            "replay --jobs 2": [*replay, str(rules[2]), "--jobs", "2", folder],
            "gunzip (zlib)": [*baseline, "zlib", folder],
            "gunzip (isal)": [*baseline, "isal", folder],
            "gunzip (isal, sized: replay's)": [*baseline, "sized", folder],
            BASELINE: [*baseline, "json", folder],
            "gunzip + orjson.loads": [*baseline, "orjson", folder],
        }
        commands |= {
            f"replay, {n} principals": [*replay, str(rules[n]), folder] for n in args.principals
        }
        seconds = timed(commands, args.runs, root)
        report(seconds, archive.records)
        same = (root / "0-replay.out").read_bytes() == (root / "0-replay --strict.out").read_bytes()
        uses = len((root / "0-replay.out").read_bytes().splitlines())
        print(f"uses printed: {uses:,}; replay and replay --strict print the same: {same}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        ratio = statistics.median(seconds[BASELINE]) / statistics.median(seconds["replay"])
        verdict = "meets" if ratio >= GOAL else "MISSES"
        print(f"replay runs at {ratio:.2f}x gunzip + json.loads ({verdict} the goal {GOAL}x)")
        return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
