"""replay of an archive in CloudTrail's layout: ``s3://`` against moto vs the same files on disk,
``--jobs 1`` and ``--jobs 2``, whole processes (start-up and the pool's start included).

Generates an archive (accounts x regions x days, ``--files-per-day`` files a folder, about 1 %
break-glass records), writes it to a temporary folder and to moto's S3 (the emulator, started in
this process), then runs ``breakglass-watcher replay`` on each source, the four commands in turn
``--runs`` times, and prints min/median/max seconds. Every run must print the same verdicts.

moto's share: the same GetObject calls made alone, one after the other as a ``--jobs 1`` worker
makes them (and the listing alone), timed in this process; what is left of the S3 run is
replay's own work.

    .venv/bin/python bench/replay_s3.py                   # 2 x 2 x 6 x 10 files of 1 000 records
    .venv/bin/python bench/replay_s3.py --records 50      # a quick run
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from emulated import ROOT  # its import sets fake AWS credentials: never real AWS

from watcher.archive import Listing, S3Object, objects
from watcher.emulator.records import api_call_record, assumed_role_identity, iam_user_identity
from watcher.emulator.server import start_emulator
from watcher.trail_layout import Selection

BUCKET = "bench-trail"
ACCOUNTS = ("111111111111", "222222222222")
REGIONS = ("us-east-1", "eu-west-1")
FIRST_DAY = date(2026, 11, 1)
RULES = "principals:\n" + "".join(
    f"  - {{name: bg-{a}, match: {{role_name: break-glass}}, account: '{a}'}}\n" for a in ACCOUNTS
)


def record(rng: random.Random, account: str, region: str, t: datetime, eid: str) -> Any:
    if rng.random() < 0.01:
        role = f"arn:aws:iam::{account}:role/break-glass"
        identity = assumed_role_identity(role, "incident", "ASIABG")
        name, source = "ListUsers", "iam.amazonaws.com"
    else:
        identity = iam_user_identity(account, f"user-{rng.randrange(50)}", "AKIANOISE")
        name, source = rng.choice(
            [("DescribeInstances", "ec2.amazonaws.com"), ("GetObject", "s3.amazonaws.com")]
        )
    return api_call_record(
        identity=identity,
        event_name=name,
        event_source=source,
        account=account,
        event_time=t,
        event_id=eid,
        region=region,
    )


def generate(days: int, per_day: int, records: int, seed: int) -> dict[str, bytes]:
    """Every object of the archive, by key."""
    rng = random.Random(seed)
    archive: dict[str, bytes] = {}
    for account in ACCOUNTS:
        for region in REGIONS:
            for d in range(days):
                day = FIRST_DAY + timedelta(days=d)
                for n in range(per_day):
                    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                    rows = [
                        record(
                            rng,
                            account,
                            region,
                            start + timedelta(seconds=rng.randrange(86_400)),
                            f"{account}-{region}-{d}-{n}-{i}",
                        )
                        for i in range(records)
                    ]
                    stamp = f"{day:%Y%m%d}T{n:02d}00Z"
                    key = (
                        f"AWSLogs/{account}/CloudTrail/{region}/{day:%Y/%m/%d}/"
                        f"{account}_CloudTrail_{region}_{stamp}_{n:04d}.json.gz"
                    )
                    archive[key] = gzip.compress(json.dumps({"Records": rows}).encode())
    return archive


def timed(command: list[str], env: dict[str, str]) -> tuple[float, bytes]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode()}")
    return seconds, done.stdout


def spread(values: list[float]) -> str:
    return f"{min(values):7.2f} {statistics.median(values):7.2f} {max(values):7.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--files-per-day", type=int, default=10)
    parser.add_argument("--records", type=int, default=1000, help="records per file")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    archive = generate(args.days, args.files_per_day, args.records, args.seed)
    size = sum(len(b) for b in archive.values())
    emulator = start_emulator()
    try:
        env = dict(os.environ, AWS_ENDPOINT_URL=emulator.endpoint_url)
        os.environ["AWS_ENDPOINT_URL"] = emulator.endpoint_url
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as folder:
            for key, body in archive.items():
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
                (Path(folder) / key).parent.mkdir(parents=True, exist_ok=True)
                (Path(folder) / key).write_bytes(body)
            rules = Path(folder) / "rules.yaml"
            rules.write_text(RULES)
            records = len(archive) * args.records
            print(
                f"{len(archive)} files, {records:,} records, {size / 1e6:.1f} MB gzipped; "
                f"load average {os.getloadavg()[0]:.2f}"
            )
            base = [sys.executable, "-m", "watcher", "replay", "--rules", str(rules)]
            env["PYTHONPATH"] = str(ROOT)
            commands = {
                f"{source} --jobs {jobs}": [*base, "--jobs", str(jobs), target]
                for source, target in (("disk", folder), ("s3", f"s3://{BUCKET}"))
                for jobs in (1, 2)
            }
            seconds: dict[str, list[float]] = {name: [] for name in commands}
            outputs: set[bytes] = set()
            for _ in range(args.runs):
                for name, command in commands.items():
                    spent, out = timed(command, env)
                    seconds[name].append(spent)
                    outputs.add(out)
            if len(outputs) != 1 or not next(iter(outputs)):
                raise SystemExit("the runs printed different verdicts, or none")
            print(f"{len(next(iter(outputs)).splitlines()):,} uses found by every run")
            moto = moto_alone(args.runs)
        print(f"{'command':<16} {'min':>7} {'median':>7} {'max':>7}  records/s (median)")
        for name, values in seconds.items():
            rate = records / statistics.median(values)
            print(f"{name:<16} {spread(values)}  {rate:,.0f}")
        get_median = statistics.median(moto["GetObject"])
        s3_median = statistics.median(seconds["s3 --jobs 1"])
        print(f"moto alone       {'min':>7} {'median':>7} {'max':>7}")
        for name, values in moto.items():
            print(f"{name:<16} {spread(values)}")
        print(
            f"GetObject alone is {get_median / s3_median:.0%} of the s3 --jobs 1 run "
            f"({get_median / len(archive) * 1000:.1f} ms an object); load average "
            f"{os.getloadavg()[0]:.2f}"
        )
    finally:
        emulator.stop()
    return 0


def moto_alone(runs: int) -> dict[str, list[float]]:
    """Seconds to list the archive (replay's pruned walk) and to GetObject every file of it,
    one after the other, in this process."""
    spent: dict[str, list[float]] = {"listing": [], "GetObject": []}
    client = boto3.client("s3")
    for _ in range(runs):
        start = time.perf_counter()
        listed = [o for o in objects([f"s3://{BUCKET}"], Selection(), Listing())]
        spent["listing"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for obj in listed:
            assert isinstance(obj, S3Object)
            client.get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read()
        spent["GetObject"].append(time.perf_counter() - start)
    return spent


if __name__ == "__main__":
    raise SystemExit(main())
