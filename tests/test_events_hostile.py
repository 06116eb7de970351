"""Hostile input: whatever arrives is a Malformed or a TrailEvent, never an exception, and a good
record beside it is never lost."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.emulator.records import (
    assume_role_record,
    eventbridge_envelope,
    iam_user_identity,
    lookup_item,
)
from watcher.events import Malformed, Skipped, iter_document, iter_file, parse_body
from watcher.identify import PrincipalIndex, identify
from watcher.model import Principal, TrailEvent

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"
INDEX = PrincipalIndex(
    [
        Principal("role", "role", ACCOUNT, iam_names=("break-glass-admin-role",)),
        Principal("user", "user", ACCOUNT, iam_names=("break-glass-admin",)),
        Principal("root", "root", ACCOUNT),
        Principal("pattern", "user", ACCOUNT, name_pattern="*emergency*"),
    ]
)
T = datetime(2026, 10, 1, 12, 5, tzinfo=UTC)
HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def good(event_id: str) -> dict[str, Any]:
    return assume_role_record(
        caller=iam_user_identity(ACCOUNT, "alice", "AKIAALICE"),
        role_arn=ROLE,
        session_name="break-glass-exercise-1",
        event_time=T,
        event_id=event_id,
        issued_access_key_id="ASIAGOOD",
    )


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(
        ["", "AssumeRole", "IAMUser", "AssumedRole", "Root", ROLE, "2026-10-01T12:00:00Z"]
    ),
    st.sampled_from(["\ud800", "x\udfffy", "\ud83d\ude00", "\x00", "\u2028"]),  # lone surrogates
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "eventID",
    "eventTime",
    "eventName",
    "eventSource",
    "userIdentity",
    "recipientAccountId",
    "awsRegion",
    "errorCode",
    "errorMessage",
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "sourceIPAddress",
    "eventType",
    "sharedEventID",
]
IDENTITY_FIELDS = [
    "type",
    "arn",
    "accountId",
    "userName",
    "accessKeyId",
    "sessionContext",
    "invokedBy",
]


@st.composite
def hostile_records(draw: st.DrawFn) -> object:
    """A record damaged field by field, or no record at all."""
    if draw(st.booleans()):
        return draw(values)
    record: dict[str, Any] = json.loads(json.dumps(good("victim")))
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        if draw(st.booleans()):
            record.pop(key, None)
        else:
            record[key] = draw(values)
    identity = record.get("userIdentity")
    if isinstance(identity, dict):
        for key in draw(st.lists(st.sampled_from(IDENTITY_FIELDS), max_size=3)):
            identity[key] = draw(values)
    return record


def check(items: list[TrailEvent | Malformed | Skipped]) -> list[str]:
    """Every item is one of the two, and runs through identification; the good event ids."""
    found = []
    for item in items:
        assert isinstance(item, TrailEvent | Malformed)
        if isinstance(item, TrailEvent):
            assert item.event_time.tzinfo is UTC
            json.dumps(item.raw, ensure_ascii=False).encode()  # every string can be written
            identify(item, INDEX)
            found.append(item.event_id)
    return found


def scratch_file(suffix: str) -> Path:
    """A new empty file of this process's own (parallel test workers write beside it)."""
    handle, name = tempfile.mkstemp(prefix="hostile-", suffix=suffix)
    os.close(handle)
    return Path(name)


def deep(n: int) -> str:
    return '{"a":' * n + "1" + "}" * n


@pytest.mark.slow  # 150 generated examples
@given(hostile_records())
@HOSTILE
def test_hostile_envelopes(record: object) -> None:
    envelope = {
        "version": "0",
        "id": "x",
        "detail-type": "?",
        "source": "aws.sts",
        "detail": record,
    }
    items = parse_body(json.dumps(envelope), "q")
    assert len(items) == 1
    check(items)


@pytest.mark.slow  # 150 generated examples
@given(hostile_records(), st.booleans())
@HOSTILE
def test_hostile_lookup_items(record: object, as_text: bool) -> None:
    payload = json.dumps(record) if as_text else record
    response = {
        "Events": [
            lookup_item(good("a")),
            {"EventId": "x", "CloudTrailEvent": payload},
            lookup_item(good("b")),
        ]
    }
    for item in response["Events"]:
        item["EventTime"] = str(item.get("EventTime"))
    items = parse_body(json.dumps(response), "l")  # as a saved LookupEvents response reads
    assert len(items) == 3
    found = check(items)
    assert found[0] == "a" and found[-1] == "b"


