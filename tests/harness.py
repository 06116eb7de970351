"""Runs the real daemon as a subprocess against the emulators, for end-to-end and fault tests.

Every process started here is stopped by the context manager, whatever the test did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"


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
) -> Path:
    """A config (and rules file) for a daemon on a free port with quick polling."""
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "rules.yaml").write_text(rules)
    sources = []
    if queue_url is not None:
        sources.append(
            f'  eventbridge: {{queue_url: "{queue_url}", region: us-east-1, wait_seconds: 1}}'
        )
    if lookup:
        sources.append("  lookup: {interval: 1s, overlap: 20m, rate_per_second: 1.5}")
    config = folder / "config.yaml"
    config.write_text(
        "\n".join(
            [
                "rules: rules",
                "state: state.db",
                "listen: 127.0.0.1:0",
                f"endpoint_url: {endpoint_url}",
                f'accounts: [{{id: "{ACCOUNT}"}}]',
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
    config: Path, *, env: Mapping[str, str] | None = None, ready: bool = True
) -> Iterator[DaemonProcess]:
    """Start the daemon, wait until it serves (and is ready), stop it (SIGKILL if it hangs)."""
    log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", "run", "-c", str(config)],
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
