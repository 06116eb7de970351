"""The SQS source end to end: a real EventBridge rule → SQS queue in moto, real aiobotocore."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
from conftest import RecordingObserver, RecordingSink

from watcher.aws import AwsClients
from watcher.emulator.infra import Pipeline, create_pipeline, deliver
from watcher.emulator.records import api_call_record, assumed_role_identity, iam_user_identity
from watcher.errors import StoreError
from watcher.model import Principal, Rules
from watcher.sources.retry import Backoff
from watcher.sources.sqs import EventBridgeSettings, SqsSource, queue_account

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = Rules(
    principals=(
        Principal("bg-admin", "role", ACCOUNT, iam_names=("break-glass-admin",), arn=ROLE),
    ),
    exercises=(),
)
FAST = Backoff(base=0.01, cap=0.05)


def _session_call(event_id: str) -> dict[str, Any]:
    return api_call_record(
        identity=assumed_role_identity(ROLE, "drill", "ASIASESSION000000001"),
        event_name="ListBuckets",
        event_source="s3.amazonaws.com",
        account=ACCOUNT,
        event_time=T0,
        event_id=event_id,
    )


def _decoy(event_id: str) -> dict[str, Any]:
    return api_call_record(
        identity=iam_user_identity(ACCOUNT, "developer"),
        event_name="ListBuckets",
        event_source="s3.amazonaws.com",
        account=ACCOUNT,
        event_time=T0,
        event_id=event_id,
    )


def _sqs(endpoint: str) -> Any:
    return boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)


def _queued(endpoint: str, queue_url: str) -> int:
    """Messages in the queue, visible or in flight."""
    attributes = _sqs(endpoint).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _source(
    endpoint: str,
    pipeline: Pipeline,
    sink: RecordingSink,
    observer: RecordingObserver,
    wait_seconds: int = 1,
) -> SqsSource:
    settings = EventBridgeSettings(
        queue_url=pipeline.queue_url, region="us-east-1", wait_seconds=wait_seconds
    )
    return SqsSource(AwsClients(endpoint), settings, sink, observer, backoff=FAST)


async def _wait_for(done: Callable[[], bool], task: asyncio.Task[None]) -> None:
    async with asyncio.timeout(10):
        while not done():
            await asyncio.sleep(0.02)
            if task.done():
                task.result()


async def _run_until(source: SqsSource, done: Callable[[], bool]) -> float:
    """Run ``source`` until ``done()``, then stop it; returns how long stopping took."""
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await _wait_for(done, task)
    finally:
        stop.set()
        began = time.monotonic()
        await asyncio.wait_for(task, timeout=5)
    return time.monotonic() - began


async def test_break_glass_events_are_stored_then_deleted_malformed_ones_kept(
    moto_endpoint: str, sink: RecordingSink, observer: RecordingObserver
) -> None:
    pipeline = create_pipeline(moto_endpoint, RULES)
    deliver(moto_endpoint, _session_call("bg-1"))
    deliver(moto_endpoint, _decoy("decoy"))
    _sqs(moto_endpoint).send_message(QueueUrl=pipeline.queue_url, MessageBody='{"detail": 42')
    source = _source(moto_endpoint, pipeline, sink, observer, wait_seconds=20)

    stopping = await _run_until(source, lambda: bool(sink.event_ids and observer.malformed_seen))

    assert sink.event_ids == ["bg-1"]
    assert sink.batches[0][1:] == ("eventbridge", {})
    [(source_name, where, reason)] = observer.malformed_seen
    assert source_name == "eventbridge" and "sqs message" in where and "not JSON" in reason
    assert ("eventbridge", ACCOUNT, "us-east-1") in observer.successes
    assert observer.errors == []
    assert _queued(moto_endpoint, pipeline.queue_url) == 1  # only the malformed one is left
    assert stopping < 2  # the 20 s long poll in flight was abandoned


async def test_a_message_with_good_and_bad_records_is_stored_and_kept(
    moto_endpoint: str, sink: RecordingSink, observer: RecordingObserver
) -> None:
    pipeline = create_pipeline(moto_endpoint, RULES)
    body = json.dumps({"Records": [_session_call("good-in-bad"), {"eventID": "broken"}]})
    _sqs(moto_endpoint).send_message(QueueUrl=pipeline.queue_url, MessageBody=body)
    source = _source(moto_endpoint, pipeline, sink, observer)

    await _run_until(source, lambda: bool(observer.malformed_seen))

    assert sink.event_ids == ["good-in-bad"]
    assert _queued(moto_endpoint, pipeline.queue_url) == 1


async def test_nothing_is_deleted_when_the_sink_fails(
    moto_endpoint: str, sink: RecordingSink, observer: RecordingObserver
) -> None:
    pipeline = create_pipeline(moto_endpoint, RULES)
    deliver(moto_endpoint, _session_call("bg-1"))
    deliver(moto_endpoint, _session_call("bg-2"))
    sink.failing = StoreError("disk full")
    source = _source(moto_endpoint, pipeline, sink, observer)

    await _run_until(source, lambda: sink.calls >= 1)

    assert sink.event_ids == []
    assert _queued(moto_endpoint, pipeline.queue_url) == 2


async def test_a_malformed_message_ends_in_the_dead_letter_queue_counted_once(
    moto_endpoint: str, sink: RecordingSink, observer: RecordingObserver
) -> None:
    pipeline = create_pipeline(moto_endpoint, RULES, max_receive_count=2, visibility_timeout=0)
    _sqs(moto_endpoint).send_message(QueueUrl=pipeline.queue_url, MessageBody="not json")
    source = _source(moto_endpoint, pipeline, sink, observer)

    await _run_until(source, lambda: _queued(moto_endpoint, pipeline.dlq_url) == 1)

    assert len(observer.malformed_seen) == 1
    assert _queued(moto_endpoint, pipeline.queue_url) == 0
    assert sink.calls == 0


async def test_a_failed_delete_is_counted_and_does_not_stop_the_source(
    moto_endpoint: str, sink: RecordingSink, observer: RecordingObserver
) -> None:
    pipeline = create_pipeline(moto_endpoint, RULES)
    deliver(moto_endpoint, _session_call("bg-1"))

    class PurgingSink(RecordingSink):
        """Stores, then the first batch's messages vanish before the delete (their handles
        become invalid)."""

        async def __call__(self, *args: Any) -> None:
            await super().__call__(*args)
            if self.calls == 1:
                await asyncio.to_thread(
                    _sqs(moto_endpoint).purge_queue, QueueUrl=pipeline.queue_url
                )

    purging = PurgingSink()
    stop = asyncio.Event()
    task = asyncio.create_task(_source(moto_endpoint, pipeline, purging, observer).run(stop))
    await _wait_for(lambda: bool(observer.errors), task)
    assert purging.event_ids == ["bg-1"]
    assert observer.errors == [("eventbridge", ACCOUNT, "us-east-1", "other")]

    # The source kept going: an event sent after the failure is read and deleted.
    await asyncio.to_thread(deliver, moto_endpoint, _session_call("bg-2"))
    await _wait_for(lambda: "bg-2" in purging.event_ids, task)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert _queued(moto_endpoint, pipeline.queue_url) == 0
    assert len(observer.errors) == 1


async def test_queue_errors_are_counted_by_kind_and_retried(
    moto_endpoint: str, sink: RecordingSink, observer: RecordingObserver
) -> None:
    missing = Pipeline(
        queue_url=f"{moto_endpoint}/{ACCOUNT}/no-such-queue",
        queue_arn="",
        dlq_url="",
        dlq_arn="",
        rule_name="",
        rule_arn="",
        region="us-east-1",
    )
    await _run_until(
        _source(moto_endpoint, missing, sink, observer), lambda: len(observer.errors) >= 3
    )
    assert {e[3] for e in observer.errors} == {"other"}

    unreachable = RecordingObserver()
    await _run_until(
        _source("http://127.0.0.1:9", missing, sink, unreachable),
        lambda: len(unreachable.errors) >= 2,
    )
    assert {e[3] for e in unreachable.errors} == {"network"}
    assert unreachable.successes == []


def test_the_queue_account_comes_from_the_url() -> None:
    assert queue_account("https://sqs.eu-west-1.amazonaws.com/111122223333/bg-events") == (
        "111122223333"
    )
    assert queue_account("http://127.0.0.1:5000/123456789012/q") == "123456789012"
