"""One ``/metrics`` rendering of an organization's daemon, side by side: prometheus_client's
``generate_latest`` (before) and the daemon's ``CachedExposition`` (now).

The daemon is built in-process from a config of N accounts x 4 regions (explicit accounts with
a read role, one ``account: any`` role rule, LookupEvents on) and not run; before each
rendering every account-region gets a new last-success time and ``--errors`` of them a throttled
call, as between two scrapes of a polling organization. Prints min / median / max ms.

    .venv/bin/python bench/scrape.py [--accounts 30 300] [--errors 60] [--runs 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from emulated import ROOT  # noqa: F401  (sets fake credentials, puts tests/ on the path)
from prometheus_client.exposition import generate_latest

from watcher.daemon import Daemon
from watcher.exposition import CachedExposition
from watcher.metrics import drop_created_series

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1")


def organization(folder: Path, accounts: int) -> Daemon:
    (folder / "rules").mkdir()
    (folder / "rules" / "rules.yaml").write_text(
        "principals:\n"
        "  - name: bg-role\n"
        "    match: {role_name: break-glass-admin}\n"
        "    account: any\n"
    )
    ids = [f"{100000000000 + n}" for n in range(accounts)]
    listed = ", ".join(
        f'{{id: "{i}", role_arn: "arn:aws:iam::{i}:role/reader", regions: [{", ".join(REGIONS)}]}}'
        for i in ids
    )
    (folder / "config.yaml").write_text(
        f"rules: rules\nstate: {folder / 'state.db'}\nlisten: 127.0.0.1:0\n"
        f"endpoint_url: http://127.0.0.1:9\naccounts: [{listed}]\n"
        "sources: {lookup: {}}\ninventory: {enabled: false}\n"
    )
    return Daemon.load(folder / "config.yaml")


def scrape_body(cached: CachedExposition) -> bytes:
    return cached.render("")[0]


def timed(daemon: Daemon, render: Callable[[], bytes], errors: int, runs: int) -> list[float]:
    labels = [s.labels for s in daemon.sources]
    rng = random.Random(0)
    times = []
    for _ in range(runs):
        now = datetime.now(UTC)
        for source in labels:
            daemon.metrics.source_success(*source, now)
        for source in rng.sample(labels, min(errors, len(labels))):
            daemon.metrics.source_error(*source, "throttled")
        start = time.perf_counter()
        render()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[30, 300])
    parser.add_argument("--errors", type=int, default=60, help="throttled sources per scrape")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    drop_created_series()  # as the daemon's entry point does
    print("| accounts | series | KB | generate_latest ms | CachedExposition ms |")
    print("|---:|---:|---:|---:|---:|")
    for accounts in args.accounts:
        with tempfile.TemporaryDirectory(prefix="bench-scrape-") as folder:
            daemon = organization(Path(folder), accounts)
            cached = CachedExposition(daemon.registry)
            body = cached.render("")[0]
            series = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
            spreads = []
            renders: list[Callable[[], bytes]] = [
                partial(generate_latest, daemon.registry),
                partial(scrape_body, cached),
            ]
            for render in renders:
                ms = timed(daemon, render, args.errors, args.runs)
                spreads.append(f"{min(ms):.0f} / {statistics.median(ms):.0f} / {max(ms):.0f}")
            print(f"| {accounts} | {series} | {len(body) / 1024:.0f} | {' | '.join(spreads)} |")


if __name__ == "__main__":
    main()
