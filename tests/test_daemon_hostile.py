"""Hostile input at the daemon level: bodies sent through SQS and records served by the
LookupEvents emulator to the real daemon (a subprocess).

Each generated input carries the outcome it must have, known by construction (a required field
broken, a valid break-glass record with hostile content elsewhere, a valid record of someone
else, not JSON at all): every one is counted as malformed, or as a break-glass event, or
dropped as not break-glass, exactly once, also after LookupEvents re-reads it; the daemon never
crashes, its loop never stalls (``/healthz`` answers quickly throughout) and a good event sent
beside the hostile ones is never lost. SQS bodies stay within what SQS accepts: valid XML
characters (raw, or JSON-escaped like lone surrogates and control characters), at most 256 KiB.

The parser's own property tests are in tests/test_events_hostile.py and the rule files' in
tests/test_rules.py; this file is about the running daemon.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import boto3
import pytest
from harness import (
    ACCOUNT,
    DaemonProcess,
    break_glass_rules,
    queue_depth,
    running_daemon,
    user_calls,
    wait_for,
    write_pipeline_config,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from watcher.emulator.infra import Pipeline
from watcher.emulator.records import api_call_record, eventbridge_envelope, iam_user_identity
from watcher.emulator.server import Emulator

pytestmark = pytest.mark.slow  # the daemon as a subprocess under hostile input

Outcome = Literal["malformed", "event", "ignored"]
MAX_BODY = 256 * 1024  # bytes: SQS's classic limit (moto takes up to 1 MiB)
HEALTHZ_LIMIT = 1.0  # seconds: /healthz must answer faster than this throughout

# -- generated inputs ---------------------------------------------------------------------

# What SQS accepts raw: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
XML_TEXT = st.text(
    st.characters(min_codepoint=0x20, exclude_categories=["Cs"], exclude_characters="\ufffe\uffff")
    | st.sampled_from("\t\n\r"),
    max_size=40,
)
# Anything, JSON-escaped into the body: lone surrogates, NUL and other control characters.
ANY_TEXT = st.text(max_size=40) | st.sampled_from(["\ud800", "x\udfffy", "\x00", "\x1b[31m"])


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=25,
    )


VALUES = {True: json_values(XML_TEXT), False: json_values(ANY_TEXT)}
NOT_A_STRING = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.sampled_from("ab"), st.integers(), max_size=2)
)
NOT_A_TIME = NOT_A_STRING | st.sampled_from(["", "yesterday", "2026-10-01T12:00:00", "12:00"])
REQUIRED_TEXT = ("eventID", "eventName", "eventSource", "awsRegion")
STRICT_OPTIONAL = ("sourceIPAddress", "errorCode", "eventType", "sharedEventID")
# Fields the watcher neither requires nor types: anything may be there.
UNCHECKED = (
    "userAgent",
    "requestID",
    "eventVersion",
    "readOnly",
    "managementEvent",
    "eventCategory",
    "tlsDetails",
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "resources",
)


def deep(depth: int) -> Any:
    node: Any = "bottom"
    for _ in range(depth):
        node = {"a": node}
    return node


@dataclass(frozen=True)
class Case:
    """One hostile input and what it must become; ``make(event_id)`` renders it."""

    outcome: Outcome
    kind: str
    make: Callable[[str], Any] = field(repr=False)


def record(event_id: str, user: str = "break-glass-admin") -> dict[str, Any]:
    return api_call_record(
        identity=iam_user_identity(ACCOUNT, user, "AKIAHOSTILE"),
        event_name="ListUsers",
        event_source="iam.amazonaws.com",
        account=ACCOUNT,
        event_time=datetime.now(UTC) - timedelta(seconds=5),
        event_id=event_id,
    )


@st.composite
def broken_record(draw: st.DrawFn, for_lookup: bool) -> Case:
    """A break-glass record with one field the watcher needs missing or of the wrong type."""
    keys: tuple[str, ...] = REQUIRED_TEXT + STRICT_OPTIONAL
    if not for_lookup:  # the emulator needs these to file the record
        keys += ("eventTime", "userIdentity", "accountIds")
    key = draw(st.sampled_from(keys))
    remove = not for_lookup and key in (*REQUIRED_TEXT, "eventTime", "userIdentity")
    remove = remove and draw(st.booleans())
    if key in REQUIRED_TEXT:
        value = draw(NOT_A_STRING | st.just(""))
    elif key == "eventTime":
        value = draw(NOT_A_TIME)
    elif key == "userIdentity":
        value = draw(NOT_A_STRING.filter(lambda v: not isinstance(v, dict)))
    else:
        value = draw(NOT_A_STRING.filter(lambda v: v is not None))

    def make(event_id: str) -> dict[str, Any]:
        r = record(event_id)
        if key == "accountIds":
            del r["recipientAccountId"]
            del r["userIdentity"]["accountId"]
        elif remove:
            del r[key]
        else:
            r[key] = value
        return r

    return Case("malformed", f"broken {key}", make)


@st.composite
def hostile_but_valid(
    draw: st.DrawFn, raw_unicode: bool, huge_up_to: int, for_lookup: bool = False
) -> Case:
    """A valid record (the break-glass user's, or someone else's) with hostile content where
    the watcher does not look: odd types, deep nesting, huge and strange strings."""
    values = VALUES[raw_unicode]
    # The emulator files a record under its resources: those stay well-formed for it.
    unchecked = [k for k in UNCHECKED if not (for_lookup and k == "resources")]
    changes = draw(st.dictionaries(st.sampled_from(unchecked), values, max_size=4))
    extra = draw(
        st.dictionaries(
            (XML_TEXT if raw_unicode else ANY_TEXT).map(lambda k: "x-" + k), values, max_size=3
        )
    )
    nesting = draw(st.integers(min_value=0, max_value=300))
    huge = draw(st.integers(min_value=0, max_value=huge_up_to))
    mine = draw(st.booleans())

    def make(event_id: str) -> dict[str, Any]:
        r = record(event_id, "break-glass-admin" if mine else "someone-else")
        r.update(changes)
        r.update(extra)
        if nesting:
            r["requestParameters"] = deep(nesting)
        if huge:
            r["userAgent"] = "x" * huge
        return r

    return Case("event" if mine else "ignored", "valid", make)


def envelope_body(r: dict[str, Any], raw_unicode: bool) -> str:
    envelope = {
        "version": "0",
        "id": "hostile",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "detail": r,
    }
    return json.dumps(envelope, ensure_ascii=not raw_unicode)


@st.composite
def sqs_case(draw: st.DrawFn) -> Case:
    kind = draw(
        st.sampled_from(["broken", "valid", "not json", "not a document", "bad detail", "cut"])
    )
    raw = draw(st.booleans())
    if kind == "broken":
        case = draw(broken_record(for_lookup=False))
        return Case(case.outcome, case.kind, lambda i: envelope_body(case.make(i), raw))
    if kind == "valid":
        case = draw(hostile_but_valid(raw, huge_up_to=200_000))
        return Case(case.outcome, case.kind, lambda i: envelope_body(case.make(i), raw))
    if kind == "not json":
        junk = draw(XML_TEXT)
        return Case("malformed", kind, lambda _: "}" + junk)
    if kind == "not a document":
        value = draw(
            st.one_of(
                json_values(ANY_TEXT).filter(lambda v: not isinstance(v, dict | list)),
                st.lists(st.integers() | ANY_TEXT, max_size=5),
                st.dictionaries(ANY_TEXT.map(lambda k: "k-" + k), json_values(ANY_TEXT)),
            )
        )
        return Case("malformed", kind, lambda _: json.dumps(value))
    if kind == "bad detail":
        detail = draw(NOT_A_STRING.filter(lambda v: not isinstance(v, dict)))
        return Case(
            "malformed", kind, lambda _: json.dumps({"source": "aws.iam", "detail": detail})
        )
    cut = draw(st.floats(min_value=0.0, max_value=0.99))
    return Case(
        "malformed",
        kind,
        lambda i: (body := envelope_body(record(i), raw))[: max(1, int(len(body) * cut))],
    )


@st.composite
def lookup_case(draw: st.DrawFn) -> Case:
    if draw(st.booleans()):
        return draw(broken_record(for_lookup=True))
    case = hostile_but_valid(False, huge_up_to=60_000, for_lookup=True)
    return draw(case.filter(lambda c: c.outcome == "event"))


# -- the daemon under attack --------------------------------------------------------------


@dataclass
class Target:
    """The module's daemon, its inputs' emulator and queue, and what it must have counted."""

    daemon: DaemonProcess
    emulator: Emulator
    pipeline: Pipeline
    expected: dict[str, int] = field(
        default_factory=lambda: {"events": 0, "sqs_malformed": 0, "lookup_malformed": 0}
    )
    ids: Iterator[int] = field(default_factory=itertools.count)
    slowest_healthz: float = 0.0


class HealthProbe:
    """Asks /healthz every 50 ms on a thread; remembers the slowest answer."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.slowest = 0.0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            began = time.monotonic()
            try:
                status, _ = self.daemon.get("/healthz")
            except OSError:
                status = 0
            self.slowest = max(self.slowest, time.monotonic() - began)
            self.failures += status != 200

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def target(moto_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One daemon for the module (both sources), started on an emptied emulator."""
    moto_emulator.reset()
    folder = tmp_path_factory.mktemp("hostile")
    # Malformed messages stay in the queue for the redrive policy: after two receives they
    # move to the dead-letter queue, which keeps moto's (depth-bound) SQS quick.
    config, pipeline = write_pipeline_config(
        folder,
        endpoint_url=moto_emulator.endpoint_url,
        rules=break_glass_rules(),
        visibility_timeout=3,
        max_receive_count=2,
    )
    with running_daemon(config) as daemon:
        yield Target(daemon, moto_emulator, pipeline)
        assert daemon.proc.poll() is None, "the daemon died"
        assert not [line for line in daemon.log_lines() if "exception" in line]


def counts(daemon: DaemonProcess) -> dict[str, int]:
    return {
        "events": int(daemon.metric("breakglass_events_total")),
        "sqs_malformed": int(
            daemon.metric("breakglass_events_malformed_total", source="eventbridge")
        ),
        "lookup_malformed": int(
            daemon.metric("breakglass_events_malformed_total", source="lookup")
        ),
    }


def attack(target: Target, sqs: list[Case], lookup: list[Case]) -> None:
    """Send the cases and a good event on each path; check that every one is accounted for."""
    daemon, emulator = target.daemon, target.emulator
    client = boto3.client("sqs", region_name="us-east-1", endpoint_url=emulator.endpoint_url)
    good = [Case("event", "good", lambda i: envelope_body(record(i), False))]
    with HealthProbe(daemon) as probe:
        for case in [*good, *sqs]:
            body = case.make(f"hostile-{next(target.ids)}")
            assert len(body.encode()) <= MAX_BODY, case.kind
            client.send_message(QueueUrl=target.pipeline.queue_url, MessageBody=body)
            target.expected["events"] += case.outcome == "event"
            target.expected["sqs_malformed"] += case.outcome == "malformed"
        for case in [Case("event", "good", record), *lookup]:
            emulator.lookup.add(case.make(f"hostile-{next(target.ids)}"), region="us-east-1")
            target.expected["events"] += case.outcome == "event"
            target.expected["lookup_malformed"] += case.outcome == "malformed"
        try:
            wait_for(lambda: counts(daemon) == target.expected, timeout=60, what="the counts")
        except AssertionError:
            pytest.fail(f"expected {target.expected}, counted {counts(daemon)}: {sqs}, {lookup}")
        # LookupEvents re-reads its overlap on every poll: nothing may count twice.
        calls = len(emulator.lookup.calls())
        wait_for(lambda: len(emulator.lookup.calls()) >= calls + 6, what="two more polls")
        dlq_url = target.pipeline.dlq_url

        def left_in_queues() -> int:
            return sum(queue_depth(emulator.endpoint_url, target.pipeline.queue_url)) + sum(
                queue_depth(emulator.endpoint_url, dlq_url)
            )

        # Only the malformed messages are kept (for the dead-letter queue); all else deleted.
        wait_for(
            lambda: left_in_queues() == target.expected["sqs_malformed"],
            what="only malformed messages kept",
        )
        assert counts(daemon) == target.expected
    assert daemon.proc.poll() is None
    assert probe.failures == 0
    assert probe.slowest < HEALTHZ_LIMIT, f"/healthz took {probe.slowest:.2f}s"


@settings(
    max_examples=4,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],  # no shrinking: each example drives a live daemon
    suppress_health_check=list(HealthCheck),
)
@given(
    sqs=st.lists(sqs_case(), min_size=12, max_size=20),
    lookup=st.lists(lookup_case(), min_size=3, max_size=8),
)
def test_generated_hostile_input_is_each_accounted_for_once(
    target: Target, sqs: list[Case], lookup: list[Case]
) -> None:
    attack(target, sqs, lookup)


def test_the_biggest_and_deepest_bodies(target: Target) -> None:
    """The limits: 256 KiB bodies (junk, 3-byte characters, a valid break-glass record),
    nesting 100 000 deep (past every parser's recursion limit) and 5 000 deep inside a
    record, and a 256 KiB record from LookupEvents."""

    def sized(i: str) -> str:
        r = record(i)
        body = envelope_body(r, False)
        r["userAgent"] = "x" * (MAX_BODY - len(body) + len(r["userAgent"]))
        return envelope_body(r, False)

    def nested(i: str) -> str:
        r = record(i)
        text = envelope_body(r, False)
        return text.replace('"requestParameters": null', '"requestParameters": ' + deep_text(5000))

    sqs = [
        Case("malformed", "junk", lambda _: "}" + "x" * (MAX_BODY - 1)),
        Case("malformed", "unicode junk", lambda _: "}" + "\u20ac" * ((MAX_BODY - 1) // 3)),
        Case(
            "malformed", "deep array", lambda _: '{"detail": ' + "[" * 100_000 + "]" * 100_000 + "}"
        ),
        Case("malformed", "deep record", nested),
        Case("event", "256 KiB record", sized),
    ]

    def big(i: str) -> dict[str, Any]:
        return record(i) | {"userAgent": "y" * MAX_BODY}

    attack(target, sqs, [Case("event", "256 KiB record", big)])
    assert len(sized("x").encode()) == MAX_BODY


def deep_text(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_a_flood_of_good_events_still_arrives_whole(target: Target) -> None:
    """After all the hostile input, ordinary events still flow on both paths."""
    before = counts(target.daemon)["events"]
    stream = user_calls(range(40), lambda _: datetime.now(UTC) - timedelta(seconds=5), tag="after")
    client = boto3.client("sqs", region_name="us-east-1", endpoint_url=target.emulator.endpoint_url)
    for r in stream[:20]:
        client.send_message(
            QueueUrl=target.pipeline.queue_url, MessageBody=json.dumps(eventbridge_envelope(r))
        )
    for r in stream[20:]:
        target.emulator.lookup.add(r)
    wait_for(lambda: counts(target.daemon)["events"] == before + 40, what="40 more events")
    target.expected["events"] += 40
