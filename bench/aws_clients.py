"""What an account-region's LookupEvents client costs: memory held and CPU per poll.

Side by side, each in a fresh process (so RSS is its own) against one emulator (moto + STS +
LookupEvents in this process, so its serving CPU is not counted):

- ``held-own-tls``: a client per account-region held for good, each with its own TLS context
  (aiobotocore's default; the watcher before the pool);
- ``held``: the same with the one shared TLS context (``watcher/aws.py``);
- ``pool``: a client leased from the pool for each poll (``AwsClients.lease``, the watcher now).

Each process polls every account-region (accounts with a read role, 4 regions each) ``--rounds``
times, one LookupEvents call a poll, and reports RSS growth per account-region and the CPU
(user + system, every thread) of one poll in the last rounds.

    .venv/bin/python bench/aws_clients.py [--pairs 400] [--pool 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from emulated import ROOT  # noqa: F401  (sets fake credentials, puts tests/ on the path)

from watcher import aws
from watcher.aws import AwsClients
from watcher.emulator.server import start_emulator
from watcher.settings import Account

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1")
VARIANTS = ("held-own-tls", "held", "pool")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def accounts(pairs: int) -> list[Account]:
    ids = [f"{100000000000 + n}" for n in range(-(-pairs // len(REGIONS)))]
    return [Account(i, REGIONS, role_arn=f"arn:aws:iam::{i}:role/watcher-reader") for i in ids]


async def measure(
    variant: str, endpoint: str, pairs: int, pool: int, rounds: int
) -> dict[str, Any]:
    """One variant in this process: RSS growth per pair and CPU ms per poll."""
    if variant == "held-own-tls":
        aws._CLIENT_CONFIG = aws._CLIENT_CONFIG.merge(AioConfig(http_session_cls=AIOHTTPSession))
    clients = AwsClients(endpoint, pool_size=pool)
    places = [(a, r) for a in accounts(pairs) for r in a.regions][:pairs]
    async with clients.client("cloudtrail", "us-east-1") as warm:  # models loaded, TLS built
        await warm.lookup_events(MaxResults=1)
    before = rss_mb()
    held: dict[tuple[str, str], Any] = {}
    cpu: list[float] = []
    for n in range(rounds):
        start = time.process_time()
        for account, region in places:
            if variant == "pool":
                async with clients.lease("cloudtrail", region, account) as cloudtrail:
                    await cloudtrail.lookup_events(MaxResults=1)
                continue
            if (account.id, region) not in held:
                opened = clients.client("cloudtrail", region, account)
                held[(account.id, region)] = (opened, await opened.__aenter__())
            await held[(account.id, region)][1].lookup_events(MaxResults=1)
        if n > 0:  # the first round also assumes every account's role
            cpu.append((time.process_time() - start) / len(places) * 1000)
    grown = rss_mb() - before
    for opened, _ in held.values():
        await opened.__aexit__(None, None, None)
    await clients.close()
    return {
        "kb_per_pair": grown * 1024 / len(places),
        "cpu_ms_per_poll": statistics.mean(cpu),
        "opened": clients.pool.created if variant == "pool" else len(held),
    }


def spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=400, help="account-regions")
    parser.add_argument("--pool", type=int, default=aws.POOL_SIZE, help="pool size")
    parser.add_argument("--rounds", type=int, default=3, help="polls of every account-region")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # a child: one measurement, as JSON
        result = asyncio.run(
            measure(args.variant, args.endpoint, args.pairs, args.pool, args.rounds)
        )
        print(json.dumps(result))
        return
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    with start_emulator() as emulator:
        emulator.lookup.rate_per_second = 1e9  # the client's cost, not the service's pace
        for _ in range(args.runs):
            for variant in VARIANTS:  # interleaved, so load drifts touch every variant
                child = [sys.executable, __file__, "--variant", variant]
                child += ["--endpoint", emulator.endpoint_url, "--pairs", str(args.pairs)]
                child += ["--pool", str(args.pool), "--rounds", str(args.rounds)]
                out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
                results[variant].append(json.loads(out.splitlines()[-1]))
    print(f"{args.pairs} account-regions, pool of {args.pool}, min / median / max of {args.runs}")
    print("| variant | clients opened | RSS KB per account-region | CPU ms per poll |")
    print("|---|---:|---:|---:|")
    for variant, runs in results.items():
        print(
            f"| {variant} | {runs[0]['opened']} "
            f"| {spread([r['kb_per_pair'] for r in runs])} "
            f"| {spread([r['cpu_ms_per_poll'] for r in runs])} |"
        )


if __name__ == "__main__":
    main()
