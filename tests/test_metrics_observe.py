"""``observe`` updates only the label sets a commit touched, and leaves the exposition exactly
as a full refresh would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from watcher.metrics import WatcherMetrics
from watcher.model import Classification, Outcome, Principal, Rules, TrailEvent, Verdict
from watcher.store.base import CommitResult

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _verdict(n: int, principal: str, classification: Classification, outcome: Outcome) -> Verdict:
    event = TrailEvent(
        event_id=f"e{n}",
        event_time=NOW - timedelta(minutes=n),
        account="123456789012",
        region="us-east-1",
        event_name="ListUsers",
        event_source="iam.amazonaws.com",
        identity={},
        raw={},
    )
    return Verdict(event=event, principal=principal, classification=classification, outcome=outcome)


def _samples(metrics: WatcherMetrics) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
    """Every exposed sample (the order of series is not part of the exposition's meaning)."""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items()), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_observe_exposes_what_a_full_refresh_would() -> None:
    principals = tuple(
        Principal(name=f"p{i}", kind="role", account="123456789012", iam_names=(f"r{i}",))
        for i in range(20)
    )
    metrics = WatcherMetrics()
    metrics.init_labels(Rules(principals, ()), [])
    commits = [
        CommitResult([_verdict(1, "p3", "unexpected", "success")], [("p3", "unexpected")]),
        CommitResult(
            [_verdict(2, "p3", "drill", "failure"), _verdict(3, "p7", "drill", "success")]
        ),
        CommitResult([_verdict(4, "gone", "unexpected", "success")], [("gone", "unexpected")]),
        CommitResult([], [("p7", "drill")]),
    ]
    for result in commits:
        metrics.observe(result, "lookup", NOW)
    observed = _samples(metrics)
    metrics._show()  # the full refresh observe no longer does
    assert _samples(metrics) == observed
    sample = metrics.registry.get_sample_value
    assert (
        sample(
            "breakglass_events_total",
            {"principal": "p3", "classification": "drill", "outcome": "failure"},
        )
        == 1
    )
    assert sample("breakglass_sessions_total", {"principal": "p7", "classification": "drill"}) == 1
    assert (
        sample("breakglass_principal_last_drill_timestamp_seconds", {"principal": "p7"})
        == (NOW - timedelta(minutes=3)).timestamp()
    )
    assert not any(("principal", "gone") in labels for _, labels, _ in observed)
