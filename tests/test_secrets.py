"""Secrets and key ids stay out of logs and the state file (issue 12, point 9).

The scrubber went by field name only, so a token inside XML, a ``b'…'`` repr or prose got
through; access key ids were logged and stored whole; a crafted ``eventID`` with a newline
could forge text log lines; the state file was created world-readable.
"""

from __future__ import annotations

import json
import logging
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import break_glass_rules, running_daemon, user_calls, wait_for, write_config

from watcher.emulator.server import Emulator
from watcher.keys import stored_key
from watcher.logs import JsonFormatter, TextFormatter, redact
from watcher.model import TrailEvent, Verdict
from watcher.store.sqlite import SqliteStore

KEY_ID = "ASIAQ3EXAMPLE7WXYZ12"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEAAaCXVzLWVhc3QtMSJHMEUCIQD" + "Ab9+/x" * 60 + "=="


@pytest.mark.parametrize(
    "wrap",
    [
        lambda v: f"<Credentials><AccessKeyId>{v}</AccessKeyId></Credentials>",
        lambda v: repr(f"payload {v} end".encode()),
        lambda v: f"the caller used {v}, then stopped.",
        lambda v: json.dumps({"opaque": v}),
    ],
    ids=["xml", "bytes-repr", "prose", "json"],
)
def test_values_are_scrubbed_by_shape_wherever_they_sit(wrap: object) -> None:
    for value, shown in ((KEY_ID, "ASIA…YZ12"), (SECRET, "[REDACTED]"), (TOKEN, "[REDACTED]")):
        text = wrap(value)  # type: ignore[operator]
        scrubbed = redact(text)
        assert value not in scrubbed and value[4:20] not in scrubbed, scrubbed
        assert shown in scrubbed


@pytest.mark.parametrize(
    "harmless",
    [
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",  # a SHA-1 digest: one case
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # rules digest
        "c0a80001-7c3b-4c2e-9a55-000000000004",  # an event id
        "arn:aws:iam::123456789012:role/break-glass-admin-role",
        "AKIAEXAMPLE",  # too short to be a key id
    ],
)
def test_what_only_looks_a_little_like_a_credential_stays(harmless: str) -> None:
    assert redact(f"value {harmless} here") == f"value {harmless} here"


def test_a_crafted_event_id_cannot_forge_a_text_log_line() -> None:
    forged = "e-1\n2026-12-02 06:00:00,000 INFO watcher.daemon: reloaded\x1b[2K"
    record = logging.LogRecord(
        "watcher.daemon", logging.WARNING, __file__, 1, "bad %s", (forged,), None
    )
    record.where = forged
    line = TextFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line
    assert "bad e-1\\n2026-12-02" in line and "where=e-1\\n2026" in line and "\\x1b[2K" in line
    assert json.loads(JsonFormatter().format(record))["where"] == forged  # JSON escapes itself


def test_a_traceback_in_a_text_log_is_indented() -> None:
    try:
        raise ValueError("boom\nINFO forged")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "watcher", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    lines = TextFormatter().format(record).splitlines()
    assert lines[0].endswith("ERROR watcher: failed")
    assert all(line.startswith("    ") for line in lines[1:])
    assert lines[-2:] == ["    ValueError: boom", "    INFO forged"]


def verdict(event_id: str, key: str) -> Verdict:
    event = TrailEvent(
        event_id,
        datetime(2026, 1, 1, tzinfo=UTC),
        "123456789012",
        "us-east-1",
        "ListUsers",
        "iam.amazonaws.com",
        {},
        raw={},
        access_key_id=key,
    )
    return Verdict(event, "bg-user", "unexpected", "success", session_key=key)


async def test_the_state_file_keeps_key_ids_masked_and_is_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state" / "watcher.db"
    twin = KEY_ID[:4] + "ZZZZZZZZZZZZ" + KEY_ID[-4:]  # same ends, another key
    store = SqliteStore(state)
    await store.open()
    try:
        result = await store.commit(
            [
                (verdict("e-1", KEY_ID), "lookup"),
                (verdict("e-2", KEY_ID), "lookup"),
                (verdict("e-3", twin), "lookup"),
            ],
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.parent.iterdir()}
    finally:
        await store.close()
    assert len(result.new_sessions) == 2  # the same key once, the twin apart
    assert modes == {"watcher.db": 0o600, "watcher.db-wal": 0o600, "watcher.db-shm": 0o600}
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
    data = b"".join(p.read_bytes() for p in state.parent.iterdir())
    assert KEY_ID.encode() not in data and twin.encode() not in data
    assert stored_key(KEY_ID).encode() in data and stored_key(KEY_ID).startswith("ASIA…YZ12#")


async def test_an_existing_world_readable_state_file_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "watcher.db"
    store = SqliteStore(state)
    await store.open()
    await store.close()
    state.chmod(0o644)
    await store.open()
    await store.close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


def test_the_daemon_neither_logs_nor_stores_key_ids_whole(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = write_config(
        tmp_path, endpoint_url=emulator.endpoint_url, queue_url=None, rules=break_glass_rules()
    )
    before = datetime.now(UTC) - timedelta(minutes=1)
    calls = user_calls(range(6), lambda _: before, keys=3)
    keys = sorted({str(c["userIdentity"]["accessKeyId"]) for c in calls})
    assert len(keys) == 3
    with running_daemon(config, log_level="DEBUG") as daemon:
        for record in calls:
            emulator.lookup.add(record)
        wait_for(lambda: daemon.metric("breakglass_events_total") == 6, what="six events")
        assert daemon.metric("breakglass_sessions_total") == 3
    written = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert all(key.encode() not in written for key in keys)
    assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600
