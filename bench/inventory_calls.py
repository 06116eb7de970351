"""IAM inventory: AWS calls per run (so per hour, at the default hourly interval) and time of one
run per account, before and after, side by side in the same run; then the RSS of a daemon running
the inventory over and over.

Before is the baseline commit's ``watcher`` package (``--baseline``, default ``main``, unpacked
with ``git archive``), after is this checkout's; each runs as a subprocess
(``breakglass-watcher audit``: one inventory of the account, as the daemon runs it, plus the
offline checks) against the same moto account, with examples' rules/ (one break-glass user with
an access key and a login profile, one role), the default discovery (name patterns and
``breakglass=true``), and N more roles and users that are not break glass. Calls are counted at
moto's request recorder (``watcher/emulator/calls.py``); the time is the command's wall time
(process start included, the same on both sides).

``--rss``: the daemon (both sides) with the inventory every ``--rss-interval`` on the first
account size, RSS read from /proc after each completed run (its
``breakglass_source_last_success_timestamp_seconds{source="iam"}`` moved on).

    .venv/bin/python bench/inventory_calls.py        # 300 and 3 000 roles, 60 users, 3 runs
    .venv/bin/python bench/inventory_calls.py --roles 300 --runs 3 --rss --rss-runs 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from io import BytesIO
from pathlib import Path

import boto3
from emulated import ROOT
from harness import ACCOUNT, ACCOUNT_TRUST, running_daemon, wait_for
from organization import rss_mb

from watcher.emulator.server import Emulator, start_emulator


@contextmanager
def package_of(ref: str) -> Iterator[Path]:
    """A folder holding the ``watcher`` package of git ``ref`` (to put on PYTHONPATH)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "watcher"],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as folder:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        yield Path(folder)


def account(emulator: Emulator, roles: int, users: int) -> None:
    """rules/' break-glass user and role, and ``roles`` + ``users`` ordinary ones, some tagged."""
    emulator.reset()
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=emulator.endpoint_url)
    iam.create_user(UserName="break-glass-admin")
    iam.create_login_profile(UserName="break-glass-admin", Password="Not-used-here-1!")
    iam.create_access_key(UserName="break-glass-admin")
    iam.create_role(RoleName="break-glass-admin-role", AssumeRolePolicyDocument=ACCOUNT_TRUST)
    tags = [{"Key": "team", "Value": "platform"}, {"Key": "cost-centre", "Value": "42"}]
    # One at a time: moto's IAM backend is not safe for concurrent writes.
    for n in range(roles):
        iam.create_role(RoleName=f"app-{n:05}", AssumeRolePolicyDocument=ACCOUNT_TRUST, Tags=tags)
    for n in range(users):
        iam.create_user(UserName=f"person-{n:04}", Tags=tags)


def config(folder: Path, emulator: Emulator, interval: str = "1h") -> Path:
    path = folder / "config.yaml"
    path.write_text(
        "\n".join(
            [
                f"rules: {ROOT / 'rules'}",
                f"state: {folder / 'state.db'}",
                "listen: 127.0.0.1:0",
                f"endpoint_url: {emulator.endpoint_url}",
                f'accounts: [{{id: "{ACCOUNT}", regions: [us-east-1]}}]',
                "sources: {lookup: {interval: 1h}}",
                f"inventory: {{interval: {interval}}}",
                "",
            ]
        )
    )
    return path


def audit_once(emulator: Emulator, path: Path, pythonpath: Path) -> tuple[float, Counter[str]]:
    emulator.calls.start()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "watcher", "audit", "-c", str(path), "--format", "json"],
        env={**os.environ, "PYTHONPATH": str(pythonpath)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,  # exit 1: a check fails (no MFA on the user); the run is complete
        timeout=900,
    )
    took = time.perf_counter() - started
    calls = Counter(c.action for c in emulator.calls.calls())
    emulator.calls.stop()
    return took, calls


def daemon_rss(
    emulator: Emulator, folder: Path, pythonpath: Path, runs: int, interval: str
) -> list[float]:
    """RSS (MB) of the daemon after each of ``runs`` completed inventory runs."""
    path = config(folder, emulator, interval)
    rss = []
    with running_daemon(path, env={"PYTHONPATH": str(pythonpath)}, ready=False) as daemon:

        def run_after(seen: float) -> float:
            """The last inventory run's time once it is later than ``seen`` (else 0)."""
            try:
                last = daemon.metric(
                    "breakglass_source_last_success_timestamp_seconds",
                    source="iam",
                    account=ACCOUNT,
                    region="global",
                )
            except TimeoutError:  # busy starting up
                return 0.0
            return last if last > seen else 0.0

        seen = 0.0
        for _ in range(runs):
            seen = wait_for(partial(run_after, seen), 600, "an inventory run")
            rss.append(rss_mb(daemon.proc.pid))
    return rss


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--roles", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--rss", action="store_true")
    parser.add_argument("--rss-runs", type=int, default=6)
    parser.add_argument("--rss-interval", default="20s")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()}")
    # `python -m` puts the working folder first on sys.path: not this checkout, or its
    # `watcher` would shadow the baseline's.
    os.chdir(tempfile.gettempdir())
    with package_of(args.baseline) as baseline, start_emulator() as emulator:
        sides = {f"before ({args.baseline})": baseline, "after": ROOT}
        for roles in args.roles:
            account(emulator, roles, args.users)
            print(f"\n{roles} roles + {args.users} users (+ rules/' user and role), one run each:")
            print(f"{'side':<16} {'calls':>6}  {'s/run min / median / max':<26} calls by action")
            for side, path in sides.items():
                times, counts = [], []
                for _ in range(args.runs):
                    with tempfile.TemporaryDirectory() as folder:
                        took, calls = audit_once(emulator, config(Path(folder), emulator), path)
                    times.append(took)
                    counts.append(calls)
                total = "/".join(sorted({str(sum(c.values())) for c in counts}))
                actions = ", ".join(f"{a.split(':')[1]} {n}" for a, n in sorted(counts[0].items()))
                print(f"{side:<16} {total:>6}  {spread(times):<26} {actions}")
        if args.rss:
            account(emulator, args.roles[0], args.users)
            print(f"\ndaemon RSS (MB) after each inventory run, every {args.rss_interval}:")
            for side, path in sides.items():
                with tempfile.TemporaryDirectory() as folder:
                    rss = daemon_rss(emulator, Path(folder), path, args.rss_runs, args.rss_interval)
                print(f"{side:<16} " + " ".join(f"{r:.1f}" for r in rss))
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
