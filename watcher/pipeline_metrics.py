"""Metrics of the drift checks and queues (``watcher/pipeline.py``), in the watcher's registry.

Each run replaces every series: a check or queue no longer configured disappears.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from watcher.pipeline import PipelineReport


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.check = Gauge(
            "breakglass_pipeline_check",
            "1 ok, 0 failing; the reason is in the log and in audit.",
            ["check", "account", "region", "resource"],
            registry=registry,
        )
        self.messages = Gauge(
            "breakglass_queue_messages",
            "Messages in the queue (visible, in flight and delayed).",
            ["queue"],
            registry=registry,
        )
        self.oldest_age = Gauge(
            "breakglass_queue_oldest_message_age_seconds",
            "Age of the queue's oldest message (CloudWatch ApproximateAgeOfOldestMessage).",
            ["queue"],
            registry=registry,
        )

    def show(self, report: PipelineReport) -> None:
        for gauge in (self.check, self.messages, self.oldest_age):
            gauge.clear()
        for c in report.checks:
            self.check.labels(c.check, c.account, c.region, c.resource).set(1 if c.ok else 0)
        for q in report.queues:
            self.messages.labels(q.queue).set(q.messages)
            if q.oldest_age_seconds is not None:
                self.oldest_age.labels(q.queue).set(q.oldest_age_seconds)
