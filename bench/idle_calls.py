"""AWS calls per hour of an idle watcher (no break-glass activity), computed from the sources'
schedule and confirmed by counting every call at the emulator over a short idle run.

The config is examples/config.yaml (rules/: one IAM user and one role principal; one account,
one region; SQS long poll 20 s; LookupEvents every minute; IAM inventory every hour).

From the code:
- SQS (``sources/sqs.py``): one ``ReceiveMessage`` per long poll; idle, each poll waits the
  full ``wait_seconds`` -> 3600 / wait_seconds per queue. Deletes only follow messages.
- LookupEvents (``sources/lookup.py``): per account and region, every ``interval``: one call
  per user principal name (``Username``), one per role ARN (``ResourceName``), one per
  followed session (key or console session name; none when idle), one ``Username=root`` if a
  root is watched, and one per ``EventName`` sweep (``sources.lookup.sweeps``: ConsoleLogin,
  and with a role SwitchRole, AssumeRole, AssumeRoleWithSAML, AssumeRoleWithWebIdentity);
  more pages only with more than 50 events (bench/lookup_cost.py measures a busy account).
- IAM inventory (``inventory.py``): one run per ``inventory.interval``; its calls are counted
  from the run at start (they depend on what IAM holds).

    .venv/bin/python bench/idle_calls.py                # a 3-minute idle run
    .venv/bin/python bench/idle_calls.py --seconds 90
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emulated import emulated
from harness import running_daemon

from watcher.config import load_config
from watcher.rules import load_rules
from watcher.settings import Config
from watcher.sources.lookup import LookupSettings, sweeps
from watcher.sources.sqs import EventBridgeSettings

WARM_UP = 30.0  # seconds: the start's first polls and inventory run are counted apart


@contextmanager
def counting_calls() -> Iterator[list[tuple[float, str, str]]]:
    """Every API call moto's server answers in this process: (time, service, action)."""
    from moto.core.responses import BaseResponse

    calls: list[tuple[float, str, str]] = []
    lock = threading.Lock()
    original = BaseResponse.call_action

    def call_action(self: Any) -> Any:
        service = type(self).__module__.split(".")[1]
        with lock:
            calls.append((time.monotonic(), service, str(self._get_action())))
        return original(self)

    BaseResponse.call_action = call_action  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        BaseResponse.call_action = original  # type: ignore[method-assign]


def create_principals(endpoint_url: str) -> None:
    """rules/' user and role in IAM, as in a real account, so the inventory checks them."""
    import boto3

    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint_url)
    iam.create_user(UserName="break-glass-admin")
    iam.create_login_profile(UserName="break-glass-admin", Password="Not-used-here-1!")
    iam.create_access_key(UserName="break-glass-admin")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            }
        ],
    }
    iam.create_role(RoleName="break-glass-admin-role", AssumeRolePolicyDocument=json.dumps(trust))


def computed_per_hour(config: Config) -> dict[str, float]:
    """Idle calls per hour as the sources' code schedules them."""
    rules = load_rules(config.rules_path)
    per_hour: dict[str, float] = {}
    eventbridge = config.sources.get("eventbridge")
    lookup = config.sources.get("lookup")
    if isinstance(eventbridge, EventBridgeSettings):
        per_hour["sqs ReceiveMessage"] = 3600 / eventbridge.wait_seconds
    if isinstance(lookup, LookupSettings):
        per_poll = 0
        for account in config.accounts:
            users = sum(p.kind == "user" and p.account == account.id for p in rules.principals)
            roots = any(p.kind == "root" and p.account == account.id for p in rules.principals)
            roles = sum(p.kind == "role" for p in rules.principals)
            swept = len(sweeps(rules.principals, account.id))
            per_poll += len(account.regions) * (users + roles + swept + roots)
        per_hour["cloudtrail LookupEvents"] = per_poll * 3600 / lookup.interval.total_seconds()
    return per_hour


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="idle run after warm-up")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as folder,
        counting_calls() as calls,
        emulated(Path(folder)) as setup,
    ):
        config = load_config(setup.config)
        create_principals(setup.emulator.endpoint_url)
        before = len(calls)  # the pipeline's and principals' creation
        with running_daemon(setup.config):
            began = time.monotonic()
            time.sleep(WARM_UP + args.seconds)
        calls = calls[before:]
    start = Counter(f"{s} {a}" for t, s, a in calls if t < began + WARM_UP)
    idle = Counter(
        f"{s} {a}" for t, s, a in calls if began + WARM_UP <= t < began + WARM_UP + args.seconds
    )
    computed = computed_per_hour(config)
    inventory_runs = 3600 / config.inventory.interval.total_seconds()
    print(f"idle run: {args.seconds:.0f} s after a {WARM_UP:.0f} s warm-up; calls per hour")
    print(f"{'call':<32} {'computed':>9} {'measured':>9} {'at start':>9}")
    for name in sorted(set(start) | set(idle) | set(computed)):
        measured = idle[name] * 3600 / args.seconds
        if name.startswith("iam "):
            expected = f"{start[name] * inventory_runs:>9.0f}"  # one inventory run an hour
        else:
            expected = f"{computed.get(name, 0):>9.0f}"
        print(f"{name:<32} {expected} {measured:>9.0f} {start[name]:>9}")
    total = sum(idle.values()) * 3600 / args.seconds
    print(f"{'all calls, idle (measured)':<32} {'':>9} {total:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
