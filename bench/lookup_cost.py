"""LookupEvents calls per hour per account-region, with the sweeps issue 11 added (switch-role
and denied-assume sweeps, console sessions followed by name), computed and counted.

One ``LookupPoller`` (the daemon's code) polls the LookupEvents emulator of one account and
region at the default settings (every minute, 20-minute overlap, 1-hour first lookback). The
clock is simulated: each poll is one minute after the last, so an hour of polls runs in
seconds. The principals are rules/' (one user, one role) in the emulator's account.

Per poll, each lookup costs one call per started page of 50 events in its window
``[checkpoint - overlap, now]`` (at least one): ``Username`` per user (+ ``root``),
``ResourceName`` per role (any account), ``AccessKeyId`` per followed session key, ``Username``
per followed console session, and the ``EventName`` sweeps (``ConsoleLogin``, ``SwitchRole``,
``AssumeRole``, ``AssumeRoleWithSAML``, ``AssumeRoleWithWebIdentity``; ``AssumeRoot`` when a
root is watched). Before issue 11 only the ``ConsoleLogin`` sweep existed.

    .venv/bin/python bench/lookup_cost.py
    .venv/bin/python bench/lookup_cost.py --assume-per-hour 3000 --polls 60
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import emulated  # noqa: E402,F401  (fake credentials, never real AWS)

from watcher.aws import AwsClients  # noqa: E402
from watcher.emulator import records  # noqa: E402
from watcher.emulator.server import Emulator, start_emulator  # noqa: E402
from watcher.rules import load_rules  # noqa: E402
from watcher.settings import Account  # noqa: E402
from watcher.sources.lookup import (  # noqa: E402
    LookupPoller,
    LookupSettings,
    sweeps,
)

ACCOUNT, REGION = "123456789012", "us-east-1"
START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
PAGE = 50


class _Checkpoints:
    def __init__(self) -> None:
        self.value: str | None = None

    async def checkpoint(self, key: str) -> str | None:
        return self.value


def background(emulator: Emulator, per_hour: dict[str, int], hours: float) -> None:
    """Other principals' activity from ``START - 1 h`` over ``hours``: what the sweeps wade
    through. None of it is a break-glass event."""
    other_role = f"arn:aws:iam::{ACCOUNT}:role/deploy-pipeline"
    caller = records.iam_user_identity(ACCOUNT, "ci")
    begin = START - timedelta(hours=1)
    for name, rate in per_hour.items():
        count = int(rate * hours)
        for n in range(count):
            at = begin + timedelta(seconds=n * 3600 / rate)
            if name == "AssumeRole":
                record = records.assume_role_record(
                    caller=caller, role_arn=other_role, session_name=f"ci-{n}", event_time=at
                )
            elif name == "SwitchRole":
                record = records.switch_role_record(
                    user_name=f"dev-{n % 7}",
                    user_account=ACCOUNT,
                    role_arn=other_role,
                    event_time=at,
                )
            else:
                record = records.console_login_record(
                    identity=records.iam_user_identity(ACCOUNT, f"dev-{n % 7}"),
                    success=True,
                    mfa_used=True,
                    event_time=at,
                )
            emulator.lookup.add(record)


def computed_per_poll(n_lookups: int, per_hour: dict[str, int], window: timedelta) -> int:
    """Calls of one later poll: one per lookup, plus the extra pages of the busy sweeps."""
    extra = 0
    for rate in per_hour.values():
        in_window = rate * window.total_seconds() / 3600
        extra += max(1, math.ceil(in_window / PAGE)) - 1
    return n_lookups + extra


async def run(emulator: Emulator, polls: int) -> list[Counter[str]]:
    rules = load_rules(ROOT / "rules")
    settings = LookupSettings()  # the defaults: every minute, 20 min overlap, 1 h lookback
    checkpoints = _Checkpoints()
    now = [START]

    class Observer:
        def success(self, source: str, account: str, region: str) -> None: ...
        def error(self, source: str, account: str, region: str, kind: str) -> None:
            raise AssertionError(kind)

        def malformed(self, source: str, where: str, reason: str) -> None: ...

    async def sink(events: object, source: str, cps: dict[str, str]) -> None:
        checkpoints.value = cps.get(f"lookup:{ACCOUNT}:{REGION}", checkpoints.value)

    poller = LookupPoller(
        AwsClients(emulator.endpoint_url),
        Account(ACCOUNT, (REGION,)),
        REGION,
        LookupSettings(
            interval=settings.interval,
            overlap=settings.overlap,
            lookback=settings.lookback,
            rate_per_second=1000.0,  # the simulated clock: do not wait for the real one
        ),
        principals=lambda: rules.principals,
        sink=sink,  # type: ignore[arg-type]
        observer=Observer(),
        checkpoints=checkpoints,
        clock=lambda: now[0],
    )
    per_poll: list[Counter[str]] = []
    async with AwsClients(emulator.endpoint_url).client("cloudtrail", REGION) as cloudtrail:
        for _ in range(polls):
            before = len(emulator.lookup.calls())
            assert await poller._poll(cloudtrail, asyncio.Event())
            calls = emulator.lookup.calls()[before:]
            per_poll.append(
                Counter(f"{c.attribute[0]}={c.attribute[1]}" for c in calls if c.attribute)
            )
            now[0] += settings.interval
    return per_poll


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=30, help="polls, one simulated minute apart")
    parser.add_argument("--assume-per-hour", type=int, default=600, help="other AssumeRole/h")
    parser.add_argument("--switch-per-hour", type=int, default=30, help="other SwitchRole/h")
    parser.add_argument("--logins-per-hour", type=int, default=60, help="other ConsoleLogin/h")
    args = parser.parse_args(argv)
    rules = load_rules(ROOT / "rules")
    emulator = start_emulator()
    emulator.lookup.rate_per_second = 100000
    try:
        results = {}
        for label, busy in (
            ("idle", {}),
            (
                "busy",
                {
                    "AssumeRole": args.assume_per_hour,
                    "SwitchRole": args.switch_per_hour,
                    "ConsoleLogin": args.logins_per_hour,
                },
            ),
        ):
            emulator.reset()
            emulator.lookup.rate_per_second = 100000
            background(emulator, busy, hours=1 + args.polls / 60 + 1)
            results[label] = (busy, asyncio.run(run(emulator, args.polls)))
    finally:
        emulator.stop()

    users = sum(p.kind == "user" and p.account == ACCOUNT for p in rules.principals)
    roles = sum(p.kind == "role" for p in rules.principals)
    swept = sweeps(rules.principals, ACCOUNT)
    lookups = users + roles + len(swept)
    window = LookupSettings().overlap + LookupSettings().interval
    polls_per_hour = 3600 / LookupSettings().interval.total_seconds()
    print(f"principals: {users} user, {roles} role; sweeps: {', '.join(v for _, v in swept)}")
    print(f"{'load':<6} {'first poll':>10} {'later poll':>10} {'computed':>9} {'calls/h':>8}")
    for label, (busy, polls) in results.items():
        later = [sum(c.values()) for c in polls[1:]]
        mean = sum(later) / len(later)
        computed = computed_per_poll(lookups, busy, window)
        print(
            f"{label:<6} {sum(polls[0].values()):>10} {mean:>10.1f} {computed:>9} "
            f"{mean * polls_per_hour:>8.0f}"
        )
        if label == "busy":
            heavy = Counter[str]()
            for c in polls[1:]:
                heavy.update(c)
            print(
                "  per lookup, per later poll: "
                + ", ".join(f"{k} {v / len(later):.1f}" for k, v in sorted(heavy.items()))
            )
    before = (users + roles + 1) * polls_per_hour
    print(f"before issue 11 (idle): {before:.0f} calls/h; rate limit 1.5/s: 5400 calls/h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
