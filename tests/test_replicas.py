"""Three replicas on one DynamoDB table (moto), killed with SIGKILL and restarted while 5 000
distinct break-glass events flow through SQS and LookupEvents.

Afterwards every event is stored exactly once, every replica exports the same
``breakglass_events_total``, every exercise window of the run was decided exactly once, and the
LookupEvents emulator's call log never shows more than the configured rate. The failover time
(leader killed → the next LookupEvents call, made by the new leader) is measured and printed.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import boto3
import pytest
from dynamo import create_table
from harness import (
    DaemonProcess,
    break_glass_rules,
    queue_depth,
    running_daemon,
    send_to_queue,
    user_calls,
    wait_for,
    write_config,
)
from test_faults import new_pipeline

from watcher.emulator.server import Emulator

SEED = 20261202
REPLICAS = 3
KILLS = 8
TOTAL = 5000
SQS_EVENTS = range(0, 2000)  # moto's SQS carries ~45 events/s: the rest through LookupEvents
LOOKUP_EVENTS = range(2000, TOTAL)
LOOKUP_PER_SECOND = 40  # event times spread so each poll reads the newest
RATE = 2.0  # LookupEvents calls/s per account and region: AWS's limit
LEASE = 3.0  # seconds
# A window every minute, 20 s long, decided missed 2 s after it ends (no drill comes).
EXERCISE = """
exercises:
  - name: every-minute
    principals: [bg-user]
    schedule: "* * * * *"
    duration: 20s
