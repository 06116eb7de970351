"""Every dashboard query and alert expression against a real Prometheus scraping a real daemon.

The daemon runs as a subprocess against the emulators (moto's IAM, EventBridge and SQS, and the
LookupEvents emulator) with the demo's role, user and pipeline; events, a detected and a missed
exercise window, credential checks and source health are fed in until every panel and annotation
of deploy/grafana/breakglass-watcher.json has data in Prometheus. Alert expressions of
deploy/prometheus/alerts.yml must be accepted by the query API and evaluate without error as
loaded rules.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from harness import debian_binary, running_daemon, wait_for
from test_deploy_dashboard import DASHBOARD, dashboard_queries

from watcher.demo.scenario import (
    DRILL_EXERCISE,
    PARTICIPANT,
    ROLE_PRINCIPAL,
    USER_NAME,
    DemoSetup,
    set_up_demo,
)
from watcher.emulator import records
from watcher.emulator.infra import deliver_many
from watcher.emulator.server import Emulator

pytestmark = pytest.mark.slow  # a live Prometheus scraping a daemon subprocess

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
JOB = "breakglass-watcher"
MISSED_EXERCISE = "missed-drill"

# Queries whose value must be positive once the fed events are in, not just present.
POSITIVE = {
    "Unexpected uses",
    "Failed attempts",
    "Drill uses",
    "Windows missed",
    "Principals watched",
    "Watcher up",
    "Last config reload",
    "Unexpected break-glass use",
    "Break-glass drill",
    "Drill window missed",
}


# ------------------------------------------------------------------------------ Prometheus


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET ``/api/v1/<path>``; an error answer (HTTP 4xx with a JSON body) is returned too."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
                body = r.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
        answer: dict[str, Any] = json.loads(body)
        return answer

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def query_range(self, expr: str, seconds: int = 120) -> dict[str, Any]:
        end = time.time()
        return self.api("query_range", query=expr, start=str(end - seconds), end=str(end), step="1")

    def series(self, expr: str) -> list[dict[str, Any]]:
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def alive(self) -> bool:
        """True while it runs; fails the test with its log once it has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"Prometheus exited:\n{self.log_path.read_text()}")
        return True

    def listening_url(self) -> str:
        """The URL from the log line of the port Prometheus bound (it was given port 0)."""
        self.alive()
        for line in self.log_path.read_text(errors="replace").splitlines():
            found = re.search(r'msg="Listening on" address=(127\.0\.0\.1:\d+)', line)
            if found:
                return f"http://{found[1]}"
        return ""

    def started(self) -> None:
        """Wait until it serves; fail with its log if it exits first."""
        self.url = wait_for(self.listening_url, 30, "Prometheus to listen")
        wait_for(lambda: self.alive() and self.ready(), 30, "Prometheus to be ready")


def _write_prometheus_config(folder: Path, target: str) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def running_prometheus(binary: str, folder: Path, target: str) -> Iterator[Prometheus]:
    """Prometheus scraping ``target`` on a loopback port it binds itself (port 0), read back
    from its log (the "Listening on" line is logged at info level)."""
    folder.mkdir()
    config = _write_prometheus_config(folder, target)
    log_path = folder / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                "--web.listen-address=127.0.0.1:0",
                f"--storage.tsdb.path={folder / 'data'}",
                "--log.level=info",
            ],
            stdout=log,
            stderr=log,
        )
    prometheus = Prometheus(proc, log_path)
    try:
        prometheus.started()
        yield prometheus
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ------------------------------------------------------------------------- the daemon's input


def demo_setup(emulator: Emulator, folder: Path) -> DemoSetup:
    """The demo's role, user (login profile, MFA, key) and pipeline, with a 1 s grace and a
    quick LookupEvents poll."""
    setup = set_up_demo(emulator.endpoint_url, folder, now=datetime.now(UTC), lookup_interval="1s")
    config = yaml.safe_load(setup.config_path.read_text())
    config["detection_grace"] = "1s"
    assert config.get("inventory", {}).get("enabled", True), "the demo's inventory is on"
    setup.config_path.write_text(yaml.safe_dump(config))
    return setup


