"""SIGTERM ends the daemon within the grace period while AWS black-holes (issue 12, point 11).

An endpoint that accepts connections and never answers (a firewall dropping replies, a hung
proxy) held every AWS call for its 30 s read timeout, so a stop outlasted Docker's 10 s grace
period and the store's last batch risked a SIGKILL. Every call is now bounded (aws.py).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import ACCOUNT, break_glass_rules, running_daemon, wait_for, write_config

from watcher.aws import CONNECT_TIMEOUT, READ_TIMEOUT

GRACE = 10.0  # seconds: Docker's default stop timeout, the shortest of the deployments


@contextmanager
def black_hole() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP listener on loopback that accepts every connection and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], held
    finally:
        listener.close()
        thread.join(5)
        for connection in held:
            connection.close()


def test_sigterm_ends_the_daemon_in_time_while_every_endpoint_hangs(tmp_path: Path) -> None:
    assert CONNECT_TIMEOUT + READ_TIMEOUT < GRACE
    with black_hole() as (port, held):
        endpoint = f"http://127.0.0.1:{port}"
        config = write_config(
            tmp_path,
            endpoint_url=endpoint,
            queue_url=f"{endpoint}/{ACCOUNT}/breakglass-events",
            rules=break_glass_rules(),
        )
        config.write_text(
            config.read_text().replace("inventory: {enabled: false}", "inventory: {interval: 1h}")
        )
        credentials = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        with running_daemon(config, env=credentials, ready=False) as daemon:
            # SQS receive, LookupEvents and IAM calls all hang in the black hole.
            wait_for(lambda: len(held) >= 3, what="the daemon's calls to hang")
            assert daemon.get("/readyz")[0] == 503
            stopped_at = time.monotonic()
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(GRACE + 5) == 0
            took = time.monotonic() - stopped_at
            assert took < GRACE, f"took {took:.1f}s"
        lines = daemon.log_lines()
        assert lines[-1]["message"] == "stopped"
        assert all(line.get("level") != "error" or "exception" not in line for line in lines)