"""


def events_total(daemon: DaemonProcess) -> float:
    return daemon.metric("breakglass_events_total")


def at_total(daemon: DaemonProcess) -> bool:
    return events_total(daemon) == TOTAL


def called_after(emulator: Emulator, t: float) -> bool:
    """Whether anyone called LookupEvents after monotonic time ``t``."""
    return any(c.at > t for c in emulator.lookup.calls())


def diagnosis(emulator: Emulator, queue_url: str, replicas: list[DaemonProcess]) -> str:
    """What the replicas, the queue and LookupEvents look like, for a failure message."""
    calls = emulator.lookup.calls()
    problems = [
        line
        for daemon in replicas
        for line in daemon.log_lines()
        if line.get("level") in ("error", "warning")
    ]
    return (
        f"events_total {[events_total(d) for d in replicas]}, "
        f"leading {[leads(d) for d in replicas]}, "
        f"queue {queue_depth(emulator.endpoint_url, queue_url)}, "
        f"{len(calls)} lookups, the last {calls[-3:]}, last problems {problems[-5:]}"
    )


def leads(daemon: DaemonProcess) -> bool:
    return daemon.proc.poll() is None and daemon.metric("breakglass_leader") == 1


@pytest.mark.slow  # three daemon subprocesses, killed and restarted
def test_three_replicas_killed_at_random_count_every_event_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    pipeline = new_pipeline(emulator, tmp_path)
    table = create_table(emulator.endpoint_url)
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=pipeline.queue_url,
        rules=break_glass_rules(EXERCISE),
        lookup_settings=f"{{interval: 1s, overlap: 3s, rate_per_second: {RATE}}}",
    )
    config.write_text(
        config.read_text().replace("state: state.db\n", "")
        + f"store: {{dynamodb: {{table: {table}, region: us-east-1, lease_period: {LEASE:g}s}}}}\n"
    )
    # The emulator throttles above RATE + 1 calls in a second: a token bucket of burst 1 at
    # RATE allows that many when network delays bunch its calls up.
    emulator.lookup.rate_per_second = RATE + 1
    start = datetime.now(UTC) + timedelta(seconds=5)

    def at(n: int) -> datetime:
        return start + timedelta(seconds=max(0, n - LOOKUP_EVENTS[0]) / LOOKUP_PER_SECOND)

    records = {r["eventID"]: r for r in user_calls(range(TOTAL), at, keys=20)}
    for n in LOOKUP_EVENTS:
        emulator.lookup.add(records[f"call-{n}"])
    delivery = threading.Thread(
        target=send_to_queue,
        args=(
            emulator.endpoint_url,
            pipeline.queue_url,
            [records[f"call-{n}"] for n in SQS_EVENTS],
        ),
        kwargs={"max_depth": 100},
    )
    rng = random.Random(SEED)
    failovers: list[float] = []
    counts_at_kill: list[float] = []
    every: list[DaemonProcess] = []
    with ExitStack() as stack:
        replicas = [stack.enter_context(running_daemon(config)) for _ in range(REPLICAS)]
        every += replicas
        delivery.start()
        for kill in range(KILLS):
            time.sleep(rng.uniform(3, 6))
            # Every other kill takes the leader.
            leader = [i for i, d in enumerate(replicas) if leads(d)]
            index = leader[0] if kill % 2 == 0 and leader else rng.randrange(REPLICAS)
            victim = replicas[index]
            was_leader = leads(victim)
            counts_at_kill.append(events_total(victim))
            killed = time.monotonic()
            victim.signal(signal.SIGKILL)
            victim.wait()
            if was_leader:
                wait_for(
                    partial(called_after, emulator, killed + 0.05),
                    timeout=4 * LEASE,
                    what="the new leader's first LookupEvents call",
                )
                failovers.append(
                    min(c.at for c in emulator.lookup.calls() if c.at > killed + 0.05) - killed
                )
            replicas[index] = stack.enter_context(running_daemon(config))
            every.append(replicas[index])
        delivery.join(180)
        try:
            for daemon in replicas:
                wait_for(partial(at_total, daemon), 180, "every replica at all")
        except AssertionError as exc:
            why = diagnosis(emulator, pipeline.queue_url, replicas)
            raise AssertionError(f"{exc}: {why}") from None
        assert queue_depth(emulator.endpoint_url, pipeline.queue_url) == (0, 0)
        wait_for(
            lambda: replicas[0].metric("breakglass_exercise_windows_total") >= 1,
            90,
            "a window decided",
        )
        time.sleep(11)  # every replica's next refresh from the store
        assert sum(leads(d) for d in replicas) == 1
        totals = {d.metric("breakglass_events_total") for d in replicas}
        windows = {d.metric("breakglass_exercise_windows_total") for d in replicas}
        # The programme gauges too, also on replicas that never decided a window themselves.
        newest_windows = {
            d.metric("breakglass_exercise_last_window_start_timestamp_seconds") for d in replicas
        }
    print(
        f"\n[info] {KILLS} kills, {len(failovers)} of the leader; failover (kill → new leader's"
        f" first LookupEvents call): {', '.join(f'{f:.1f} s' for f in failovers)}"
        f" (lease {LEASE:g} s); events counted by the killed replicas: {counts_at_kill}"
    )
    assert totals == {float(TOTAL)}
    assert len(newest_windows) == 1 and min(newest_windows) > 0
    assert len(failovers) >= KILLS // 2 - 1
    assert max(failovers) < 2 * LEASE + 1.5  # two lease periods, plus the 1 s poll interval
    # Stored exactly once: one item per event id, and no other event.
    client = boto3.client("dynamodb", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
    pages = client.get_paginator("scan").paginate(TableName=table)
    items = [item for page in pages for item in page["Items"]]
    stored = [i["event_id"]["S"] for i in items if i["pk"]["S"].startswith("E#")]
    assert len(stored) == len(set(stored)) == TOTAL
    assert set(stored) == set(records)
    # Each window decided once, whoever decided it; the counters agree with the decisions.
    decided = [
        (line["exercise"], line["window_start"])
        for daemon in every
        for line in daemon.log_lines()
        if line.get("message") == "exercise window decided"
    ]
    assert decided and len(decided) == len(set(decided))
    # A window's own item; its per-person drill items have "#" in their sort key.
    window_items = [i for i in items if i["pk"]["S"].startswith("W#") and "#" not in i["sk"]["S"]]
    assert len(window_items) == len(decided)
    assert windows == {float(len(decided))}
    # The LookupEvents rate, all replicas together: never more than one leader's bucket allows
    # in any second (two overlapping leaders would double it).
    calls = emulator.lookup.calls()
    assert not [c for c in calls if c.outcome != "ok"]
    times = sorted(c.at for c in calls)
    busiest = max(sum(1 for t in times[i:] if t < first + 1.0) for i, first in enumerate(times))
    assert busiest <= RATE + 1, f"{busiest} LookupEvents calls in one second"
    print(
        f"[info] LookupEvents: {len(calls)} calls, busiest second {busiest}"
        f" (rate {RATE:g}/s, burst 1); windows decided: {Counter(e for e, _ in decided)}"
    )
