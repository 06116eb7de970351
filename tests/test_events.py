"""normalise and the input shapes: log files, EventBridge envelopes, LookupEvents, JSON lines."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    console_login_record,
    eventbridge_envelope,
    iam_user_identity,
    lookup_item,
    switch_role_record,
)
from watcher.errors import MalformedEventError
from watcher.events import (
    FileReadError,
    Malformed,
    Skipped,
    issued_access_key,
    iter_document,
    iter_file,
    normalise,
    parse_body,
)
from watcher.model import TrailEvent

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"
T = datetime(2026, 10, 1, 12, 5, tzinfo=UTC)


def user_call(n: int = 0, **kw: Any) -> dict[str, Any]:
    return api_call_record(
        identity=iam_user_identity(ACCOUNT, "alice", "AKIAALICE"),
        event_name="ListBuckets",
        event_source="s3.amazonaws.com",
        account=ACCOUNT,
        event_time=T,
        event_id=f"e{n}",
        **kw,
    )


def ids(items: list[TrailEvent | Malformed | Skipped]) -> list[str]:
    return [i.event_id if isinstance(i, TrailEvent) else f"bad:{i.where}" for i in items]


def test_normalise_api_call() -> None:
    event = normalise(user_call(1, error_code="AccessDenied", region="eu-west-1"), "x")
    assert event.event_id == "e1" and event.event_time == T and event.event_time.tzinfo == UTC
    assert (event.account, event.region) == (ACCOUNT, "eu-west-1")
    assert (event.event_name, event.event_source) == ("ListBuckets", "s3.amazonaws.com")
    assert event.error_code == "AccessDenied" and event.access_key_id == "AKIAALICE"
    assert event.session_name is None and event.mfa_used is False
    assert event.source_ip == "203.0.113.10" and event.event_type == "AwsApiCall"
    assert event.dedup_key == "e1"


def test_normalise_session_call() -> None:
    identity = assumed_role_identity(ROLE, "break-glass-exercise-1", "ASIAS", mfa=True)
    record = api_call_record(
        identity=identity,
        event_name="GetUser",
        event_source="iam.amazonaws.com",
        account=ACCOUNT,
        event_time=T,
    )
    event = normalise(record, "x")
    assert event.session_name == "break-glass-exercise-1" and event.mfa_used is True
    assert event.access_key_id == "ASIAS"


def test_normalise_assume_calls() -> None:
    caller = iam_user_identity(ACCOUNT, "alice", "AKIAALICE")
    record = assume_role_record(
        caller=caller,
        role_arn=ROLE,
        session_name="break-glass-exercise-2",
        event_time=T,
        mfa_serial=f"arn:aws:iam::{ACCOUNT}:mfa/alice",
        shared_event_id="shared-1",
    )
    event = normalise(record, "x")
    assert event.session_name == "break-glass-exercise-2" and event.mfa_used is True
    assert event.dedup_key == "shared-1" and event.access_key_id == "AKIAALICE"
    no_mfa = normalise(
        assume_role_record(caller=caller, role_arn=ROLE, session_name="s", event_time=T), "x"
    )
    assert no_mfa.mfa_used is False
    mfa_caller = assume_role_record(
        caller=assumed_role_identity(f"arn:aws:iam::{ACCOUNT}:role/ops", "o", "ASIAO", mfa=True),
        role_arn=ROLE,
        session_name="s",
        event_time=T,
    )
    assert normalise(mfa_caller, "x").mfa_used is True
    saml = assume_role_record(
        caller={"type": "SAMLUser", "accountId": ACCOUNT},
        role_arn=ROLE,
        session_name="jane",
        event_time=T,
        event_name="AssumeRoleWithSAML",
    )
    del saml["requestParameters"]["roleSessionName"]  # SAML: the name is in the assertion
    assert normalise(saml, "x").session_name == "jane"


def test_issued_access_key_of_assume_calls() -> None:
    caller = iam_user_identity(ACCOUNT, "alice", "AKIAALICE")
    issued = assume_role_record(
        caller=caller, role_arn=ROLE, session_name="s", event_time=T, issued_access_key_id="ASIA1"
    )
    assert issued_access_key(normalise(issued, "x")) == "ASIA1"
    denied = assume_role_record(
        caller=caller, role_arn=ROLE, session_name="s", event_time=T, error_code="AccessDenied"
    )
    assert issued_access_key(normalise(denied, "x")) is None
    assert issued_access_key(normalise(user_call(), "x")) is None
    for odd in ("text", {"credentials": "text"}, {"credentials": {"accessKeyId": 7}}):
        assert issued_access_key(normalise({**issued, "responseElements": odd}, "x")) is None


def test_normalise_console_login() -> None:
    identity = iam_user_identity(ACCOUNT, "break-glass-admin")
    ok = normalise(
        console_login_record(identity=identity, success=True, mfa_used=True, event_time=T), "x"
    )
    assert ok.mfa_used is True and ok.error_code is None and ok.access_key_id is None
    failed = normalise(
        console_login_record(identity=identity, success=False, mfa_used=False, event_time=T), "x"
    )
    assert failed.error_code == "Failed authentication" and failed.account == ACCOUNT
    switched = normalise(
        switch_role_record(
            user_name="bob", user_account=ACCOUNT, role_arn=ROLE, event_time=T, success=False
        ),
        "x",
    )
    assert switched.session_name == "bob" and switched.error_code == "Failure"


def test_account_falls_back_to_the_identity() -> None:
    record = user_call()
    del record["recipientAccountId"]
    assert normalise(record, "x").account == ACCOUNT


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.pop("eventID"), "eventID is missing"),
        (lambda r: r.update(eventID=7), "eventID is missing or not a non-empty string"),
        (lambda r: r.update(eventTime="yesterday"), "not an ISO 8601 time"),
        (lambda r: r.update(eventTime="2026-10-01T12:00:00"), "has no UTC offset"),
        (lambda r: r.update(eventTime="9999-12-31T23:59:59-05:00"), "outside the years"),
        (lambda r: r.update(eventTime=1700000000), "eventTime is missing or not a string"),
        (lambda r: r.pop("eventName"), "eventName"),
        (lambda r: r.update(eventSource=None), "eventSource"),
        (lambda r: r.update(userIdentity="alice"), "userIdentity is missing or not an object"),
        (
            lambda r: (r.pop("recipientAccountId"), r["userIdentity"].pop("accountId")),
            "recipientAccountId",
        ),
        (lambda r: r.update(awsRegion=["us-east-1"]), "awsRegion"),
        (lambda r: r.update(errorCode=403), "errorCode is not a string"),
        (lambda r: r["userIdentity"].update(accessKeyId=1), "accessKeyId is not a string"),
    ],
)
def test_malformed_records_are_located(change: Any, reason: str) -> None:
    record = user_call()
    change(record)
    with pytest.raises(MalformedEventError, match=r"^logs/a\.json: Records\[3\]: .*") as info:
        normalise(record, "logs/a.json: Records[3]")
    assert reason in str(info.value)


def test_ill_typed_fields_are_malformed_where_they_are_read() -> None:
    caller = iam_user_identity(ACCOUNT, "alice", "AKIAALICE")
    record = assume_role_record(caller=caller, role_arn=ROLE, session_name="s", event_time=T)
    record["requestParameters"] = "roleArn"
    with pytest.raises(MalformedEventError, match="requestParameters is not an object"):
        normalise(record, "x")
    login = console_login_record(identity=caller, success=True, mfa_used=True, event_time=T)
    login["additionalEventData"] = ["MFAUsed"]
    with pytest.raises(MalformedEventError, match="additionalEventData is not an object"):
        normalise(login, "x")
    # Parameters of calls that are not assumptions are never read, so never judged.
    assert normalise(user_call() | {"requestParameters": "x"}, "x").event_id == "e0"


def test_offsets_become_utc() -> None:
    event = normalise(user_call() | {"eventTime": "2026-10-01T14:05:00.250+02:00"}, "x")
    assert event.event_time == datetime(2026, 10, 1, 12, 5, 0, 250000, tzinfo=UTC)


def test_every_document_shape() -> None:
    good = [user_call(n) for n in range(3)]
    log = {"Records": [good[0], {"eventID": "broken"}, good[1]]}
    assert ids(list(iter_document(log, "f"))) == ["e0", "bad:f: Records[1]", "e1"]
    envelope = eventbridge_envelope(good[2])
    assert ids(list(iter_document(envelope, "q"))) == ["e2"]
    del envelope["detail-type"]  # spelling and presence of detail-type do not matter
    assert ids(list(iter_document(envelope, "q"))) == ["e2"]
    response = {
        "Events": [lookup_item(good[0]), {"EventId": "x"}, 5, {"CloudTrailEvent": "{"}],
        "NextToken": "t",
    }
    assert ids(list(iter_document(response, "l"))) == [
        "e0",
        "bad:l: Events[1]",
        "bad:l: Events[2]",
        "bad:l: Events[3]",
    ]
    assert ids(list(iter_document(lookup_item(good[1]), "i"))) == ["e1"]
    assert ids(list(iter_document(good[2], "r"))) == ["e2"]
    assert ids(list(iter_document([good[0], log], "a"))) == [
        "e0",
        "e0",
        "bad:a: [1]: Records[1]",
        "e1",
    ]
    assert ids(list(iter_document([[good[0]]], "a"))) == ["bad:a: [0]"]
    for odd in (None, 3, "text", {"Records": {"a": 1}}, {"detail": "x"}, {"Events": None}):
        (item,) = iter_document(odd, "o")
        assert isinstance(item, Malformed)


def test_parse_body() -> None:
    body = json.dumps(eventbridge_envelope(user_call(5)))
    assert ids(parse_body(body, "m1")) == ["e5"]
    assert ids(parse_body(body.encode(), "m1")) == ["e5"]
    (bad,) = parse_body(b"\x00not json", "m2")
    assert isinstance(bad, Malformed) and bad.where == "m2" and "not JSON" in bad.reason
    # orjson refuses integers over 64 bits; the record is still read.
    huge = json.dumps(eventbridge_envelope(user_call(6, request_parameters={"n": 10**30})))
    assert ids(parse_body(huge, "m3")) == ["e6"]


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_log_files_plain_gzip_pretty_and_minified(tmp_path: Path) -> None:
    log = {"Records": [user_call(0), user_call(1)]}
    minified = json.dumps(log, separators=(",", ":")).encode()
    pretty = json.dumps(log, indent=2).encode()
    for name, data, gz in [
        ("a.json.gz", minified, True),
        ("b.json", pretty, False),
        ("c.bin", pretty, True),  # gzip recognised by content, not name
        ("d.json", b"\xef\xbb\xbf" + minified + b"\n\n", False),
    ]:
        assert ids(list(iter_file(write(tmp_path / name, data, gz)))) == ["e0", "e1"], name


def test_json_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps(eventbridge_envelope(user_call(0))),
        "",
        json.dumps(lookup_item(user_call(1)), default=str),
        "{not json",
        json.dumps({"Records": [user_call(2), {"eventID": 1}]}),
        "\x00\xff",
        json.dumps(user_call(3)),
    ]
    data = "\n".join(lines).encode("utf-8", "surrogateescape")
    path = write(tmp_path / "events.jsonl.gz", data, gz=True)
    assert ids(list(iter_file(path))) == [
        "e0",
        "e1",
        f"bad:{path}:4",
        "e2",
        f"bad:{path}:5: Records[1]",
        f"bad:{path}:6",
        "e3",
    ]


def test_json_lines_with_a_bad_first_line(tmp_path: Path) -> None:
    data = "{oops\n" + json.dumps(user_call(1)) + "\n"
    path = write(tmp_path / "x.jsonl", data.encode())
    assert ids(list(iter_file(path))) == [f"bad:{path}:1", "e1"]


def test_pretty_document_after_blank_lines_and_empty_files(tmp_path: Path) -> None:
    pretty = b"\n\n" + json.dumps({"Records": [user_call(7)]}, indent=1).encode()
    assert ids(list(iter_file(write(tmp_path / "p.json", pretty)))) == ["e7"]
    assert list(iter_file(write(tmp_path / "empty.json", b""))) == []
    assert list(iter_file(write(tmp_path / "blank.json", b"\n  \n"))) == []


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FileReadError, match=r"missing\.json: cannot read"):
        list(iter_file(tmp_path / "missing.json"))
    lines = "\n".join(json.dumps(user_call(n)) for n in range(2000)).encode()
    truncated = gzip.compress(lines)[:-2000]
    path = write(tmp_path / "cut.json.gz", truncated)
    seen: list[TrailEvent | Malformed | Skipped] = []
    with pytest.raises(FileReadError, match=r"cut\.json\.gz"):
        seen.extend(iter_file(path))
    assert 0 < len(seen) < 2000 and all(isinstance(i, TrailEvent) for i in seen)


def test_lone_surrogates_are_replaced_so_every_string_can_be_written() -> None:
    body = json.dumps(eventbridge_envelope(user_call(8) | {"userAgent": "bad \ud800 name"}))
    (item,) = parse_body(body, "m")
    assert isinstance(item, TrailEvent) and item.event_id == "e8"
    assert item.raw["userAgent"] == "bad \ufffd\ufffd\ufffd name"
    (item,) = parse_body(body.replace('"e8"', '"e\\udfff"'), "m")
    assert isinstance(item, TrailEvent) and item.event_id.encode() == "e\ufffd\ufffd\ufffd".encode()
