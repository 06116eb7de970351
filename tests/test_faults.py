"""Fault injection against the real daemon (a subprocess) and the emulators on loopback.

Each test proves that the watcher keeps working, or says clearly that it cannot, and never
loses or double-counts a break-glass event: the AWS endpoint gone for a while, a throttling
storm, ``kill -9`` at random points, SIGTERM mid-stream, an unwritable state file or dir and a
full disk. SIGHUP with a broken rule file is covered by tests/test_daemon_e2e.py
(``test_sigterm_exits_zero_and_sighup_reloads``: old rules kept, reload metric 0, the problem
logged, a fixed file recovers); it is not repeated here.

Scaled to the CI budget (2 cores, moto's SQS at ~45 events/s end to end): see each docstring.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from harness import (
    ACCOUNT,
    DaemonProcess,
    break_glass_rules,
    queue_depth,
    running_daemon,
    send_to_queue,
    stored_event_ids,
    user_calls,
    wait_for,
    write_config,
)

from watcher.emulator.infra import Pipeline, create_pipeline, deliver_many
from watcher.emulator.server import Emulator, start_emulator
from watcher.rules import load_rules

pytestmark = (
    pytest.mark.slow
)  # fault injection against daemon subprocesses, minutes of outages and kills

LOOKUP_INTERVAL = 1.0
#: How long /readyz tolerates a source without a successful poll: the daemon's
#: ``3 x lookup interval + 1 min`` (EventBridge: 2 min).
LOOKUP_READY_TOLERANCE = 3 * LOOKUP_INTERVAL + 60
#: The issue asks for 60 s. A 60 s outage is shorter than /readyz's tolerance, so /readyz would
#: not change at all; 70 s is the shortest outage that lets it show.
OUTAGE_SECONDS = LOOKUP_READY_TOLERANCE + 7


def new_pipeline(emulator: Emulator, folder: Path, max_receive_count: int = 5) -> Pipeline:
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "rules.yaml").write_text(break_glass_rules())
    # A short visibility timeout: messages in flight at a kill come back quickly.
    return create_pipeline(
        emulator.endpoint_url,
        load_rules(folder / "rules"),
        visibility_timeout=5,
        max_receive_count=max_receive_count,
    )


def events_total(daemon: DaemonProcess) -> float:
    return daemon.metric("breakglass_events_total")


def source_up(daemon: DaemonProcess, source: str) -> float:
    return daemon.metric("breakglass_source_up", source=source)


def at_now(_: int) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=5)


def refusing(port: int) -> socket.socket:
    """Bind loopback ``port`` without listening: connections are refused, as by a stopped
    endpoint, and no other process (a parallel test) can take the port before it comes back."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the old TIME_WAITs
    sock.bind(("127.0.0.1", port))
    return sock


# -- the endpoint disappears --------------------------------------------------------------


def test_endpoint_outage_marks_sources_down_then_counts_everything_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The daemon's AWS endpoint (a second moto server sharing the emulator's state) is gone
    for OUTAGE_SECONDS while CloudTrail keeps recording: events reach the queue and
    LookupEvents through the first server meanwhile. Takes OUTAGE_SECONDS plus up to a minute:
    the SQS source's backoff after many failures waits up to 60 s (full jitter)."""
    pipeline = new_pipeline(emulator, tmp_path)
    endpoint = start_emulator()
    port = int(endpoint.endpoint_url.rsplit(":", 1)[1])
    queue_url = pipeline.queue_url.replace(emulator.endpoint_url, endpoint.endpoint_url)
    config = write_config(
        tmp_path,
        endpoint_url=endpoint.endpoint_url,
        queue_url=queue_url,
        rules=break_glass_rules(),
        lookup_settings=f"{{interval: {LOOKUP_INTERVAL:g}s, overlap: 20m, rate_per_second: 1.5}}",
    )
    before = user_calls(range(3), at_now, tag="before")
    during = user_calls(range(30), at_now, tag="during")
    held: socket.socket | None = None
    try:
        with running_daemon(config) as daemon:
            deliver_many(emulator.endpoint_url, before)
            wait_for(lambda: events_total(daemon) == 3, what="the events before the outage")

            endpoint.stop()
            held = refusing(port)
            gone = time.monotonic()
            wait_for(
                lambda: source_up(daemon, "eventbridge") == 0 and source_up(daemon, "lookup") == 0,
                timeout=40,
                what="both sources marked down",
            )
            deliver_many(emulator.endpoint_url, during[:20])  # EventBridge -> SQS
            for record in during[10:]:  # LookupEvents; ten of them reach both
                emulator.lookup.add(record)
            not_ready = False
            while time.monotonic() - gone < OUTAGE_SECONDS:
                assert daemon.proc.poll() is None, "the daemon died during the outage"
                health, _ = daemon.get("/healthz")
                assert health == 200
                status, body = daemon.get("/readyz")
                if status == 503:
                    checks = json.loads(body)["checks"]
                    assert checks[f"lookup:{ACCOUNT}:us-east-1"] is False
                    not_ready = True
                time.sleep(1)
            assert not_ready, "/readyz never reported the stale LookupEvents source"
            assert events_total(daemon) == 3
            assert daemon.metric("breakglass_source_errors_total", kind="network") > 0

            held.close()
            endpoint = start_emulator(port)
            wait_for(
                lambda: events_total(daemon) == 3 + 30,
                timeout=90,
                what="every event delivered during the outage",
            )
            wait_for(
                lambda: source_up(daemon, "eventbridge") == 1 and source_up(daemon, "lookup") == 1,
                what="both sources up again",
            )
            wait_for(lambda: daemon.get("/readyz")[0] == 200, what="/readyz to recover")
            calls = len(emulator.lookup.calls())
            wait_for(lambda: len(emulator.lookup.calls()) > calls + 4, what="more lookups")
            assert events_total(daemon) == 33
            assert queue_depth(emulator.endpoint_url, pipeline.queue_url) == (0, 0)
    finally:
        if held is not None:
            held.close()
        endpoint.stop()


