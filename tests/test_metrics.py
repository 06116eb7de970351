"""The metrics module, read back through the real exposition format and its parser."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from watcher.metrics import WatcherMetrics
from watcher.model import Classification, Exercise, Outcome, Principal, Rules, TrailEvent, Verdict
from watcher.store.base import CommitResult, Totals
from watcher.store.sqlite import SqliteStore

ACCOUNT = "123456789012"
T0 = datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=2)

ADMIN = Principal("bg-admin", "role", ACCOUNT, iam_names=("break-glass-admin-role",))
ROOT = Principal("root-prod", "root", ACCOUNT, max_days_between_drills=30)
FOUND = Principal("emergency-user", "user", ACCOUNT, origin="discovered")
QUARTERLY = Exercise(
    "quarterly", ("bg-admin",), schedule="0 14 1 1,4,7,10 *", duration=timedelta(hours=4)
)
ONE_OFF = Exercise("root-check", ("root-prod",), start=T0, end=T0 + timedelta(hours=1))
RULES = Rules((ADMIN, ROOT, FOUND), (QUARTERLY, ONE_OFF), digest="sha256:abc")
SOURCES = [
    ("eventbridge", ACCOUNT, "us-east-1"),
    ("lookup", ACCOUNT, "us-east-1"),
    ("lookup", ACCOUNT, "eu-central-1"),
    ("iam", ACCOUNT, "global"),
]

SRC = {"source", "account", "region"}
#: docs/design.md "Metrics", as first agreed: exposed name → (type, label names).
DESIGN = {
    "breakglass_events_total": ("counter", {"principal", "classification", "outcome"}),
    "breakglass_sessions_total": ("counter", {"principal", "classification"}),
    "breakglass_last_event_timestamp_seconds": ("gauge", {"principal", "classification"}),
    "breakglass_exercise_window_open": ("gauge", {"exercise"}),
    "breakglass_exercise_windows_total": ("counter", {"exercise", "result"}),
    "breakglass_exercise_next_window_start_timestamp_seconds": ("gauge", {"exercise"}),
    "breakglass_principal_last_drill_timestamp_seconds": ("gauge", {"principal"}),
    "breakglass_principal_drill_due_timestamp_seconds": ("gauge", {"principal"}),
    "breakglass_principal_info": ("gauge", {"principal", "kind", "origin"}),
    "breakglass_credential_check": ("gauge", {"principal", "check"}),
    "breakglass_access_key_age_seconds": ("gauge", {"principal", "key"}),
    "breakglass_source_up": ("gauge", SRC),
    "breakglass_source_last_success_timestamp_seconds": ("gauge", SRC),
    "breakglass_source_errors_total": ("counter", SRC | {"kind"}),
    "breakglass_detection_delay_seconds": ("histogram", {"source"}),
    "breakglass_rules_info": ("gauge", {"digest"}),
    "breakglass_config_last_reload_success": ("gauge", set()),
}
#: Added since (docs/design.md "Where the code stands apart from the original contract").
ADDED = {
    "breakglass_events_malformed_total": ("counter", {"source"}),
    # {account}, set by each inventory run: no series before the first.
    "breakglass_inventory_unwatched_principals": ("gauge", set()),
    "breakglass_leader": ("gauge", {"replica"}),
    "breakglass_source_stale_after_seconds": ("gauge", SRC),
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def verdict(
    event_id: str,
    principal: str = "bg-admin",
    classification: Classification = "unexpected",
    outcome: Outcome = "success",
    at: datetime = T0,
    session: str | None = None,
) -> Verdict:
    event = TrailEvent(
        event_id, at, ACCOUNT, "us-east-1", "AssumeRole", "sts.amazonaws.com", {}, raw={}
    )
    exercise = "quarterly" if classification == "drill" else None
    return Verdict(event, principal, classification, outcome, exercise, session_key=session)


def exposition(metrics: WatcherMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def samples(metrics: WatcherMetrics) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition(metrics))
        for s in family.samples
    }


def series(metrics: WatcherMetrics, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples(metrics).items() if n == name}


def value(metrics: WatcherMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def started(rules: Rules = RULES) -> WatcherMetrics:
    metrics = WatcherMetrics()
    metrics.init_labels(rules, SOURCES)
    return metrics


def fully_populated() -> WatcherMetrics:
    """Every metric with at least one sample."""
    metrics = started()
    metrics.observe(
        CommitResult([verdict("1", classification="drill")], [("bg-admin", "drill")]),
        "eventbridge",
        NOW,
    )
    metrics.set_window_state("quarterly", open_=True, next_start=T0 + timedelta(days=90))
    metrics.window_decided("quarterly", "detected")
    metrics.set_drill_due(ROOT, T0)
    metrics.set_credential_checks("emergency-user", {"mfa_device": True, "access_key_age": False})
    metrics.set_access_key_ages("emergency-user", {"AKIAEXAMPLE1": 86400.0})
    metrics.source_success("lookup", ACCOUNT, "us-east-1", NOW)
    metrics.set_stale_after({("lookup", ACCOUNT, "us-east-1"): 240.0})
    metrics.malformed("eventbridge")
    metrics.config_reloaded(True)
    metrics.set_leader("watcher-0:1", True)
    return metrics


def test_names_types_and_labels_are_exactly_design_md_plus_the_documented_additions() -> None:
    exposed: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(exposition(fully_populated())):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        exposed[name] = (family.type, labels)
    assert exposed == DESIGN | ADDED


def test_building_metrics_leaves_the_process_wide_created_switch_alone() -> None:
    """Only ``drop_created_series`` (called by each entry point) turns ``*_created`` off."""
    script = """
