"""Verdicts as the store tests build them (the contract suite and the SQLite-only tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from watcher.model import Classification, Outcome, TrailEvent, Verdict

T0 = datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 1, 15, 0, tzinfo=UTC)
# Long enough that nothing a test stores at NOW is expired by the wall clock of a test run.
RETENTION = timedelta(days=3650)


def verdict(
    event_id: str,
    *,
    principal: str = "bg-admin",
    classification: Classification = "unexpected",
    outcome: Outcome = "success",
    at: datetime = T0,
    session: str | None = None,
    exercise: str | None = None,
    shared: str | None = None,
    raw: dict[str, Any] | None = None,
) -> Verdict:
    event = TrailEvent(
        event_id=event_id,
        event_time=at,
        account="123456789012",
        region="us-east-1",
        event_name="AssumeRole",
        event_source="sts.amazonaws.com",
        identity={},
        raw=raw or {},
        session_name="break-glass-exercise-alice",
        source_ip="203.0.113.5",
        shared_event_id=shared,
    )
    return Verdict(
        event, principal, classification, outcome, exercise=exercise, session_key=session
    )


def keys(verdicts: list[Verdict]) -> list[str]:
    return [v.event.dedup_key for v in verdicts]


def big_batch(n: int, prefix: str = "e") -> list[tuple[Verdict, str]]:
    """``n`` events over 40 sessions of two principals; every third a drill."""
    return [
        (
            verdict(
                f"{prefix}{i}",
                principal=f"p{i % 2}",
                classification="drill" if i % 3 == 0 else "unexpected",
                exercise="q" if i % 3 == 0 else None,
                at=T0 + timedelta(seconds=i),
                session=f"ASIA{i % 40}",
            ),
            "lookup",
        )
        for i in range(n)
    ]
