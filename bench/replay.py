"""Replay throughput: the whole pipeline against bare ``json.loads`` of the same lines.

Generates a synthetic stream of EventBridge envelopes as JSON lines (about 1% break-glass:
assumptions of the break-glass role, its sessions' calls, console sign-ins, with a few
duplicates), in memory and chunk by chunk, and times on each chunk

- ``json.loads`` of every line (the baseline),
- ``orjson.loads`` of every line (for reference),
- the pipeline exactly as ``replay`` runs it: split lines, parse, normalise, identify, classify,
  de-duplicate (``events.iter_stream`` + ``replay.Collector``).

Target: the pipeline at least half as fast as ``json.loads`` alone.

    .venv/bin/python bench/replay.py                # 1,000,000 records
    .venv/bin/python bench/replay.py --count 50000  # a quick run
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from watcher.classify import Classifier
from watcher.clock import iso_z
from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    aws_service_identity,
    console_login_record,
    eventbridge_envelope,
    iam_user_identity,
)
from watcher.events import iter_stream
from watcher.model import Exercise, Principal, Rules
from watcher.replay import Collector, Warnings
from watcher.rules import load_rules

ACCOUNT = "123456789012"
BG_ROLE = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"
EID = "00000000-0000-4000-8000-EVENTIDXXXXX"
T0 = datetime(2026, 10, 1, 10, 0, tzinfo=UTC)
T0_TEXT = "2026-10-01T10:00:00Z"
# The same principals and exercise as rules/break-glass.yaml.
RULES = Rules(
    principals=(
        Principal("break-glass-admin", "user", ACCOUNT, iam_names=("break-glass-admin",)),
        Principal("break-glass-admin-role", "role", ACCOUNT, iam_names=("break-glass-admin-role",)),
    ),
    exercises=(
        Exercise(
            "quarterly-drill",
            principals=("break-glass-admin", "break-glass-admin-role"),
            timezone="Europe/Berlin",
            schedule="0 14 1 1,4,7,10 *",
            duration=timedelta(hours=4),
            session_name="break-glass-exercise*",
        ),
    ),
)

Template = Callable[[random.Random], dict[str, Any]]


def _noise(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    account = rng.choice([ACCOUNT, "210987654321", "345678901234"])
    if roll < 0.55:
        role = f"arn:aws:iam::{account}:role/app-{rng.randrange(40)}"
        identity = assumed_role_identity(role, f"i-{rng.randrange(10**8):08x}", "ASIANOISE")
    elif roll < 0.75:
        identity = iam_user_identity(account, f"user-{rng.randrange(200)}", "AKIANOISE")
    elif roll < 0.85:
        identity = aws_service_identity("ec2.amazonaws.com")
    else:
        caller = iam_user_identity(account, f"deployer-{rng.randrange(5)}", "AKIADEPLOY")
        return assume_role_record(
            caller=caller,
            role_arn=f"arn:aws:iam::{account}:role/deploy-{rng.randrange(10)}",
            session_name=f"ci-{rng.randrange(1000)}",
            event_time=T0,
            event_id=EID,
            issued_access_key_id="ASIADEPLOY",
        )
    name, source = rng.choice(
        [
            ("GetObject", "s3.amazonaws.com"),
            ("DescribeInstances", "ec2.amazonaws.com"),
            ("Decrypt", "kms.amazonaws.com"),
            ("GetCallerIdentity", "sts.amazonaws.com"),
            ("PutMetricData", "monitoring.amazonaws.com"),
            ("GetRole", "iam.amazonaws.com"),
        ]
    )
    return api_call_record(
        identity=identity,
        event_name=name,
        event_source=source,
        account=account,
        event_time=T0,
        event_id=EID,
        region=rng.choice(["us-east-1", "eu-central-1", "eu-west-1"]),
        request_parameters={"roleName": "break-glass-admin-role"} if name == "GetRole" else None,
        event_type="AwsServiceEvent" if identity["type"] == "AWSService" else "AwsApiCall",
    )


def _break_glass(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    session = rng.choice(["break-glass-exercise-1", "incident-42"])
    if roll < 0.3:
        return assume_role_record(
            caller=iam_user_identity(ACCOUNT, "alice", "AKIAALICE"),
            role_arn=BG_ROLE,
            session_name=session,
            event_time=T0,
            event_id=EID,
            issued_access_key_id="ASIABREAKGLASS",
        )
    if roll < 0.9:
        return api_call_record(
            identity=assumed_role_identity(BG_ROLE, session, "ASIABREAKGLASS"),
            event_name="ListUsers",
            event_source="iam.amazonaws.com",
            account=ACCOUNT,
            event_time=T0,
            event_id=EID,
        )
    return console_login_record(
        identity=iam_user_identity(ACCOUNT, "break-glass-admin"),
        success=rng.random() < 0.8,
        mfa_used=True,
        event_time=T0,
        event_id=EID,
    )


def templates(rng: random.Random) -> tuple[list[str], list[str]]:
    """Serialised envelopes with ``EID``/``T0_TEXT`` placeholders: noise and break-glass."""

    def text(build: Template) -> str:
        return json.dumps(eventbridge_envelope(build(rng)), separators=(",", ":"))

    return [text(_noise) for _ in range(400)], [text(_break_glass) for _ in range(40)]


def chunk(
    rng: random.Random, noise: list[str], bg: list[str], start: int, size: int
) -> tuple[bytes, int, int]:
    """``size`` records from number ``start``, one a line: times cycle through 10:00-18:00 UTC
    on the drill day (the window is 12:00-16:00); about 1% break-glass, 5% of those twice."""
    lines = []
    bg_count = 0
    for n in range(start, start + size):
        is_bg = rng.random() < 0.01
        template = rng.choice(bg) if is_bg else rng.choice(noise)
        bg_count += is_bg
        when = iso_z(T0 + timedelta(seconds=n * 7 % 28_800), timespec="seconds")
        line = template.replace(EID[-12:], f"{n:012d}").replace(T0_TEXT, when)
        lines.append(line)
        if is_bg and rng.random() < 0.05:
            lines.append(line)
    return "\n".join(lines).encode(), bg_count, len(lines)


def run(count: int, chunk_size: int, seed: int, rules: Rules) -> tuple[dict[str, float], int]:
    """Seconds per stage over ``count`` records, and the number of lines (with repeats)."""
    rng = random.Random(seed)
    noise, bg = templates(rng)
    warnings = Warnings(sys.stderr)
    collector = Collector(Classifier(rules), warnings)
    totals = {"json.loads": 0.0, "orjson.loads": 0.0, "pipeline": 0.0}
    bg_total = size_total = line_total = 0
    for start in range(0, count, chunk_size):
        data, bg_count, line_count = chunk(rng, noise, bg, start, min(chunk_size, count - start))
        bg_total += bg_count
        line_total += line_count
        size_total += len(data)
        t = time.perf_counter()
        for line in io.BytesIO(data):
            json.loads(line)
        totals["json.loads"] += time.perf_counter() - t
        t = time.perf_counter()
        for line in io.BytesIO(data):
            orjson.loads(line)
        totals["orjson.loads"] += time.perf_counter() - t
        t = time.perf_counter()
        for item in iter_stream(io.BytesIO(data), Path("bench.jsonl")):
            collector.add(item)
        totals["pipeline"] += time.perf_counter() - t
    if warnings.count:
        raise SystemExit(f"{warnings.count} malformed records in a synthetic stream")
    drills = sum(v.classification == "drill" for v in collector.verdicts)
    print(
        f"lines {line_total:,} ({size_total / line_total:,.0f} bytes each), break-glass "
        f"{bg_total:,} (+{line_total - count:,} sent twice), verdicts after dedup "
        f"{len(collector.verdicts):,} ({drills:,} drills)"
    )
    return totals, line_total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="records (default 1e6)")
    parser.add_argument("--chunk", type=int, default=100_000, help="records generated at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rules", type=Path, help="a rules folder instead of the built-in rules")
    args = parser.parse_args(argv)
    rules = load_rules(args.rules) if args.rules else RULES
    totals, lines = run(args.count, args.chunk, args.seed, rules)
    print(f"{'stage':<14} {'seconds':>9} {'events/s':>12} {'vs json.loads':>14}")
    for stage, seconds in totals.items():
        ratio = totals["json.loads"] / seconds
        print(f"{stage:<14} {seconds:>9.2f} {lines / seconds:>12,.0f} {ratio:>13.2f}x")
    ratio = totals["json.loads"] / totals["pipeline"]
    verdict = "meets" if ratio >= 0.5 else "MISSES"
    print(f"pipeline runs at {ratio:.2f}x the speed of json.loads alone ({verdict} target 0.5x)")
    return 0 if ratio >= 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