@pytest.mark.slow  # 150 generated examples, each a file
@given(hostile_records(), st.booleans(), st.booleans())
@HOSTILE
def test_hostile_log_files(record: object, gz: bool, pretty: bool) -> None:
    log = {"Records": [good("a"), record, good("b")]}
    data = json.dumps(log, indent=2 if pretty else None).encode()
    path = scratch_file(".json")  # tmp_path is function-scoped
    try:
        path.write_bytes(gzip.compress(data) if gz else data)
        found = check(list(iter_file(path)))
    finally:
        path.unlink()
    assert found[0] == "a" and found[-1] == "b"


@given(st.binary(max_size=300), st.sampled_from(["line", "record", "lookup"]))
@HOSTILE
def test_raw_bytes_beside_good_records(junk: bytes, where: str) -> None:
    """Invalid UTF-8, control characters, half documents: in a JSON-lines file, inside a
    record's string in a log file, inside a LookupEvents item's JSON string."""
    good_a = json.dumps(good("a")).encode()
    good_b = json.dumps(eventbridge_envelope(good("b"))).encode()
    if where == "line":
        lines = [good_a, junk.replace(b"\n", b" "), good_b]
        items = _file_items(b"\n".join(lines))
    elif where == "record":
        broken = (
            json.dumps(good("victim"))
            .encode()
            .replace(b"alice", junk.replace(b'"', b"").replace(b"\\", b""))
        )
        items = _file_items(
            b'{"Records": ['
            + good_a
            + b", "
            + broken
            + b", "
            + json.dumps(good("b")).encode()
            + b"]}"
        )
    else:
        text = junk.decode("utf-8", "surrogateescape")
        response = {
            "Events": [{"CloudTrailEvent": json.dumps(good("a"))}, {"CloudTrailEvent": text}]
        }
        items = list(iter_document(response, "l")) + parse_body(good_b, "q")
    found = check(items)
    assert found[0] == "a" and found[-1] == "b"


def _file_items(data: bytes) -> list[TrailEvent | Malformed | Skipped]:
    path = scratch_file(".jsonl")
    try:
        path.write_bytes(data)
        return list(iter_file(path))
    finally:
        path.unlink()


def test_deep_nesting_huge_strings_and_big_bodies(tmp_path: Path) -> None:
    nested = json.dumps(good("victim"))[:-1] + ', "requestParameters": ' + deep(5000) + "}"
    huge = good("huge") | {"userAgent": "x" * (256 * 1024)}
    body = json.dumps(eventbridge_envelope(huge))
    assert len(body) > 256 * 1024
    assert check(parse_body(body, "q")) == ["huge"]
    (bad,) = parse_body(nested, "q")
    assert isinstance(bad, Malformed)
    log = (
        '{"Records": ['
        + json.dumps(good("a"))
        + ", "
        + nested
        + ", "
        + json.dumps(good("b"))
        + "]}"
    )
    for name, data in [
        ("one-line.json", log),
        ("pretty.json", log.replace('{"Records": [', '{\n"Records": [\n', 1)),
    ]:
        path = tmp_path / name
        path.write_text(data)
        items = list(iter_file(path))
        assert check(items) == ["a", "b"], name
        assert [type(i).__name__ for i in items] == ["TrailEvent", "Malformed", "TrailEvent"]
    truncated = tmp_path / "truncated.json"
    truncated.write_text(log[: log.index('"victim"')])
    assert check(list(iter_file(truncated))) == ["a"]
    lines = tmp_path / "lines.jsonl"
    lines.write_text(
        "\n".join([json.dumps(good("a")), "[" * 100000, deep(3000), json.dumps(good("b"))])
    )
    assert check(list(iter_file(lines))) == ["a", "b"]


@given(
    st.lists(st.sampled_from(["[", "]", "{", "}", ",", '"', "\\", "x", " ", "1", ":"]), max_size=60)
)
@HOSTILE
def test_broken_log_file_syntax_never_raises(tokens: list[str]) -> None:
    text = '{"Records": [' + json.dumps(good("a")) + "," + "".join(tokens)
    path = scratch_file(".json")
    try:
        path.write_text(text)
        found = check(list(iter_file(path)))
    finally:
        path.unlink()
    assert found[:1] == ["a"]