from prometheus_client import generate_latest
from watcher.metrics import WatcherMetrics, drop_created_series

metrics = WatcherMetrics()
metrics.malformed("eventbridge")
print(b"_created" in generate_latest(metrics.registry))
drop_created_series()
print(b"_created" in generate_latest(metrics.registry))
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.split() == ["True", "False"]


def test_every_known_label_set_starts_at_zero() -> None:
    metrics = started()
    events = series(metrics, "breakglass_events_total")
    assert len(events) == 3 * 2 * 2
    assert set(events.values()) == {0.0}
    assert len(series(metrics, "breakglass_sessions_total")) == 3 * 2
    windows = series(metrics, "breakglass_exercise_windows_total")
    assert windows == {
        frozenset({("exercise", e), ("result", r)}): 0.0
        for e in ("quarterly", "root-check")
        for r in ("detected", "missed")
    }
    assert set(series(metrics, "breakglass_exercise_window_open").values()) == {0.0}
    errors = series(metrics, "breakglass_source_errors_total")
    assert len(errors) == len(SOURCES) * 5
    assert set(errors.values()) == {0.0}
    assert len(series(metrics, "breakglass_source_up")) == len(SOURCES)
    # Only the sources that deliver events get a delay histogram and a malformed counter.
    assert {dict(k)["source"] for k in series(metrics, "breakglass_events_malformed_total")} == {
        "eventbridge",
        "lookup",
    }
    assert value(metrics, "breakglass_detection_delay_seconds_count", source="lookup") == 0.0
    assert series(metrics, "breakglass_principal_info") == {
        frozenset({("principal", "bg-admin"), ("kind", "role"), ("origin", "declared")}): 1.0,
        frozenset({("principal", "root-prod"), ("kind", "root"), ("origin", "declared")}): 1.0,
        frozenset(
            {("principal", "emergency-user"), ("kind", "user"), ("origin", "discovered")}
        ): 1.0,
    }
    assert value(metrics, "breakglass_rules_info", digest="sha256:abc") == 1.0
    # "Never" is absent, not 0: a 1970 timestamp would look like an overdue drill.
    assert series(metrics, "breakglass_principal_last_drill_timestamp_seconds") == {}
    assert series(metrics, "breakglass_principal_drill_due_timestamp_seconds") == {}


def test_observe_counts_new_events_sessions_times_and_delay() -> None:
    metrics = started()
    metrics.set_drill_due(ADMIN, T0 - timedelta(days=400))
    result = CommitResult(
        [
            verdict("1", classification="drill", at=T0, session="ASIA1"),
            verdict("2", classification="drill", outcome="failure", at=T0 - timedelta(hours=3)),
            verdict("3", principal="root-prod", at=T0 + timedelta(seconds=30)),
        ],
        [("bg-admin", "drill")],
    )
    metrics.observe(result, "lookup", NOW)
    labels = {"principal": "bg-admin", "classification": "drill"}
    assert value(metrics, "breakglass_events_total", **labels, outcome="success") == 1.0
    assert value(metrics, "breakglass_events_total", **labels, outcome="failure") == 1.0
    assert value(metrics, "breakglass_sessions_total", **labels) == 1.0
    assert value(metrics, "breakglass_last_event_timestamp_seconds", **labels) == T0.timestamp()
    last_drill = "breakglass_principal_last_drill_timestamp_seconds"
    assert value(metrics, last_drill, principal="bg-admin") == T0.timestamp()
    due = T0 + timedelta(days=ADMIN.max_days_between_drills)
    due_name = "breakglass_principal_drill_due_timestamp_seconds"
    assert value(metrics, due_name, principal="bg-admin") == due.timestamp()
    delay = "breakglass_detection_delay_seconds"
    assert value(metrics, f"{delay}_count", source="lookup") == 3.0
    assert value(metrics, f"{delay}_bucket", source="lookup", le="60.0") == 0.0
    assert value(metrics, f"{delay}_bucket", source="lookup", le="120.0") == 2.0  # 120 s, 90 s
    assert value(metrics, f"{delay}_bucket", source="lookup", le="21600.0") == 3.0


