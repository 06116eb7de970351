"""What the running daemon exposes: no credentials or secrets anywhere it writes or serves, a
loopback-only default bind, and metric labels that only the rules can add to."""

from __future__ import annotations

import base64
import json
import random
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from harness import (
    ACCOUNT,
    BREAK_GLASS_USER,
    ROLE_ARN,
    DaemonProcess,
    break_glass_rules,
    running_daemon,
    wait_for,
    write_config,
)

from watcher.emulator import records
from watcher.emulator.infra import create_pipeline
from watcher.emulator.server import Emulator
from watcher.rules import load_rules
from watcher.settings import DEFAULT_LISTEN

pytestmark = pytest.mark.slow  # the daemon as a subprocess

RNG = random.Random(7)


def secret(n: int) -> str:
    return base64.b64encode(RNG.randbytes(n)).decode()


# Real-looking credentials: the daemon's own, and ones inside events.
ENV_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ASIA" + "".join(RNG.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=16)),
    "AWS_SECRET_ACCESS_KEY": secret(30),
    "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2Vj" + secret(300),
}
EVENT_SECRET_KEY = secret(30)
EVENT_SESSION_TOKEN = "FwoGZXIvYXdzE" + secret(200)
PASSWORD = "Tr0ub4dor&3-" + secret(9)
SECRETS = [
    ENV_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    ENV_CREDENTIALS["AWS_SESSION_TOKEN"],
    EVENT_SECRET_KEY,
    EVENT_SESSION_TOKEN,
    PASSWORD,
]


def now() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=5)


def setup_daemon(emulator: Emulator, folder: Path, **config: Any) -> tuple[Path, str]:
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "rules.yaml").write_text(break_glass_rules())
    pipeline = create_pipeline(
        emulator.endpoint_url, load_rules(folder / "rules"), visibility_timeout=5
    )
    path = write_config(
        folder,
        endpoint_url=emulator.endpoint_url,
        queue_url=pipeline.queue_url,
        rules=break_glass_rules(),
        **config,
    )
    return path, pipeline.queue_url


def send(emulator: Emulator, queue_url: str, stream: list[dict[str, Any]]) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=emulator.endpoint_url)
    for record in stream:
        sqs.send_message(
            QueueUrl=queue_url, MessageBody=json.dumps(records.eventbridge_envelope(record))
        )


def secret_events() -> list[dict[str, Any]]:
    """Break-glass events carrying secrets where CloudTrail (unredacted) would put them."""
    assume = records.assume_role_record(
        caller=records.iam_user_identity(ACCOUNT, "alice"),
        role_arn=ROLE_ARN,
        session_name="incident-7",
        event_time=now(),
        issued_access_key_id="ASIAISSUEDINEVENT001",
    )
    assume["responseElements"]["credentials"].update(
        secretAccessKey=EVENT_SECRET_KEY, sessionToken=EVENT_SESSION_TOKEN
    )
    password = records.api_call_record(
        identity=records.iam_user_identity(ACCOUNT, BREAK_GLASS_USER, "AKIABREAKGLASS000001"),
        event_name="ChangePassword",
        event_source="iam.amazonaws.com",
        account=ACCOUNT,
        event_time=now(),
        request_parameters={"oldPassword": PASSWORD[::-1], "newPassword": PASSWORD},
        read_only=False,
    )
    login = records.api_call_record(
        identity=records.iam_user_identity(ACCOUNT, BREAK_GLASS_USER, "AKIABREAKGLASS000001"),
        event_name="CreateLoginProfile",
        event_source="iam.amazonaws.com",
        account=ACCOUNT,
        event_time=now(),
        request_parameters={"userName": BREAK_GLASS_USER, "password": PASSWORD},
        error_code="PasswordPolicyViolation",
        error_message=f"Password {PASSWORD} does not conform to the account password policy",
        read_only=False,
    )
    # And a malformed one that holds a secret: it is logged as malformed, never quoted.
    broken = json.loads(json.dumps(assume)) | {"eventID": 42}
    return [assume, password, login, broken]


def exposed(daemon: DaemonProcess, state_dir: Path) -> dict[str, bytes]:
    """Everything the daemon serves, logs and stores."""
    places = {path: daemon.get(path)[1] for path in ("/metrics", "/api/events", "/readyz")}
    places["log"] = daemon.log_path.read_bytes()
    for file in state_dir.glob("state.db*"):
        places[file.name] = file.read_bytes()
    return places


