"""Hostile bodies cannot be amplified into logs (issue 12, point 8).

One warning per malformed record, joined into one line and repeated at every redelivery,
turned 2.5 MB of bodies into 196 MB of logs. Here a 250 KB message of 2 000 malformed records is
redelivered until the queue moves it to the dead-letter queue: its problems are logged once,
in a few hundred bytes, counted once, and the good event sent beside it is counted once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
from harness import (
    break_glass_rules,
    queue_depth,
    running_daemon,
    user_calls,
    wait_for,
    write_pipeline_config,
)

from watcher.emulator.records import eventbridge_envelope
from watcher.emulator.server import Emulator
from watcher.sources.sqs import summarise


def test_a_summary_is_bounded_whatever_the_problems() -> None:
    problems = [f"Records[{n}]: eventID {'x' * 5000!r} is bad" for n in range(2000)]
    summary = summarise(problems)
    assert len(summary) < 3 * 200 + 40
    assert summary.endswith("; and 1997 more")
    assert summarise(["one", "two"]) == "one; two"


def test_a_hostile_message_is_logged_once_however_often_it_comes_back(
    tmp_path: Path, emulator: Emulator
) -> None:
    config, pipeline = write_pipeline_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        rules=break_glass_rules(),
        lookup=False,
        visibility_timeout=1,
        max_receive_count=4,
    )
    hostile = json.dumps({"Records": [{"eventID": "e" * 100, "x": n} for n in range(2000)]})
    assert 200_000 < len(hostile) < 256 * 1024
    [good] = user_calls([1], lambda _: datetime.now(UTC) - timedelta(minutes=1))
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=emulator.endpoint_url)
    sqs.send_message_batch(
        QueueUrl=pipeline.queue_url,
        Entries=[
            {"Id": "hostile", "MessageBody": hostile},
            {"Id": "good", "MessageBody": json.dumps(eventbridge_envelope(good))},
        ],
    )
    with running_daemon(config) as daemon:
        wait_for(
            lambda: queue_depth(emulator.endpoint_url, pipeline.dlq_url) == (1, 0),
            timeout=60,
            what="the hostile message to reach the dead-letter queue after 4 receives",
        )
        assert daemon.metric("breakglass_events_total") == 1
        assert daemon.metric("breakglass_events_malformed_total", source="eventbridge") == 1
        log = daemon.log_path.read_text()
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        about = [line for line in lines if "malformed" in line.get("message", "")]
        assert [line["message"] for line in about] == [
            "malformed message left for the dead-letter queue",
            "malformed event",
        ]
        assert about[0]["problems"] == 2000
        assert about[0]["reason"].endswith("; and 1997 more")
        assert len(log.encode()) < 10_000  # the whole log, for 4 receives of 250 KB