def test_label_values_come_only_from_the_rules() -> None:
    metrics = started()
    metrics.observe(CommitResult([verdict("1", principal="not-in-rules")], []), "lookup", NOW)
    metrics.set_credential_checks("not-in-rules", {"mfa_device": False})
    assert "not-in-rules" not in exposition(metrics)


def test_drill_due_counts_from_first_watched_until_a_drill() -> None:
    metrics = started()
    name = "breakglass_principal_drill_due_timestamp_seconds"
    metrics.set_drill_due(ROOT, T0)
    assert value(metrics, name, principal="root-prod") == (T0 + timedelta(days=30)).timestamp()
    drill_at = T0 + timedelta(days=10)
    metrics.observe(
        CommitResult([verdict("d", "root-prod", "drill", at=drill_at)], []), "lookup", NOW
    )
    due = value(metrics, name, principal="root-prod")
    assert due == (drill_at + timedelta(days=30)).timestamp()
    # A reload that changes max_days_between_drills moves the due time at once.
    stricter = Principal("root-prod", "root", ACCOUNT, max_days_between_drills=7)
    metrics.init_labels(Rules((ADMIN, stricter, FOUND), RULES.exercises, RULES.digest), SOURCES)
    due = value(metrics, name, principal="root-prod")
    assert due == (drill_at + timedelta(days=7)).timestamp()


def test_restore_sets_the_stored_totals_once() -> None:
    totals = Totals(
        events={("bg-admin", "unexpected", "success"): 7, ("gone", "drill", "success"): 2},
        sessions={("bg-admin", "unexpected"): 3},
        last_event={("bg-admin", "unexpected"): T0},
        last_drill={"root-prod": T0 - timedelta(days=1)},
        windows={("quarterly", "missed"): 4},
    )
    metrics = started()
    metrics.restore(totals)
    metrics.restore(totals)  # idempotent: no double counting
    labels = {"principal": "bg-admin", "classification": "unexpected"}
    assert value(metrics, "breakglass_events_total", **labels, outcome="success") == 7.0
    assert value(metrics, "breakglass_sessions_total", **labels) == 3.0
    assert value(metrics, "breakglass_last_event_timestamp_seconds", **labels) == T0.timestamp()
    assert (
        value(metrics, "breakglass_exercise_windows_total", exercise="quarterly", result="missed")
        == 4.0
    )
    last_drill = "breakglass_principal_last_drill_timestamp_seconds"
    assert value(metrics, last_drill, principal="root-prod") == (T0 - timedelta(days=1)).timestamp()
    assert "gone" not in exposition(metrics)
    metrics.observe(CommitResult([verdict("x")], []), "lookup", NOW)
    assert value(metrics, "breakglass_events_total", **labels, outcome="success") == 8.0


def test_a_reload_drops_removed_label_sets_and_restores_re_added_ones() -> None:
    metrics = started()
    metrics.observe(CommitResult([verdict("1", principal="root-prod")], []), "lookup", NOW)
    metrics.window_decided("root-check", "missed")
    metrics.set_credential_checks("root-prod", {"mfa_device": True})
    metrics.source_success("lookup", ACCOUNT, "eu-central-1", NOW)

    smaller = Rules((ADMIN, FOUND), (QUARTERLY,), digest="sha256:def")
    metrics.init_labels(smaller, SOURCES[:2])
    text = exposition(metrics)
    assert "root-prod" not in text
    assert "root-check" not in text
    assert "eu-central-1" not in text
    assert "iam" not in text
    assert "sha256:abc" not in text
    assert value(metrics, "breakglass_rules_info", digest="sha256:def") == 1.0

    metrics.init_labels(RULES, SOURCES)
    labels = {"principal": "root-prod", "classification": "unexpected", "outcome": "success"}
    assert value(metrics, "breakglass_events_total", **labels) == 1.0
    windows = "breakglass_exercise_windows_total"
    assert value(metrics, windows, exercise="root-check", result="missed") == 1.0
    assert (
        value(metrics, "breakglass_source_up", source="iam", account=ACCOUNT, region="global") == 0
    )


def test_credential_setters_replace_the_principals_series() -> None:
    metrics = started()
    metrics.set_access_key_ages("emergency-user", {"AKIA1": 10.0, "AKIA2": 20.0})
    metrics.set_access_key_ages("emergency-user", {"AKIA2": 30.0})
    assert series(metrics, "breakglass_access_key_age_seconds") == {
        frozenset({("principal", "emergency-user"), ("key", "AKIA2")}): 30.0
    }
    metrics.set_credential_checks("emergency-user", {"mfa_device": True, "login_profile": False})
    metrics.set_credential_checks("emergency-user", {"mfa_device": False})
    assert series(metrics, "breakglass_credential_check") == {
        frozenset({("principal", "emergency-user"), ("check", "mfa_device")}): 0.0
    }