def add_missed_window(setup: DemoSetup, end: datetime) -> None:
    """Add a one-off exercise ending at ``end`` whose session names no fed event matches."""
    rules_path = setup.config_path.parent / "rules" / "break-glass.yaml"
    rules = yaml.safe_load(rules_path.read_text())
    rules["exercises"].append(
        {
            "name": MISSED_EXERCISE,
            "principals": [ROLE_PRINCIPAL],
            "start": (end - timedelta(minutes=1)).isoformat(),
            "end": end.isoformat(),
            "session_name": "nobody-uses-this-*",
        }
    )
    rules_path.write_text(yaml.safe_dump(rules))


def assume(
    setup: DemoSetup,
    session: str,
    at: datetime,
    error: str | None = None,
    source_identity: str | None = None,
) -> dict[str, Any]:
    """Operator alice assuming the break-glass role as ``session`` (failing with ``error``)."""
    return records.assume_role_record(
        caller=records.iam_user_identity(setup.account, "alice"),
        role_arn=setup.role_arn,
        session_name=session,
        event_time=at,
        error_code=error,
        source_identity=source_identity,
    )


def feed(
    emulator: Emulator,
    setup: DemoSetup,
    *,
    sqs: Sequence[dict[str, Any]] = (),
    lookup: Sequence[dict[str, Any]] = (),
) -> None:
    """Deliver records through EventBridge → SQS and/or the LookupEvents emulator."""
    if sqs:
        deliver_many(emulator.endpoint_url, sqs, region=setup.region)
    for record in lookup:
        emulator.lookup.add(record)


# ------------------------------------------------------------------------------- evaluation


def problems(prometheus: Prometheus) -> list[str]:
    """What is still wrong with the dashboard's queries; empty when every one has data."""
    found = []
    for title, expr in dashboard_queries(DASHBOARD):
        instant = prometheus.query(expr)
        if instant["status"] != "success":
            found.append(f"{title}: {expr}: {instant.get('error')}")
            continue
        values = [float(s["value"][1]) for s in instant["data"]["result"]]
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            found.append(f"{title}: {expr}: no finite value in {values}")
        elif title in POSITIVE and max(finite) <= 0:
            found.append(f"{title}: {expr}: {finite} not positive")
        ranged = prometheus.query_range(expr)
        if ranged["status"] != "success" or not ranged["data"]["result"]:
            found.append(f"{title}: {expr}: range query: {ranged}")
    return found