# -- a throttling storm -------------------------------------------------------------------

CONFIGURED_RATE = 2.0


def most_calls_within(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside any interval of ``window`` seconds."""
    times = sorted(times)
    most = first = 0
    for last, t in enumerate(times):
        while t - times[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_throttling_storm_holds_the_rate_counts_throttles_and_loses_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    """LookupEvents allows half the configured rate (another reader shares the account's
    budget) and starts with a burst of forced throttles: about half the calls are refused for
    the whole run. The watcher still never calls faster than configured, counts every throttle
    and reads every page."""
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=None,
        rules=break_glass_rules(),
        lookup_settings=f"{{interval: 1s, overlap: 20m, rate_per_second: {CONFIGURED_RATE}}}",
    )
    emulator.lookup.rate_per_second = CONFIGURED_RATE / 2
    emulator.lookup.force_throttles(4)
    stream = user_calls(range(400), at_now)  # eight pages a poll
    for record in stream:
        emulator.lookup.add(record)
    with running_daemon(config, ready=False) as daemon:
        wait_for(lambda: events_total(daemon) == 400, timeout=90, what="every page read")
        emulator.lookup.rate_per_second = 100  # the storm ends
        calls = len(emulator.lookup.calls())
        wait_for(lambda: len(emulator.lookup.calls()) > calls + 6, what="polls after the storm")

        def throttled() -> int:
            return sum(c.outcome == "ThrottlingException" for c in emulator.lookup.calls())

        wait_for(
            lambda: (
                daemon.metric("breakglass_source_errors_total", source="lookup", kind="throttled")
                == throttled()
            ),
            what="every throttled call counted",
        )
        assert events_total(daemon) == 400
    times = [c.at for c in emulator.lookup.calls()]
    assert throttled() >= 10, "no storm happened"
    # A token bucket with burst 1 allows 1 + rate x W calls in any W seconds; one more for the
    # jitter between taking a token and the request reaching the emulator.
    for window in (1.0, 5.0, 20.0):
        assert most_calls_within(times, window) <= 2 + CONFIGURED_RATE * window, window


# -- kill -9 at random points -------------------------------------------------------------

KILL_SEED = 20261126
KILLS = 4
SQS_EVENTS = range(0, 2500)  # through EventBridge -> SQS
LOOKUP_EVENTS = range(2000, 10_000)  # through LookupEvents; 2000..2499 through both
LOOKUP_PER_SECOND = 200


def test_kill_9_at_random_points_counts_every_event_exactly_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    """10 000 events, 2 500 through SQS and 8 000 through LookupEvents (500 through both),
    flowing while the daemon is killed with SIGKILL at KILLS seeded random moments and
    restarted each time. The split keeps the run inside the CI budget: moto's SQS carries
    ~45 events/s, LookupEvents 50 a call (here at 10 calls/s, above AWS's 2, so that the
    stream takes ~40 s; the rate is not what this test is about). LookupEvents events carry
    times spread over the run, so each poll reads the newest ones (3 s overlap)."""
    pipeline = new_pipeline(emulator, tmp_path)
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=pipeline.queue_url,
        rules=break_glass_rules(),
        lookup_settings="{interval: 1s, overlap: 3s, rate_per_second: 10}",
    )
    emulator.lookup.rate_per_second = 10
    start = datetime.now(UTC) + timedelta(seconds=3)

    def at(n: int) -> datetime:
        return start + timedelta(seconds=max(0, n - LOOKUP_EVENTS[0]) / LOOKUP_PER_SECOND)

    records = {r["eventID"]: r for r in user_calls(range(10_000), at, keys=20)}
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
    rng = random.Random(KILL_SEED)
    kill_after = sorted(rng.uniform(3, 40) for _ in range(KILLS))
    counts_at_kill: list[float] = []
    began = time.monotonic()
    delivery.start()
    try:
        for moment in kill_after:
            with running_daemon(config) as daemon:
                time.sleep(max(0.0, moment - (time.monotonic() - began)))  # a moment, not a state
                counts_at_kill.append(events_total(daemon))
                daemon.signal(signal.SIGKILL)
                daemon.wait()
        with running_daemon(config) as daemon:
            wait_for(lambda: events_total(daemon) == 10_000, timeout=120, what="all 10 000 events")
            wait_for(
                lambda: queue_depth(emulator.endpoint_url, pipeline.queue_url) == (0, 0),
                what="the queue drained",
            )
            calls = len(emulator.lookup.calls())
            wait_for(lambda: len(emulator.lookup.calls()) > calls + 3, what="lookups re-read")
            assert events_total(daemon) == 10_000
            assert daemon.metric("breakglass_sessions_total") == 20
    finally:
        delivery.join(120)
    # Killed mid-stream (seed 20261126 gave 403, 893, 3713 and 5013 events counted).
    assert sum(0 < n < 10_000 for n in counts_at_kill) >= 2, counts_at_kill
    stored = stored_event_ids(config.parent / "state.db")
    assert len(stored) == 10_000
    assert set(stored) == set(records)


# -- SIGTERM mid-stream -------------------------------------------------------------------


def queued_event_ids(endpoint_url: str, queue_url: str) -> list[str]:
    """The event ids of every message in the queue (in-flight ones once they are back)."""
    wait_for(lambda: queue_depth(endpoint_url, queue_url)[1] == 0, what="in-flight messages back")
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint_url)
    ids: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300
        ).get("Messages", [])
        if not messages:
            return ids
        ids += [json.loads(m["Body"])["detail"]["eventID"] for m in messages]


def test_sigterm_mid_stream_exits_zero_and_deletes_only_what_was_stored(
    emulator: Emulator, tmp_path: Path
) -> None:
    """SIGTERM while a queue of 300 events is being worked through: exit 0 within 10 s; every
    event is either stored or still queued, and none that was stored is still queued (the
    batch in hand is stored, then deleted, then the daemon exits)."""
    pipeline = new_pipeline(emulator, tmp_path)
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=pipeline.queue_url,
        rules=break_glass_rules(),
        lookup=False,
    )
    stream = user_calls(range(300), at_now)
    send_to_queue(emulator.endpoint_url, pipeline.queue_url, stream)
    with running_daemon(config) as daemon:
        wait_for(lambda: events_total(daemon) >= 100, timeout=60, what="the queue being read")
        daemon.signal(signal.SIGTERM)
        asked = time.monotonic()
        assert daemon.wait(10) == 0
        took = time.monotonic() - asked
        assert any(line.get("message") == "stopped" for line in daemon.log_lines())
    stored = stored_event_ids(config.parent / "state.db")
    queued = queued_event_ids(emulator.endpoint_url, pipeline.queue_url)
    sent = {r["eventID"] for r in stream}
    assert 0 < len(stored) < len(sent)
    assert len(stored) == len(set(stored))
    assert set(stored).isdisjoint(queued)
    assert set(stored) | set(queued) == sent
    assert took < 10


# -- the state store cannot be written ----------------------------------------------------


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` (a file or an empty dir) unwritable: a mode change; for root, whom modes do
    not stop, the immutable attribute or (a dir) a read-only tmpfs over it; else skip."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)]
    if not path.is_dir() or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("running as root, and neither chattr +i nor a read-only mount works here")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def run_until_exit(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("what", ["dir", "file"])
def test_an_unwritable_state_file_or_dir_refuses_to_start(
    emulator: Emulator, tmp_path: Path, what: str
) -> None:
    """A watcher that cannot store would acknowledge nothing and count nothing: it must say
    so at once (exit 2, the path and the reason on stderr), not look healthy until the first
    break-glass event arrives."""
    pipeline = new_pipeline(emulator, tmp_path)
    (tmp_path / "state").mkdir()
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=pipeline.queue_url,
        rules=break_glass_rules(),
        lookup=False,
        state="state/state.db",
    )
    state = tmp_path / "state" / "state.db"
    if what == "file":  # a state file from an earlier run
        with running_daemon(config):
            pass
        for leftover in state.parent.glob("state.db-*"):
            leftover.unlink()
        target = state
    else:
        target = state.parent
    send_to_queue(emulator.endpoint_url, pipeline.queue_url, user_calls(range(3), at_now))
    with read_only(target):
        run = run_until_exit(config)
    assert run.returncode == 2, run.stderr
    assert f"state store {state}" in run.stderr
    assert "readonly" in run.stderr or "unable to open" in run.stderr, run.stderr
    # Nothing taken off the queue (a long poll the first run abandoned may hold them a while).
    assert sum(queue_depth(emulator.endpoint_url, pipeline.queue_url)) == 3


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at tmp_path/state; skipped where mounting is not permitted."""
    mount_point = tmp_path / "state"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (65536, 1):
            with suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


def test_a_full_disk_stops_acknowledging_reports_not_ready_and_recovers(
    emulator: Emulator, tmp_path: Path, small_disk: Path
) -> None:
    """The state file's disk fills up while the daemon runs (EventBridge source only, as in a
    deployment without LookupEvents). While full: every failure logged, /readyz 503 with the
    store check failing, nothing counted and nothing deleted from SQS. Space again: every
    event counted once, the queue drained, /readyz 200, also when the failed write was a
    periodic job's (a new principal's first sighting after SIGHUP) and no event followed."""
    pipeline = new_pipeline(emulator, tmp_path, max_receive_count=100)
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=pipeline.queue_url,
        rules=break_glass_rules(),
        lookup=False,
        state="state/state.db",
    )
    rules = tmp_path / "rules" / "rules.yaml"
    with running_daemon(config) as daemon:
        filler = fill(small_disk)

        # A periodic job fails: a principal added by SIGHUP is recorded as first seen.
        rules.write_text(
            break_glass_rules(
                "  - name: bg-new\n    match: {user_name: other-admin}\n"
                f'    account: "{ACCOUNT}"\n'
            )
        )
        daemon.signal(signal.SIGHUP)

        def store_check() -> bool | None:
            status, body = daemon.get("/readyz")
            return json.loads(body)["checks"]["store"] if status in (200, 503) else None

        wait_for(lambda: store_check() is False, what="the store check failing")
        filler.unlink()
        wait_for(lambda: store_check() is True, timeout=30, what="the store check recovering")

        filler = fill(small_disk)
        stream = user_calls(range(25), at_now)
        send_to_queue(emulator.endpoint_url, pipeline.queue_url, stream)

        def store_failures() -> int:
            return sum(
                line.get("message") == "could not store events; nothing acknowledged"
                for line in daemon.log_lines()
            )

        wait_for(lambda: store_failures() >= 2, timeout=60, what="two failed commits")
        status, body = daemon.get("/readyz")
        assert status == 503 and json.loads(body)["checks"]["store"] is False, body
        failure = next(
            line
            for line in daemon.log_lines()
            if line.get("message") == "could not store events; nothing acknowledged"
        )
        assert "full" in failure["error"] and str(small_disk) in failure["error"], failure
        assert events_total(daemon) == 0
        assert sum(queue_depth(emulator.endpoint_url, pipeline.queue_url)) == 25
        assert daemon.proc.poll() is None

        filler.unlink()
        wait_for(lambda: events_total(daemon) == 25, timeout=90, what="every event stored")
        wait_for(
            lambda: queue_depth(emulator.endpoint_url, pipeline.queue_url) == (0, 0),
            what="the queue drained",
        )
        wait_for(lambda: daemon.get("/readyz")[0] == 200, what="/readyz 200 again")
        assert daemon.metric("breakglass_principal_info", principal="bg-new") == 1
    assert sorted(stored_event_ids(small_disk / "state.db")) == sorted(r["eventID"] for r in stream)
