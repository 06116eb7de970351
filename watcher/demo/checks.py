"""What the demo proves, read from the running watcher: the drill counted as a drill, the other
use as unexpected, the window detected, and every record counted once although both sources
delivered it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3

from watcher.daemon import Daemon
from watcher.demo.cloudtrail import CloudTrailStandIn
from watcher.demo.scenario import (
    DRILL_EXERCISE,
    PARTICIPANT,
    PERSON_LAST_DRILL,
    ROLE_PRINCIPAL,
    DemoSetup,
)
from watcher.drill import DrillResult
from watcher.drill_auth import Authentication
from watcher.drill_detection import Expectation, find_detection

CHECK_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


async def wait_for_checks(
    daemon: Daemon,
    setup: DemoSetup,
    result: DrillResult,
    misuse: Authentication,
    stand_in: CloudTrailStandIn,
) -> list[Check]:
    """Evaluate the checks until all pass or :data:`CHECK_TIMEOUT` passes (no fixed sleep:
    the watcher's sources and lifecycle decide when they are true)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CHECK_TIMEOUT
    settled = _LookupSettled(daemon, setup, stand_in)
    while True:
        checks = [
            _drill_check(result),
            _misuse_check(await daemon.store.recent_events(100), misuse),
            _window_check(daemon),
            _person_check(daemon),
            await _dedup_check(daemon, setup, stand_in, settled),
        ]
        if all(c.ok for c in checks) or loop.time() >= deadline:
            return checks
        await asyncio.sleep(0.25)


def _drill_check(result: DrillResult) -> Check:
    detection = result.record.detection
    ok = (
        result.record.ok
        and detection is not None
        and detection.classification == "drill"
        and detection.exercise == DRILL_EXERCISE
    )
    got = f"{detection.classification} ({detection.exercise})" if detection else "not reported"
    return Check(
        "drill classified drill", ok, f"{got}; record {'passed' if result.record.ok else 'failed'}"
    )


def _misuse_check(events: list[dict[str, Any]], misuse: Authentication) -> Check:
    expect = Expectation(ROLE_PRINCIPAL, misuse.at, misuse.session_name)
    event = find_detection(events, expect)
    got = event.get("classification") if event else None
    return Check(
        "other use classified unexpected",
        got == "unexpected",
        f"session {misuse.session_name}: {got or 'not reported yet'}",
    )


def _window_check(daemon: Daemon) -> Check:
    labels = {"exercise": DRILL_EXERCISE, "result": "detected"}
    value = daemon.registry.get_sample_value("breakglass_exercise_windows_total", labels) or 0.0
    return Check(
        "window detected",
        value >= 1,
        f'breakglass_exercise_windows_total{{exercise="{DRILL_EXERCISE}",result="detected"}} '
        f"= {value:g}",
    )


def _person_check(daemon: Daemon) -> Check:
    value = daemon.registry.get_sample_value(PERSON_LAST_DRILL, {"person": PARTICIPANT})
    when = (
        "none yet"
        if value is None
        else f"{datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M:%S} UTC (from its SourceIdentity)"
    )
    return Check(f"drill recorded for {PARTICIPANT}", value is not None, f"last drill {when}")


class _LookupSettled:
    """Whether a LookupEvents poll *started* after the last delivery has completed.

    The first successful poll ending after the delivery may have started before it; the next
    one started after that one ended, so it read every delivered record.
    """

    def __init__(self, daemon: Daemon, setup: DemoSetup, stand_in: CloudTrailStandIn) -> None:
        self._daemon = daemon
        self._labels = {"source": "lookup", "account": setup.account, "region": setup.region}
        self._stand_in = stand_in
        self._first: float | None = None

    def __call__(self) -> bool:
        delivered = self._stand_in.delivered_at
        last = self._daemon.registry.get_sample_value(
            "breakglass_source_last_success_timestamp_seconds", self._labels
        )
        if delivered is None or last is None or last <= delivered.timestamp():
            return False
        if self._first is None:
            self._first = last
        return last > self._first


async def _dedup_check(
    daemon: Daemon, setup: DemoSetup, stand_in: CloudTrailStandIn, settled: _LookupSettled
) -> Check:
    delivered = len(stand_in.delivered)
    counted = _events_total(daemon)
    name = "each event counted once"
    if not settled() or not await asyncio.to_thread(_queue_drained, setup):
        return Check(name, False, f"waiting for both sources to read all {delivered} records")
    return Check(
        name,
        counted == delivered,
        f"{delivered} records delivered twice each (EventBridge and LookupEvents); "
        f"breakglass_events_total sums to {counted:g}",
    )


def _events_total(daemon: Daemon) -> float:
    return sum(
        sample.value
        for metric in daemon.registry.collect()
        if metric.name == "breakglass_events"
        for sample in metric.samples
        if sample.name == "breakglass_events_total"
    )


def _queue_drained(setup: DemoSetup) -> bool:
    """No message waiting or in flight: the SQS source stored and deleted every one."""
    sqs = boto3.client("sqs", region_name=setup.region, endpoint_url=setup.endpoint_url)
    attributes = sqs.get_queue_attributes(
        QueueUrl=setup.pipeline.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in attributes.values())
