"""Start moto's server on loopback with the LookupEvents emulator installed (tests, demo)."""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

# moto reads where its recorder writes once, when it is first imported: point it at a file of
# this process before anything imports moto (else it is "moto_recording" in the working folder).
# Always this process's own file, never one inherited: pytest-xdist workers inherit the
# controller's environment, and two workers sharing one recording emptied each other's.
os.environ["MOTO_RECORDER_FILEPATH"] = str(
    Path(tempfile.gettempdir()) / f"breakglass-emulator-calls-{os.getpid()}.jsonl"
)

from watcher.emulator import dynamodb, iam
from watcher.emulator.calls import CallRecorder
from watcher.emulator.lookup import LookupEventStore, install


class Emulator:
    """A running moto server (IAM, STS, SQS, EventBridge, DynamoDB, … and LookupEvents)."""

    def __init__(
        self, server: Any, endpoint_url: str, lookup: LookupEventStore, iam_faults: iam.IamFaults
    ) -> None:
        self._server = server
        self.endpoint_url = endpoint_url
        self.lookup = lookup
        self.iam = iam_faults
        """Faults of IAM's GetAccountAuthorizationDetails (``emulator/iam.py``)."""
        self.calls = CallRecorder(endpoint_url)
        """Every signed AWS call made to the server while recording (``emulator/calls.py``)."""

    def reset(self) -> None:
        """Empty every moto backend and the LookupEvents store (faults, rate, delay too)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
        self.lookup.clear()
        self.iam.clear()
        self.calls.stop()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_emulator(port: int = 0) -> Emulator:
    """Start moto's ThreadedMotoServer on 127.0.0.1:``port`` (0: a free one)."""
    from moto.server import ThreadedMotoServer

    store = install()
    dynamodb.install()
    iam_faults = iam.install()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line a request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    return Emulator(server, f"http://{host}:{bound}", store, iam_faults)