def test_source_health() -> None:
    metrics = started()
    where = {"source": "lookup", "account": ACCOUNT, "region": "us-east-1"}
    metrics.source_success("lookup", ACCOUNT, "us-east-1", NOW)
    assert value(metrics, "breakglass_source_up", **where) == 1.0
    last = "breakglass_source_last_success_timestamp_seconds"
    assert value(metrics, last, **where) == NOW.timestamp()
    metrics.source_error("lookup", ACCOUNT, "us-east-1", "malformed")
    assert value(metrics, "breakglass_source_up", **where) == 1.0
    # A throttled call is retried: counted, but no failed poll (issue 13).
    metrics.source_error("lookup", ACCOUNT, "us-east-1", "throttled")
    assert value(metrics, "breakglass_source_up", **where) == 1.0
    assert value(metrics, "breakglass_source_errors_total", **where, kind="throttled") == 1.0
    metrics.source_error("lookup", ACCOUNT, "us-east-1", "network")
    assert value(metrics, "breakglass_source_up", **where) == 0.0
    assert value(metrics, last, **where) == NOW.timestamp()
    # The inventory reports only finished runs: a throttled run is a failed one.
    metrics.source_error("iam", ACCOUNT, "global", "throttled", poll_failed=True)
    assert (
        value(metrics, "breakglass_source_up", source="iam", account=ACCOUNT, region="global") == 0
    )


def test_each_source_is_eight_series_and_a_dropped_one_leaves_none() -> None:
    """The cardinality bound README states: 8 ``breakglass_source_*`` series per source
    (account-region), whatever happened to it."""

    def per_source() -> Counter[tuple[str, ...]]:
        return Counter(
            (labels["source"], labels["account"], labels["region"])
            for (name, key), _ in samples(metrics).items()
            if name.startswith("breakglass_source_") and (labels := dict(key))
        )

    metrics = started()
    for labels in SOURCES:
        metrics.source_success(*labels, NOW)
        metrics.source_error(*labels, "network")
    metrics.set_stale_after(dict.fromkeys(SOURCES, 300.0))
    assert per_source() == dict.fromkeys(SOURCES, 8)
    metrics.init_labels(RULES, SOURCES[:1])
    metrics.set_stale_after({SOURCES[0]: 300.0})
    assert per_source() == {SOURCES[0]: 8}
    metrics.init_labels(RULES, SOURCES)  # back: down, errors from 0, no last success yet
    source, account, region = SOURCES[1]
    where = {"source": source, "account": account, "region": region}
    assert value(metrics, "breakglass_source_errors_total", **where, kind="network") == 0.0
    assert value(metrics, "breakglass_source_up", **where) == 0.0
    last = "breakglass_source_last_success_timestamp_seconds"
    assert value(metrics, last, **where) is None


def test_window_state_and_reload_result() -> None:
    metrics = started()
    next_start = "breakglass_exercise_next_window_start_timestamp_seconds"
    metrics.set_window_state("root-check", open_=True, next_start=None)
    metrics.set_window_state("quarterly", open_=False, next_start=T0)
    assert value(metrics, "breakglass_exercise_window_open", exercise="root-check") == 1.0
    assert value(metrics, "breakglass_exercise_window_open", exercise="quarterly") == 0.0
    assert series(metrics, next_start) == {frozenset({("exercise", "quarterly")}): T0.timestamp()}
    metrics.config_reloaded(False)
    assert value(metrics, "breakglass_config_last_reload_success") == 0.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "watcher.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_a_restart_changes_no_metric(store: SqliteStore) -> None:
    before = started()
    batches = [
        [verdict("1", classification="drill", session="ASIA1"), verdict("2", session="ASIA1")],
        [verdict("2"), verdict("3", principal="root-prod", outcome="failure", session="c")],
    ]
    for batch in batches:
        before.observe(await store.commit([(v, "lookup") for v in batch], now=NOW), "lookup", NOW)
    for result in ("detected", "missed"):
        if await store.decide_window("quarterly", T0, T0 + timedelta(hours=4), result, NOW):
            before.window_decided("quarterly", result)

    after = started()
    after.restore(await store.totals())

    def persisted(m: WatcherMetrics) -> Samples:
        return {
            k: v
            for k, v in samples(m).items()
            if not k[0].startswith(("breakglass_detection_delay", "breakglass_principal_drill_due"))
        }

    assert persisted(after) == persisted(before)
    unexpected = {"principal": "bg-admin", "classification": "unexpected", "outcome": "success"}
    assert value(after, "breakglass_events_total", **unexpected) == 1.0


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian package 'prometheus'); CI installs it",
)
def test_promtool_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition(fully_populated()),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""
