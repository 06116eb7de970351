"""deploy/prometheus/alerts.yml: promtool checks and unit tests, plus the rules' conventions.

promtool comes from Debian's ``prometheus`` package. Without it these tests skip, except under
``CI=true``, where a missing promtool is a broken CI image and fails.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import debian_binary

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
RUNBOOK = ROOT / "deploy" / "runbook.md"

# docs/design.md "Metrics", plus the exercise programme's gauges (per person, and the newest
# decided window per exercise and result).
CONTRACT_METRICS = frozenset(
    {
        "breakglass_events_total",
        "breakglass_sessions_total",
        "breakglass_last_event_timestamp_seconds",
        "breakglass_exercise_window_open",
        "breakglass_exercise_windows_total",
        "breakglass_exercise_next_window_start_timestamp_seconds",
        "breakglass_principal_last_drill_timestamp_seconds",
        "breakglass_principal_drill_due_timestamp_seconds",
        "breakglass_principal_info",
        "breakglass_credential_check",
        "breakglass_access_key_age_seconds",
        "breakglass_inventory_unwatched_principals",
        "breakglass_source_up",
        "breakglass_source_last_success_timestamp_seconds",
        "breakglass_source_stale_after_seconds",
        "breakglass_canary_last_seen_timestamp_seconds",
        "breakglass_canary_sent_timestamp_seconds",
        "breakglass_canary_interval_seconds",
        "breakglass_canary_delay_seconds",
        "breakglass_pipeline_check",
        "breakglass_queue_messages",
        "breakglass_queue_oldest_message_age_seconds",
        "breakglass_source_errors_total",
        "breakglass_detection_delay_seconds",
        "breakglass_rules_info",
        "breakglass_config_last_reload_success",
        "breakglass_events_malformed_total",
        "breakglass_leader",
        "breakglass_person_last_drill_timestamp_seconds",
        "breakglass_person_drill_due_timestamp_seconds",
        "breakglass_exercise_last_window_start_timestamp_seconds",
    }
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_METRIC_NAME = re.compile(r"\bbreakglass_[a-z0-9_]+")


def metric_names(expr: str) -> set[str]:
    """The ``breakglass_*`` metric families an expression reads (histogram suffixes removed)."""
    names = set()
    for name in _METRIC_NAME.findall(expr):
        for suffix in HISTOGRAM_SUFFIXES:
            base = name.removesuffix(suffix)
            if base != name and base in CONTRACT_METRICS:
                name = base
        names.add(name)
    return names


def promtool() -> str:
    """Path of promtool; skips the test when it is missing (fails under CI=true)."""
    return debian_binary("promtool")


def load_alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml, in file order."""
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_check_rules() -> None:
    result = _run(promtool(), "check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = _run(promtool(), "test", "rules", ALERTS_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in load_alert_rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown not firing"


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in load_alert_rules()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", load_alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_alert_conventions(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook_url"} <= annotations.keys()
    anchor = annotations["runbook_url"].partition("#")[2]
    assert anchor == rule["alert"].lower()
    headings = {
        line.removeprefix("## ").strip().lower()
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    assert anchor in headings, f"deploy/runbook.md has no section {rule['alert']}"
    assert metric_names(rule["expr"]) <= CONTRACT_METRICS


def load_recording_rules() -> dict[str, str]:
    """Every recording rule of alerts.yml: recorded name to expression."""
    document = yaml.safe_load(ALERTS.read_text())
    return {r["record"]: r["expr"] for g in document["groups"] for r in g["rules"] if "record" in r}


def test_use_alerts_read_the_restart_proof_recording_rule() -> None:
    """Use alerts must see a use made while the watcher was down (a new pod's first sample):
    they read the per-deployment series, never increase() of the per-pod counter."""
    by_name = {rule["alert"]: rule for rule in load_alert_rules()}
    records = load_recording_rules()
    assert "without (instance, pod)" in records["breakglass:events_total:max"]
    for name in (
        "BreakGlassUnexpectedUse",
        "BreakGlassFailedAttempt",
        "BreakGlassDrillAttemptFailed",
    ):
        expr = by_name[name]["expr"]
        assert "breakglass:events:new30m" in expr
        assert "breakglass_events_total" not in expr
        assert by_name[name].get("for", "0m") == "0m"
    for name in (
        "BreakGlassUnexpectedUse",
        "BreakGlassFailedAttempt",
        "BreakGlassDrillWindowMissed",
    ):
        assert by_name[name]["labels"]["severity"] == "critical"


_AGGREGATION = re.compile(r"\b(?:sum|max|min|avg|count) by \(([^)]*)\)")


@pytest.mark.parametrize("rule", load_alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_aggregations_keep_cluster_namespace_and_job(rule: dict[str, Any]) -> None:
    for labels in _AGGREGATION.findall(rule["expr"]):
        kept = {label.strip() for label in labels.split(",")}
        assert {"cluster", "namespace", "job"} <= kept, rule["expr"]


def test_runbook_links_share_one_configurable_base() -> None:
    """Every runbook_url is the external label runbook_base_url (or the default) + anchor."""
    bases = {rule["annotations"]["runbook_url"].partition("#")[0] for rule in load_alert_rules()}
    assert len(bases) == 1
    assert "$externalLabels.runbook_base_url" in bases.pop()


def test_metric_names_strips_histogram_suffixes_only_for_contract_histograms() -> None:
    expr = "rate(breakglass_detection_delay_seconds_bucket[5m]) + breakglass_bogus_count"
    assert metric_names(expr) == {"breakglass_detection_delay_seconds", "breakglass_bogus_count"}
