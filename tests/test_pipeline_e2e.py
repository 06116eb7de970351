"""Drift checks end to end through the emulator, and their alerts through promtool.

The pipeline is the real one in moto (rule, queue, dead-letter queue, trail). Each fault is made
the way an operator would make it: the rule switched to plain ``ENABLED``, its queue target
removed, a message in the dead-letter queue, the trail stopped. The check values the daemon
exports in each phase (ok, broken, restored) become promtool input series, and promtool shows
the alert firing while broken and resolved once restored.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from harness import ACCOUNT, debian_binary, write_config

from watcher.audit import audit, format_json, format_table
from watcher.clock import utc_now
from watcher.daemon import Daemon
from watcher.emulator.infra import Pipeline, create_pipeline
from watcher.emulator.server import Emulator
from watcher.rules import parse_rules

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULES = f"""
principals:
  - name: bg-user
    match: {{user_name: break-glass-admin}}
    account: "{ACCOUNT}"
"""
REGION = "us-east-1"


def _client(emulator: Emulator, service: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=emulator.endpoint_url)


def _trail(emulator: Emulator) -> None:
    s3 = _client(emulator, "s3")
    s3.create_bucket(Bucket="trail-logs")
    cloudtrail = _client(emulator, "cloudtrail")
    cloudtrail.create_trail(Name="org-trail", S3BucketName="trail-logs", IsMultiRegionTrail=True)
    cloudtrail.start_logging(Name="org-trail")


async def _daemon(emulator: Emulator, tmp_path: Path) -> tuple[Daemon, Pipeline]:
    pipeline = create_pipeline(
        emulator.endpoint_url, parse_rules([("rules.yaml", yaml.safe_load(RULES))])
    )
    _trail(emulator)
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=pipeline.queue_url,
        rules=RULES,
        extra=f"checks: {{eventbridge_rules: [{pipeline.rule_name}]}}",
    )
    return Daemon.load(config), pipeline


def _checks(daemon: Daemon) -> dict[tuple[str, str], float]:
    found = {}
    for family in daemon.registry.collect():
        if family.name == "breakglass_pipeline_check":
            for sample in family.samples:
                found[(sample.labels["check"], sample.labels["resource"])] = sample.value
    return found


_RUNBOOK = re.compile(r'\{\{ or \$externalLabels\.runbook_base_url "([^"]+)" \}\}')


def _annotations(alert: str, labels: dict[str, str], value: float) -> dict[str, str]:
    """The alert's annotations as Prometheus renders them for ``labels`` and ``value`` (only
    the template forms alerts.yml uses)."""
    document = yaml.safe_load(ALERTS.read_text())
    (rule,) = [r for g in document["groups"] for r in g["rules"] if r.get("alert") == alert]
    rendered = {}
    for key, text in rule["annotations"].items():
        text = _RUNBOOK.sub(r"\1", text).replace("{{ $value }}", f"{value:g}")
        for name, label in labels.items():
            text = text.replace("{{ $labels." + name + " }}", label)
        rendered[key] = text
    return rendered


def _promtool_fires(
    alert: str, series: str, phases: list[float], tmp_path: Path, labels: dict[str, str]
) -> None:
    """promtool: with ``series`` at each phase's value for 30 minutes, ``alert`` fires in the
    phases whose value is 0 (checks) or above 0 (queues) and nowhere else."""
    values = " ".join(f"{v:g}x29" for v in phases)
    annotations = _annotations(alert, labels, max(phases))
    failing = [
        (v == 0) if series.startswith("breakglass_pipeline_check") else (v > 0) for v in phases
    ]
    tests = []
    for index, bad in enumerate(failing):
        eval_time = f"{index * 30 + 25}m"
        expected = (
            [{"exp_labels": {"severity": "critical", **labels}, "exp_annotations": annotations}]
            if bad
            else []
        )
        tests.append({"eval_time": eval_time, "alertname": alert, "exp_alerts": expected})
    document = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": values}],
                "alert_rule_test": tests,
            }
        ],
    }
    test_file = tmp_path / f"{alert}_test.yml"
    test_file.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [debian_binary("promtool"), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # promtool compares annotations only when given; the labels are what is checked here.
    assert result.returncode == 0, result.stdout + result.stderr


async def _phases(
    daemon: Daemon, break_it: Callable[[], None], restore: Callable[[], None], key: tuple[str, str]
) -> list[float]:
    values = []
    for step in (None, break_it, restore):
        if step is not None:
            step()
        await daemon.check_pipeline()
        values.append(_checks(daemon)[key])
    return values


@pytest.mark.slow
async def test_rule_state_drift_is_a_failing_check_and_an_alert_until_restored(
    emulator: Emulator, tmp_path: Path
) -> None:
    daemon, pipeline = await _daemon(emulator, tmp_path)
    events = _client(emulator, "events")
    described = events.describe_rule(Name=pipeline.rule_name)

    def set_state(state: str) -> Callable[[], None]:
        return lambda: events.put_rule(
            Name=pipeline.rule_name, EventPattern=described["EventPattern"], State=state
        )

    phases = await _phases(
        daemon,
        set_state("ENABLED"),
        set_state("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"),
        ("eventbridge_rule", pipeline.rule_name),
    )
    assert phases == [1.0, 0.0, 1.0]
    assert all(v == 1.0 for v in _checks(daemon).values()), _checks(daemon)
    labels = {
        "check": "eventbridge_rule",
        "account": ACCOUNT,
        "region": REGION,
        "resource": pipeline.rule_name,
    }
    series = "breakglass_pipeline_check{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    _promtool_fires("BreakGlassPipelineCheckFailing", series, phases, tmp_path, labels)


@pytest.mark.slow
async def test_removed_target_and_stopped_trail_fail_their_checks(
    emulator: Emulator, tmp_path: Path
) -> None:
    daemon, pipeline = await _daemon(emulator, tmp_path)
    events = _client(emulator, "events")
    (target,) = events.list_targets_by_rule(Rule=pipeline.rule_name)["Targets"]
    phases = await _phases(
        daemon,
        lambda: events.remove_targets(Rule=pipeline.rule_name, Ids=[target["Id"]]),
        lambda: events.put_targets(Rule=pipeline.rule_name, Targets=[target]),
        ("eventbridge_rule", pipeline.rule_name),
    )
    assert phases == [1.0, 0.0, 1.0]
    cloudtrail = _client(emulator, "cloudtrail")
    phases = await _phases(
        daemon,
        lambda: cloudtrail.stop_logging(Name="org-trail"),
        lambda: cloudtrail.start_logging(Name="org-trail"),
        ("trail_logging", "cloudtrail"),
    )
    assert phases == [1.0, 0.0, 1.0]


@pytest.mark.slow
async def test_a_message_in_the_dead_letter_queue_is_exported_and_alerts(
    emulator: Emulator, tmp_path: Path
) -> None:
    daemon, pipeline = await _daemon(emulator, tmp_path)
    sqs = _client(emulator, "sqs")

    def depth() -> float:
        value = daemon.registry.get_sample_value(
            "breakglass_queue_messages", {"queue": "dead-letter"}
        )
        assert value is not None
        return value

    phases = []
    for step in (
        None,
        lambda: sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody="{}"),
        lambda: sqs.purge_queue(QueueUrl=pipeline.dlq_url),
    ):
        if step is not None:
            step()
        await daemon.check_pipeline()
        phases.append(depth())
    assert phases == [0.0, 1.0, 0.0]
    assert daemon.registry.get_sample_value("breakglass_queue_messages", {"queue": "events"}) == 0
    series = 'breakglass_queue_messages{queue="dead-letter"}'
    _promtool_fires(
        "BreakGlassDeadLetterQueueNotEmpty", series, phases, tmp_path, {"queue": "dead-letter"}
    )


@pytest.mark.slow
async def test_audit_reports_a_failing_check_with_its_reason(
    emulator: Emulator, tmp_path: Path
) -> None:
    daemon, _ = await _daemon(emulator, tmp_path)
    _client(emulator, "cloudtrail").stop_logging(Name="org-trail")
    report = await audit(daemon.config, daemon.rules, now=utc_now())
    failing = [c for c in report.pipeline if not c.ok]
    assert [(c.check, c.region) for c in failing] == [("trail_logging", REGION)]
    assert not report.ok
    table = format_table(report)
    assert "FAIL  trail_logging  123456789012/us-east-1  cloudtrail  no trail of us-east-1" in table
    rows = [r for r in json.loads(format_json(report)) if r["check"].startswith("pipeline:")]
    assert {r["check"] for r in rows} == {
        "pipeline:queue",
        "pipeline:dead_letter_queue",
        "pipeline:eventbridge_rule",
        "pipeline:trail_logging",
    }
