"""Detection latency of the real daemon: from handing an event to (emulated) AWS until /metrics
counts it, p50/p90/p99.

- EventBridge -> SQS: ``put_events`` of one CloudTrail record (the rule routes it to the queue,
  the daemon's long poll returns it), one at a time, timed from just before the call.
- LookupEvents: the record filed in the emulator (``LookupEventStore.add``), timed from then;
  the poll interval decides this one (about interval/2 on average plus the poll's calls, which
  the token bucket spaces at 1/rate). Samples start at a random phase of the interval.
  Real CloudTrail adds its own delivery lag (typically minutes) before LookupEvents shows an
  event; the emulator shows it at once, so this measures the watcher, not CloudTrail.

Both against examples/config.yaml (long poll 20 s, 10 messages; rules/), the daemon a
subprocess, the emulator in this process. ``/metrics`` is read every 5 ms while waiting.

    .venv/bin/python bench/latency.py                       # 200 SQS and 40 LookupEvents samples
    .venv/bin/python bench/latency.py --count 50 --lookup-count 10
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

from emulated import emulated
from harness import DaemonProcess, running_daemon, user_calls

from watcher.config import load_config
from watcher.emulator.infra import deliver
from watcher.sources.lookup import LookupSettings


def time_one(daemon: DaemonProcess, send: Callable[[], None]) -> tuple[float, float]:
    """(seconds until the metric counted it, seconds the send itself took)."""
    before = daemon.metric("breakglass_events_total")
    began = time.perf_counter()
    send()
    sent = time.perf_counter()
    while daemon.metric("breakglass_events_total") == before:
        time.sleep(0.005)
    return time.perf_counter() - began, sent - began


def percentiles(values: list[float]) -> tuple[float, float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[89], cuts[98], max(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="EventBridge -> SQS samples")
    parser.add_argument("--lookup-count", type=int, default=40, help="LookupEvents samples")
    parser.add_argument("--lookup-interval", default="5s", help="sources.lookup.interval")
    args = parser.parse_args(argv)
    numbers = count()

    def record() -> dict[str, object]:
        (one,) = user_calls(
            [next(numbers)], lambda _: datetime.now(UTC) - timedelta(seconds=1), tag="latency"
        )
        return one

    rows = []
    with (
        tempfile.TemporaryDirectory() as folder,
        emulated(Path(folder), lookup={"interval": args.lookup_interval}) as setup,
        running_daemon(setup.config) as daemon,
    ):
        url = setup.emulator.endpoint_url
        sqs = [time_one(daemon, lambda: deliver(url, record())) for _ in range(args.count)]
        rows.append(("EventBridge -> SQS", [t for t, _ in sqs]))
        rows.append(("  of which put_events", [s for _, s in sqs]))
        lookup_settings = load_config(setup.config).sources.get("lookup")
        assert isinstance(lookup_settings, LookupSettings)
        rng = random.Random(1)
        lookup = []
        for _ in range(args.lookup_count):
            # Samples would otherwise start right after a poll, all at the same phase.
            time.sleep(rng.uniform(0, lookup_settings.interval.total_seconds()))
            lookup.append(time_one(daemon, lambda: setup.emulator.lookup.add(record()))[0])
        rows.append((f"LookupEvents ({args.lookup_interval})", lookup))
    print(f"{'path':<24} {'samples':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in rows:
        p50, p90, p99, top = (v * 1000 for v in percentiles(values))
        print(f"{name:<24} {len(values):>7} {p50:>8.0f} {p90:>8.0f} {p99:>8.0f} {top:>8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