def alert_exprs() -> list[tuple[str, str]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [(r["alert"], r["expr"]) for g in document["groups"] for r in g["rules"] if "alert" in r]


def rule_health(prometheus: Prometheus) -> dict[str, str]:
    answer = prometheus.api("rules", type="alert")
    return {
        rule["name"]: f"{rule['health']} {rule.get('lastError', '')}".strip()
        for group in answer["data"]["groups"]
        for rule in group["rules"]
    }


# ----------------------------------------------------------------------------------- the test


def test_every_dashboard_query_has_data_in_a_live_prometheus(
    emulator: Emulator, tmp_path: Path
) -> None:
    binary = debian_binary("prometheus")
    began = time.monotonic()
    setup = demo_setup(emulator, tmp_path / "watcher")
    with (
        running_daemon(setup.config_path) as daemon,
        running_prometheus(binary, tmp_path / "prometheus", f"127.0.0.1:{daemon.port}") as prom,
    ):
        # Prometheus must see every counter at 0 before it moves, or increase() has nothing.
        wait_for(
            lambda: (
                prom.series(f'up{{job="{JOB}"}} == 1')
                and prom.series("breakglass_exercise_windows_total")
            ),
            30,
            "Prometheus to scrape the daemon",
        )

        # A window ending ~10 s from now: the lifecycle (every 5 s) sees the exercise first
        # while it is open, then decides it missed after its end and the 1 s grace.
        reloaded = datetime.now(UTC).replace(microsecond=0)
        add_missed_window(setup, reloaded + timedelta(seconds=10))
        daemon.signal(signal.SIGHUP)
        wait_for(
            lambda: prom.series(
                f'breakglass_exercise_windows_total{{exercise="{MISSED_EXERCISE}"}}'
            ),
            20,
            "the reloaded exercise's counters to be scraped at 0",
        )

        # Drill and unexpected uses, successes and failures, through both sources; each
        # source gets one event only it delivers, so both observe a detection delay.
        t1 = datetime.now(UTC)
        # The demo rules' person: the drill is theirs by its SourceIdentity.
        drill_ok = assume(setup, "break-glass-exercise-1", t1, source_identity=PARTICIPANT)
        misuse = assume(setup, "admin-hotfix", t1)
        drill_failed = assume(setup, "break-glass-exercise-2", t1, error="AccessDenied")
        login_failed = records.console_login_record(
            identity=records.iam_user_identity(setup.account, USER_NAME),
            success=False,
            mfa_used=False,
            event_time=t1,
        )
        feed(
            emulator,
            setup,
            sqs=[drill_ok, misuse, login_failed],
            lookup=[drill_ok, misuse, drill_failed],
        )
        sqs_client = boto3.client("sqs", region_name=setup.region, endpoint_url=setup.endpoint_url)
        sqs_client.send_message(QueueUrl=setup.pipeline.queue_url, MessageBody="{not json")
        wait_for(
            lambda: daemon.metric("breakglass_events_total") == 4,
            30,
            "four break-glass events stored",
        )
        assert daemon.metric("breakglass_events_total", classification="drill") == 2
        assert daemon.metric("breakglass_events_total", outcome="failure") == 2
        wait_for(
            lambda: (
                len(
                    prom.series(
                        f'breakglass_last_event_timestamp_seconds{{principal="{ROLE_PRINCIPAL}"}}'
                    )
                )
                == 2
            ),
            20,
            "Prometheus to scrape the first drill and unexpected use",
        )

        wait_for(
            lambda: (
                daemon.metric(
                    "breakglass_exercise_windows_total",
                    exercise=DRILL_EXERCISE,
                    result="detected",
                )
                == 1
            ),
            20,
            "the drill window detected",
        )
        wait_for(
            lambda: (
                daemon.metric(
                    "breakglass_exercise_windows_total",
                    exercise=MISSED_EXERCISE,
                    result="missed",
                )
                == 1
            ),
            40,
            "the one-off window decided missed",
        )
        assert daemon.metric("breakglass_credential_check") > 0  # the inventory ran
        assert daemon.metric("breakglass_events_malformed_total", source="eventbridge") == 1

        last: list[str] = []

        def all_have_data() -> bool:
            last[:] = problems(prom)
            return not last

        try:
            wait_for(all_have_data, 45, "every dashboard query to have data")
        except AssertionError as exc:
            raise AssertionError("\n".join([str(exc), *last])) from None
        windows = dict(dashboard_queries(DASHBOARD))["Exercise windows in range"]
        counted = {
            (s["metric"]["exercise"], s["metric"]["result"]): float(s["value"][1])
            for s in prom.series(windows)
        }
        assert counted[(DRILL_EXERCISE, "detected")] == 1, counted
        assert counted[(MISSED_EXERCISE, "missed")] == 1, counted
        last_drill = next(e for t, e in dashboard_queries(DASHBOARD) if t == "People by last drill")
        (person,) = prom.series(last_drill)
        assert person["metric"] == {"person": PARTICIPANT}
        assert float(person["value"][1]) == int(t1.timestamp()) * 1000

        for name, expr in alert_exprs():
            answer = prom.query(expr)
            assert answer["status"] == "success", (name, answer)
        expected = {name: "ok" for name, _ in alert_exprs()}
        wait_for(lambda: rule_health(prom) == expected, 20, "every alert rule evaluated")
    took = time.monotonic() - began
    assert took < 90, f"took {took:.0f}s"
