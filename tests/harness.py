"""Runs the real daemon as a subprocess against the emulators, for end-to-end and fault tests.

Every process started here is stopped by the context manager, whatever the test did.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from watcher.emulator.infra import Pipeline, create_pipeline
from watcher.rules import load_rules

T = TypeVar("T")
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"
#: A role trust policy admitting the account's own principals (as a break-glass role's does).
ACCOUNT_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def write_config(
    folder: Path,
    *,
    endpoint_url: str,
    queue_url: str | None,
    rules: str,
    lookup: bool = True,
    extra: str = "",
    lookup_settings: str = "{interval: 1s, overlap: 20m, rate_per_second: 1.5}",
    state: str = "state.db",
    listen: str | None = "127.0.0.1:0",
    accounts: str = f'[{{id: "{ACCOUNT}"}}]',
) -> Path:
    """A config (and rules file) for a daemon on a free port with quick polling.

    ``listen=None`` leaves the bind address to the daemon's default; ``accounts`` is the
    config's ``accounts:`` value (YAML flow style)."""
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "rules.yaml").write_text(rules)
    sources = []
    if queue_url is not None:
        sources.append(
            f'  eventbridge: {{queue_url: "{queue_url}", region: us-east-1, wait_seconds: 1}}'
        )
    if lookup:
        sources.append(f"  lookup: {lookup_settings}")
    config = folder / "config.yaml"
    config.write_text(
        "\n".join(
            [
                "rules: rules",
                f"state: {state}",
                *([f"listen: {listen}"] if listen is not None else []),
                f"endpoint_url: {endpoint_url}",
                f"accounts: {accounts}",
                "sources:",
                *sources,
                "inventory: {enabled: false}",
                "detection_grace: 2s",
                extra,
            ]
        )
        + "\n"
    )
    return config


def write_pipeline_config(
    folder: Path,
    *,
    endpoint_url: str,
    rules: str,
    lookup: bool = True,
    visibility_timeout: int = 30,
    max_receive_count: int = 5,
) -> tuple[Path, Pipeline]:
    """:func:`write_config` with an EventBridge source reading a real queue: the rule (its
    pattern rendered from ``rules``) → queue (+ dead-letter queue) made in the emulator."""
    config = write_config(
        folder, endpoint_url=endpoint_url, queue_url=None, rules=rules, lookup=lookup
    )
    pipeline = create_pipeline(
        endpoint_url,
        load_rules(folder / "rules"),
        visibility_timeout=visibility_timeout,
        max_receive_count=max_receive_count,
    )
    source = f'queue_url: "{pipeline.queue_url}", region: us-east-1, wait_seconds: 1'
    config.write_text(
        config.read_text().replace("sources:\n", f"sources:\n  eventbridge: {{{source}}}\n")
    )
    return config, pipeline


@dataclass
class DaemonProcess:
    """A running ``breakglass-watcher run`` and ways to read it."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                lines.append({"message": raw})
        return lines

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=5) as answer:
                return int(answer.status), answer.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        _, body = self.get("/metrics")
        samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in self.metrics().items()
            if sample == name and wanted <= sample_labels
        )

    def events(self, limit: int = 1000) -> list[dict[str, Any]]:
        status, body = self.get(f"/api/events?limit={limit}")
        assert status == 200, body
        result: list[dict[str, Any]] = json.loads(body)
        return result

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)


def _listening_port(daemon: DaemonProcess) -> int:
    if daemon.proc.poll() is not None:
        raise AssertionError(f"daemon exited early:\n{daemon.log_path.read_text()}")
    for line in daemon.log_lines():
        if line.get("message") == "listening":
            return int(str(line["address"]).rsplit(":", 1)[1])
    return 0


@contextmanager
def running_daemon(
    config: Path,
    *,
    env: Mapping[str, str] | None = None,
    ready: bool = True,
    log_level: str = "INFO",
) -> Iterator[DaemonProcess]:
    """Start the daemon, wait until it serves (and is ready), stop it (SIGKILL if it hangs)."""
    log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", "--log-level", log_level, "run", "-c", str(config)],
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
    daemon = DaemonProcess(proc, log_path)
    try:
        daemon.port = wait_for(lambda: _listening_port(daemon), 30, "the daemon to listen")
        if ready:
            wait_for(lambda: daemon.get("/readyz")[0] == 200, 30, "the daemon to be ready")
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def send_to_queue(
    endpoint_url: str, queue_url: str, stream: list[dict[str, Any]], *, max_depth: int = 0
) -> None:
    """Put records on the queue as EventBridge envelopes, ten a call.

    Skips EventBridge's rule matching (tested on its own): moto's put_events is the bottleneck
    of high-volume tests. moto's SQS also recounts the whole queue on every send and receive,
    so with ``max_depth`` the sender waits while more messages than that are queued, keeping
    the test about the daemon rather than the emulator.
    """
    import boto3

    from watcher.emulator.records import eventbridge_envelope

    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint_url)

    def depth() -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    for first in range(0, len(stream), 10):
        if max_depth and first % 100 == 0:
            wait_for(lambda: depth() <= max_depth, 120, "the daemon to drain the queue")
        entries = [
            {"Id": str(n), "MessageBody": json.dumps(eventbridge_envelope(record))}
            for n, record in enumerate(stream[first : first + 10])
        ]
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)


# -- helpers of the fault, hostile-input and security tests (tests/test_faults.py, ...) -------

BREAK_GLASS_USER = "break-glass-admin"


def break_glass_rules(extra: str = "") -> str:
    """A role and a user principal (``bg-role``, ``bg-user``), no exercise, plus ``extra``."""
    return f"""
principals:
  - name: bg-role
    match: {{role_arn: "{ROLE_ARN}"}}
  - name: bg-user
    match: {{user_name: {BREAK_GLASS_USER}}}
    account: "{ACCOUNT}"
{extra}"""


def user_calls(
    ids: Iterable[int], at: Callable[[int], datetime], *, keys: int = 10, tag: str = "call"
) -> list[dict[str, Any]]:
    """API calls of the break-glass IAM user, one per number in ``ids``: event id
    ``{tag}-{n}``, event time ``at(n)``, made with one of ``keys`` access keys (sessions)."""
    from watcher.emulator.records import api_call_record, iam_user_identity

    return [
        api_call_record(
            identity=iam_user_identity(ACCOUNT, BREAK_GLASS_USER, f"AKIABREAKGLASS{n % keys:06d}"),
            event_name="ListUsers",
            event_source="iam.amazonaws.com",
            account=ACCOUNT,
            event_time=at(n),
            event_id=f"{tag}-{n}",
        )
        for n in ids
    ]


def stored_event_ids(state: Path) -> list[str]:
    """Every event id in a state file, as the daemon stored it (read-only; the daemon may run)."""
    with closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as db:
        return [row[0] for row in db.execute("SELECT event_id FROM events")]


def queue_depth(endpoint_url: str, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint_url)
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def debian_binary(name: str) -> str:
    """Path of a program from Debian's ``prometheus`` package (``.ci/run`` installs it).

    Missing: the test is skipped, except on CI (``CI=true``), where it fails.
    """
    import shutil

    import pytest

    path = shutil.which(name)
    if path is None:
        reason = f"{name} not installed (apt-get install --no-install-recommends prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
