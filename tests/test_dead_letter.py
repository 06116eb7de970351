"""The dead-letter queue as a second chance (issue 12, point 5).

Each crash before the store commit spends one receive, so a crash loop (or a store outage)
parks break-glass events in the dead-letter queue, uncounted. With
``sources.eventbridge.dead_letter_queue_url`` the watcher reads that queue too: what it can read
now is stored (de-duplicated with the main queue) and deleted; what it still cannot read stays
there and is counted.
"""

from __future__ import annotations

import json
import signal
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


def test_events_parked_in_the_dead_letter_queue_are_counted_once(
    tmp_path: Path, emulator: Emulator
) -> None:
    config, pipeline = write_pipeline_config(
        tmp_path, endpoint_url=emulator.endpoint_url, rules=break_glass_rules(), lookup=False
    )
    config.write_text(
        config.read_text().replace(
            "wait_seconds: 1}", f'wait_seconds: 1, dead_letter_queue_url: "{pipeline.dlq_url}"}}'
        )
    )
    before = datetime.now(UTC) - timedelta(minutes=1)
    first, parked = user_calls(range(2), lambda _: before)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=emulator.endpoint_url)

    def send(queue_url: str, *bodies: str) -> None:
        for body in bodies:
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    def envelope(record: dict[str, object]) -> str:
        return json.dumps(eventbridge_envelope(record))

    send(pipeline.queue_url, envelope(first))
    # What a crash loop leaves behind: a copy of an event also delivered, one only there,
    # and a body nobody can read.
    send(pipeline.dlq_url, envelope(first), envelope(parked), "not a CloudTrail record")
    with running_daemon(config) as daemon:
        wait_for(
            lambda: (
                daemon.metric("breakglass_events_total") == 2
                and daemon.metric("breakglass_events_malformed_total", source="eventbridge-dlq")
                == 1
            ),
            what="both events stored and the unreadable message counted",
        )
        wait_for(
            lambda: sum(queue_depth(emulator.endpoint_url, pipeline.dlq_url)) == 1,
            what="the readable messages deleted from the dead-letter queue",
        )
        assert sorted(e["event_id"] for e in daemon.events()) == sorted(
            [str(first["eventID"]), str(parked["eventID"])]
        )
        assert daemon.metric("breakglass_source_up", source="eventbridge-dlq") == 1
        assert any(
            line.get("message") == "malformed message left in the dead-letter queue"
            for line in daemon.log_lines()
        )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