@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
def test_no_credentials_or_secrets_in_metrics_events_logs_or_state(
    emulator: Emulator, tmp_path: Path, log_level: str
) -> None:
    config, queue_url = setup_daemon(emulator, tmp_path)
    stream = secret_events()
    with running_daemon(config, env=ENV_CREDENTIALS, log_level=log_level) as daemon:
        send(emulator, queue_url, stream)
        for record in stream[:3]:
            emulator.lookup.add(record)
        wait_for(lambda: daemon.metric("breakglass_events_total") == 3, what="three events")
        wait_for(
            lambda: daemon.metric("breakglass_events_malformed_total", source="eventbridge") == 1,
            what="the malformed one",
        )
        calls = len(emulator.lookup.calls())
        wait_for(lambda: len(emulator.lookup.calls()) > calls + 3, what="another poll")
        assert {e["event_name"] for e in daemon.events()} == {
            "AssumeRole",
            "ChangePassword",
            "CreateLoginProfile",
        }
        places = exposed(daemon, tmp_path)
    places["log"] = daemon.log_path.read_bytes()  # with the shutdown lines
    # What surrounds the secrets does get through (so the scan looks at the right places).
    assert b"incident-7" in places["/api/events"]
    assert b"ChangePassword" in places["log"] and b"ChangePassword" in places["state.db-wal"]
    for where, content in places.items():
        for value in SECRETS:
            for part in (value, value[:16], value[-16:]):
                assert part.encode() not in content, f"{where} holds a secret"


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the listening TCP sockets on ``port`` (Linux /proc)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port and len(address) == width:
                raw = bytes.fromhex(address)
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_the_default_bind_is_loopback_only(emulator: Emulator, tmp_path: Path) -> None:
    host, port = DEFAULT_LISTEN
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads the listening sockets from Linux's /proc/net/tcp")
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
    except OSError:
        pytest.skip(f"the default port {port} is in use on this machine")
    finally:
        probe.close()
    config, _ = setup_daemon(emulator, tmp_path, listen=None)
    assert "listen" not in config.read_text()
    with running_daemon(config) as daemon:
        assert daemon.port == port
        assert listening_addresses(port) == {host} == {"127.0.0.1"}
        status, _ = daemon.get("/healthz")
        assert status == 200


def series(daemon: DaemonProcess) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    return set(daemon.metrics())


def random_name(rng: random.Random) -> str:
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789-", k=12))


def test_label_values_come_only_from_the_rules(emulator: Emulator, tmp_path: Path) -> None:
    """Events from hundreds of random users, roles, sessions, accounts and addresses (break-glass
    ones among them) add no series: every label value is a rule's, the config's or the code's."""
    config, queue_url = setup_daemon(emulator, tmp_path)
    rng = random.Random(11)
    warm_up = [
        records.assume_role_record(
            caller=records.iam_user_identity(ACCOUNT, "alice"),
            role_arn=ROLE_ARN,
            session_name="first",
            event_time=now(),
        ),
        records.console_login_record(
            identity=records.iam_user_identity(ACCOUNT, BREAK_GLASS_USER),
            success=False,
            mfa_used=False,
            event_time=now(),
        ),
    ]
    flood: list[dict[str, Any]] = []
    names: list[str] = []
    for _ in range(60):
        account = "".join(rng.choices("0123456789", k=12))
        user, role, session = random_name(rng), random_name(rng), random_name(rng)
        address = f"198.51.100.{rng.randrange(256)}"
        names += [account, user, role, session, address]
        caller = records.iam_user_identity(account, user)
        flood += [
            records.assume_role_record(  # into the break-glass role, from anywhere
                caller=caller,
                role_arn=ROLE_ARN,
                session_name=session,
                event_time=now(),
                source_ip=address,
                error_code="AccessDenied",  # no session key for LookupEvents to follow
            ),
            records.api_call_record(  # someone else's role at work
                identity=records.assumed_role_identity(
                    f"arn:aws:iam::{account}:role/{role}", session, "ASIAOTHER"
                ),
                event_name=random_name(rng),
                event_source=f"{random_name(rng)}.amazonaws.com",
                account=account,
                event_time=now(),
                region=rng.choice(["eu-west-1", "ap-south-1", "us-east-1"]),
                source_ip=address,
            ),
            records.console_login_record(  # a stranger's failed sign-in
                identity=records.iam_user_identity(account, user),
                success=False,
                mfa_used=False,
                event_time=now(),
                source_ip=address,
            ),
        ]
    with running_daemon(config) as daemon:
        send(emulator, queue_url, warm_up)
        wait_for(lambda: daemon.metric("breakglass_events_total") == 2, what="the warm-up")
        before = series(daemon)
        send(emulator, queue_url, flood[:90])
        for record in flood[90:]:
            emulator.lookup.add(record)
        wait_for(lambda: daemon.metric("breakglass_events_total") == 2 + 60, what="the flood")
        calls = len(emulator.lookup.calls())
        wait_for(lambda: len(emulator.lookup.calls()) > calls + 3, what="another poll")
        assert daemon.metric("breakglass_sessions_total", principal="bg-role") == 61
        after = series(daemon)
        _, text = daemon.get("/metrics")
    assert after == before
    labels = {(k, v) for _, sample_labels in after for k, v in sample_labels}
    assert {v for k, v in labels if k == "principal"} == {"bg-role", "bg-user"}
    for name in names:
        assert name.encode() not in text
