"""Poison records: one record no window computation can hold never costs its batch.

Issue 12: a break-glass record with an ``eventTime`` near year 1 or 9999 made classification
raise ``OverflowError``; the whole SQS batch failed on every delivery and its good events ended
in the dead-letter queue. Such times are now malformed at normalisation (years 2000-2100), the
classifier raises only MalformedEventError, and the daemon's sink classifies event by event.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from harness import (
    ACCOUNT,
    break_glass_rules,
    running_daemon,
    user_calls,
    wait_for,
    write_pipeline_config,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.classify import Classifier
from watcher.daemon import Daemon
from watcher.emulator.records import api_call_record, eventbridge_envelope, iam_user_identity
from watcher.emulator.server import Emulator
from watcher.errors import MalformedEventError
from watcher.events import Malformed, normalise, parse_body
from watcher.model import Exercise, Principal, Rules, TrailEvent
from watcher.settings import Config

USER = Principal("bg-user", "user", ACCOUNT, iam_names=("break-glass-admin",))
RECURRING = Exercise(
    "weekly",
    principals=("bg-user",),
    timezone="Pacific/Kiritimati",  # UTC+14: the largest offset, the nearest to overflow
    schedule="0 9 * * 1",
    duration=timedelta(hours=4),
)
RULES = Rules((USER,), (RECURRING,))


def user_record(event_time: str, event_id: str = "e-1") -> dict[str, object]:
    record = api_call_record(
        identity=iam_user_identity(ACCOUNT, "break-glass-admin", "AKIAEXAMPLE0000000001"),
        event_name="ListUsers",
        event_source="iam.amazonaws.com",
        account=ACCOUNT,
        event_time=datetime(2026, 1, 1, tzinfo=UTC),
        event_id=event_id,
    )
    record["eventTime"] = event_time
    return record


@pytest.mark.parametrize(
    "event_time",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "1999-12-31T23:59:59Z",
        "2101-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2100-12-31T23:00:00-05:00",  # 2101 in UTC
    ],
)
def test_times_aws_cannot_produce_are_malformed_at_normalisation(event_time: str) -> None:
    [result] = parse_body(json.dumps(user_record(event_time)), "body")
    assert isinstance(result, Malformed)
    assert result.reason == (
        f"eventTime {event_time!r} is outside the years 2000-2100: no record AWS can produce"
    )


@pytest.mark.parametrize("event_time", ["2000-01-01T00:00:00Z", "2100-12-31T23:59:59Z"])
def test_the_years_at_the_edges_are_classified(event_time: str) -> None:
    verdict = Classifier(RULES).classify(normalise(user_record(event_time), "body"))
    assert verdict is not None and verdict.principal == "bg-user"


def test_the_classifier_raises_only_malformed_for_a_time_it_cannot_place() -> None:
    event = normalise(user_record("2026-01-01T00:00:00Z"), "body")
    for far in (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)):
        with pytest.raises(MalformedEventError, match="cannot be placed in the windows of"):
            Classifier(RULES).classify(replace(event, event_time=far))


@settings(max_examples=300, deadline=None)
@given(
    when=st.datetimes(timezones=st.timezones())
    | st.datetimes(min_value=datetime(1999, 12, 25), max_value=datetime(2101, 1, 5)).map(
        lambda t: t.replace(tzinfo=UTC)
    )
)
def test_fuzzed_event_times_are_classified_or_malformed_never_an_exception(
    when: datetime,
) -> None:
    try:
        text = when.isoformat()
    except ValueError:  # a zone hypothesis chose cannot name this instant
        return
    [result] = parse_body(json.dumps(user_record(text)), "body")
    if isinstance(result, TrailEvent):
        assert 2000 <= result.event_time.year <= 2100
        verdict = Classifier(RULES).classify(result)
        assert verdict is not None and verdict.classification in ("drill", "unexpected")
    else:
        assert "eventTime" in result.reason


async def test_the_sink_counts_an_event_it_cannot_classify_and_stores_the_rest(
    tmp_path: Path,
) -> None:
    config = Config(rules_path=tmp_path, state_path=tmp_path / "state.db", accounts=())
    daemon = Daemon(config, RULES)
    await daemon.store.open()
    try:
        good = normalise(user_record("2026-01-01T00:00:00Z", "good"), "body")
        # A record past normalisation's year check (a defence in depth): built directly.
        poison = replace(good, event_id="poison", event_time=datetime.min.replace(tzinfo=UTC))
        await daemon.sink([poison, good], "eventbridge", {})
        stored = [e["event_id"] for e in await daemon.store.recent_events(10)]
    finally:
        await daemon.store.close()
    assert stored == ["good"]
    sample = daemon.registry.get_sample_value
    assert sample("breakglass_events_malformed_total", {"source": "eventbridge"}) == 1
    assert (
        sample(
            "breakglass_events_total",
            {"principal": "bg-user", "classification": "unexpected", "outcome": "success"},
        )
        == 1
    )


def test_a_poison_record_in_an_sqs_batch_costs_only_itself(
    tmp_path: Path, emulator: Emulator
) -> None:
    config, pipeline = write_pipeline_config(
        tmp_path, endpoint_url=emulator.endpoint_url, rules=break_glass_rules(), lookup=False
    )
    now = datetime.now(UTC) - timedelta(minutes=1)
    good = user_calls(range(8), lambda _: now, tag="good")
    poison = [
        user_record("0001-01-01T00:00:00Z", "poison-year-1"),
        user_record("9999-12-31T23:59:59Z", "poison-year-9999"),
    ]
    batch = [good[0], poison[0], *good[1:5], poison[1], *good[5:]]
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=emulator.endpoint_url)
    sqs.send_message_batch(
        QueueUrl=pipeline.queue_url,
        Entries=[
            {"Id": str(n), "MessageBody": json.dumps(eventbridge_envelope(record))}
            for n, record in enumerate(batch)
        ],
    )
    with running_daemon(config) as daemon:
        wait_for(
            lambda: (
                daemon.metric("breakglass_events_total") == 8
                and daemon.metric("breakglass_events_malformed_total", source="eventbridge") == 2
            ),
            what="the eight good events stored and the two poison records counted",
        )
        assert sorted(e["event_id"] for e in daemon.events()) == sorted(
            str(r["eventID"]) for r in good
        )
        reasons = [
            line["reason"]
            for line in daemon.log_lines()
            if line.get("message") == "malformed event"
        ]
        assert sorted(reasons) == [
            "eventTime '0001-01-01T00:00:00Z' is outside the years 2000-2100: "
            "no record AWS can produce",
            "eventTime '9999-12-31T23:59:59Z' is outside the years 2000-2100: "
            "no record AWS can produce",
        ]
        assert daemon.get("/readyz")[0] == 200
