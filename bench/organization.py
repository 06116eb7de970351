"""An emulated AWS Organization: N accounts x R regions watched by the real daemon.

moto Organizations + STS + the LookupEvents emulator run in this process on loopback; the
daemon runs as a subprocess (tests/harness.py) with ``accounts: {organization: ...}``, one
``account: any`` role rule and LookupEvents polling every account-region at the default 1-minute
interval. Measured:

- time from start to the first complete poll of every account-region (each has a
  ``breakglass_source_last_success_timestamp_seconds{source="lookup"}`` series);
- then over ``--steady`` seconds: the daemon's CPU % (utime+stime from /proc) and RSS, LookupEvents
  calls per hour per account-region (counted at the emulator), the most calls any
  account-region received in one second, and the emulator's throttled answers (rate
  violations: the emulator admits 2 calls/s per account-region, as AWS);
- ``/metrics``: size and the time of one scrape (best of 5).

    .venv/bin/python bench/organization.py --accounts 30 100 300 [--regions 4] [--steady 120]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import boto3
from emulated import ROOT  # noqa: F401  (sets fake credentials, puts tests/ on the path)
from harness import DaemonProcess, running_daemon, wait_for

from watcher.emulator.server import Emulator, start_emulator

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "sa-east-1")
ROLE = "breakglass-watcher-read"
TICKS = os.sysconf("SC_CLK_TCK")


def organization(emulator: Emulator, accounts: int) -> None:
    """An organization with ``accounts`` accounts in all (the management one included)."""
    emulator.reset()
    orgs = boto3.client(
        "organizations", region_name="us-east-1", endpoint_url=emulator.endpoint_url
    )
    orgs.create_organization(FeatureSet="ALL")
    for n in range(accounts - 1):
        orgs.create_account(AccountName=f"member-{n}", Email=f"member-{n}@example.com")


def config(folder: Path, emulator: Emulator, regions: int) -> Path:
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "rules.yaml").write_text(
        "principals:\n"
        "  - name: bg-role\n"
        "    match: {role_name: break-glass-admin}\n"
        "    account: any\n"
    )
    path = folder / "config.yaml"
    path.write_text(
        f"rules: rules\nstate: {folder / 'state.db'}\nlisten: 127.0.0.1:0\n"
        f"endpoint_url: {emulator.endpoint_url}\n"
        f"regions: [{', '.join(REGIONS[:regions])}]\n"
        f"accounts: {{organization: {{role_name: {ROLE}}}}}\n"
        "sources: {lookup: {}}\n"
        "inventory: {enabled: false}\n"
    )
    return path


def polled(daemon: DaemonProcess) -> int:
    """Account-regions with a successful lookup poll so far (0 while a scrape times out: the
    daemon is busy starting up)."""
    try:
        metrics = daemon.metrics()
    except TimeoutError:
        return 0
    return sum(
        1
        for name, labels in metrics
        if name == "breakglass_source_last_success_timestamp_seconds"
        and ("source", "lookup") in labels
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(daemon: DaemonProcess) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(5):
        start = time.perf_counter()
        with urllib.request.urlopen(f"{daemon.base_url}/metrics", timeout=30) as answer:
            size = len(answer.read())
        best = min(best, time.perf_counter() - start)
    return best * 1000, size


def run(emulator: Emulator, accounts: int, regions: int, steady: float) -> dict[str, float]:
    organization(emulator, accounts)
    pairs = accounts * regions
    with tempfile.TemporaryDirectory(prefix="bench-org-") as folder:
        path = config(Path(folder), emulator, regions)
        started = time.monotonic()
        with running_daemon(path, ready=False) as daemon:
            wait_for(lambda: polled(daemon) >= pairs, 900, "every account-region polled")
            first_full = time.monotonic() - started
            pid = daemon.proc.pid
            calls_before = len(emulator.lookup.calls())
            cpu_before, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(steady)
            cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - t0) * 100
            window = emulator.lookup.calls()[calls_before:]
            elapsed = time.monotonic() - t0
            rss = rss_mb(pid)
            scrape_ms, size = scrape(daemon)
            ready = daemon.get("/readyz")[0]
    every = emulator.lookup.calls()
    per_second = Counter((c.account, c.region, int(c.at)) for c in every)
    throttled = sum(1 for c in every if c.outcome == "ThrottlingException")
    return {
        "accounts": accounts,
        "pairs": pairs,
        "first_full_s": first_full,
        "cpu_pct": cpu,
        "rss_mb": rss,
        "calls_h_pair": len(window) / pairs * 3600 / elapsed,
        "max_calls_1s": max(per_second.values(), default=0),
        "throttled": throttled,
        "metrics_kb": size / 1024,
        "scrape_ms": scrape_ms,
        "readyz": ready,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--steady", type=float, default=120.0, help="seconds measured at rest")
    args = parser.parse_args()
    print(
        "| accounts | account-regions | first full poll s | CPU % | RSS MB | calls/h per "
        "account-region | max calls in 1 s | throttled | /metrics KB | scrape ms | /readyz |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with start_emulator() as emulator:
        for accounts in args.accounts:
            r = run(emulator, accounts, args.regions, args.steady)
            print(
                f"| {accounts} | {r['pairs']:.0f} | {r['first_full_s']:.0f} | {r['cpu_pct']:.0f} "
                f"| {r['rss_mb']:.0f} | {r['calls_h_pair']:.0f} | {r['max_calls_1s']:.0f} "
                f"| {r['throttled']:.0f} | {r['metrics_kb']:.0f} | {r['scrape_ms']:.0f} "
                f"| {r['readyz']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
