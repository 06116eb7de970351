"""``breakglass-watcher demo``: the whole watcher against an embedded AWS emulator, no account.

It starts moto's server with the LookupEvents emulator on loopback, creates the break-glass role
and user and the EventBridge rule → SQS queue (+ dead-letter queue) in it (:func:`set_up_demo`,
which the tests reuse), writes a config and rules with a drill window open now, runs the daemon
in this event loop, then runs the drill (the ``drill`` command's own code) and one unexpected use.

moto records no CloudTrail events, so the demo plays CloudTrail's part
(:class:`CloudTrailStandIn`): each call it made becomes a real-shaped CloudTrail record, delivered
both to EventBridge (``put_events`` → rule → SQS) and to the LookupEvents emulator, so the
watcher reads every event twice and must count it once.

Credentials: dummy ones, set in this process only for the emulator (never printed); instance
metadata look-ups are off and shared AWS config files are ignored, so nothing reaches AWS.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import boto3
import yaml

from watcher.daemon import Daemon
from watcher.drill import (
    Authentication,
    DrillOptions,
    DrillResult,
    Expectation,
    assume_role,
    drill,
    find_detection,
)
from watcher.drill_record import render_markdown
from watcher.emulator.infra import Pipeline, create_pipeline, deliver_many
from watcher.emulator.lookup import LookupEventStore
from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    iam_user_identity,
)
from watcher.emulator.server import Emulator, start_emulator
from watcher.errors import WatcherError
from watcher.model import Window
from watcher.rules import load_rules

REGION = "us-east-1"
ROLE_NAME = "break-glass-admin-role"
USER_NAME = "break-glass-admin"
ROLE_PRINCIPAL = "break-glass-admin-role"
USER_PRINCIPAL = "break-glass-admin"
DRILL_EXERCISE = "demo-drill"
SESSION_PATTERN = "break-glass-exercise*"
UNEXPECTED_SESSION = "admin-hotfix"  # does not match SESSION_PATTERN
PARTICIPANT = "demo-operator"
PERSON_LAST_DRILL = "breakglass_person_last_drill_timestamp_seconds"
SOURCE_IP = "127.0.0.1"
DRILL_TIMEOUT = 20.0
CHECK_TIMEOUT = 20.0

EMULATOR_ENV = {
    "AWS_ACCESS_KEY_ID": "demo-not-a-real-key",
    "AWS_SECRET_ACCESS_KEY": "demo-not-a-real-secret",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_CLEARED_ENV = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def emulator_environment() -> Iterator[None]:
    """Dummy AWS credentials for the emulator in this process, restored afterwards."""
    keys = (*EMULATOR_ENV, *_CLEARED_ENV)
    saved = {k: os.environ.get(k) for k in keys}
    for key in _CLEARED_ENV:
        os.environ.pop(key, None)
    os.environ.update(EMULATOR_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ----------------------------------------------------------------------------------- set-up


@dataclass(frozen=True, slots=True)
class DemoSetup:
    """What :func:`set_up_demo` created: AWS resources in the emulator and the files."""

    config_path: Path
    endpoint_url: str
    account: str
    region: str
    role_arn: str
    user_arn: str
    mfa_serial: str
    user_access_key_id: str
    user_secret_access_key: str = field(repr=False)
    pipeline: Pipeline = field(repr=False)
    window: Window = field(repr=False)


def set_up_demo(
    endpoint_url: str,
    folder: Path,
    *,
    now: datetime,
    port: int = 0,
    window_ahead: timedelta = timedelta(minutes=5),
    lookup_interval: str = "2s",
) -> DemoSetup:
    """Create the break-glass role and user and the EventBridge → SQS pipeline in the emulator,
    and write ``folder/config.yaml`` and ``folder/rules/`` for the daemon.

    The rules open a one-off window of :data:`DRILL_EXERCISE` from a minute before ``now`` to
    ``window_ahead`` after it, next to quarterly exercises like a real deployment's.
    """
    iam = boto3.client("iam", region_name=REGION, endpoint_url=endpoint_url)
    sts = boto3.client("sts", region_name=REGION, endpoint_url=endpoint_url)
    account = str(sts.get_caller_identity()["Account"])
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OperatorsOfThisAccountMayBreakGlass",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
            }
        ],
    }
    tags = [{"Key": "breakglass", "Value": "true"}]
    role_arn = iam.create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(trust),
        Description="Emergency administrator access",
        MaxSessionDuration=3600,
        Tags=tags,
    )["Role"]["Arn"]
    user_arn = iam.create_user(UserName=USER_NAME, Tags=tags)["User"]["Arn"]
    iam.create_login_profile(
        UserName=USER_NAME, Password=secrets.token_urlsafe(24), PasswordResetRequired=False
    )
    mfa_serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=USER_NAME)["VirtualMFADevice"][
        "SerialNumber"
    ]
    iam.enable_mfa_device(
        UserName=USER_NAME,
        SerialNumber=mfa_serial,
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )
    key = iam.create_access_key(UserName=USER_NAME)["AccessKey"]

    window = Window(DRILL_EXERCISE, now - timedelta(minutes=1), now + window_ahead)
    rules_dir = folder / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    _write_yaml(rules_dir / "break-glass.yaml", _rules_document(account, role_arn, window))
    pipeline = create_pipeline(endpoint_url, load_rules(rules_dir, now=now), region=REGION)
    config_path = folder / "config.yaml"
    _write_yaml(
        config_path,
        _config_document(endpoint_url, account, pipeline.queue_url, port, lookup_interval),
    )
    return DemoSetup(
        config_path=config_path,
        endpoint_url=endpoint_url,
        account=account,
        region=REGION,
        role_arn=role_arn,
        user_arn=user_arn,
        mfa_serial=mfa_serial,
        user_access_key_id=key["AccessKeyId"],
        user_secret_access_key=key["SecretAccessKey"],
        pipeline=pipeline,
        window=window,
    )


def _rules_document(account: str, role_arn: str, window: Window) -> dict[str, Any]:
    return {
        "principals": [
            {"name": ROLE_PRINCIPAL, "match": {"role_arn": role_arn}},
            {"name": USER_PRINCIPAL, "match": {"user_name": USER_NAME}, "account": account},
        ],
        "exercises": [
            {
                "name": DRILL_EXERCISE,
                "principals": [ROLE_PRINCIPAL],
                "start": _iso(window.start),
                "end": _iso(window.end),
                "session_name": SESSION_PATTERN,
            },
            {
                "name": "quarterly-drill",
                "principals": [ROLE_PRINCIPAL],
                "schedule": "0 14 1 1,4,7,10 *",
                "duration": "4h",
                "timezone": "Europe/Berlin",
                "session_name": SESSION_PATTERN,
            },
            {
                "name": "quarterly-user-drill",
                "principals": [USER_PRINCIPAL],
                "schedule": "0 18 1 1,4,7,10 *",
                "duration": "2h",
                "timezone": "Europe/Berlin",
                "require_mfa": True,
            },
        ],
        # The drill's --participant sets SourceIdentity = this name: the drill is theirs.
        "people": [{"name": PARTICIPANT, "principals": [ROLE_PRINCIPAL, USER_PRINCIPAL]}],
    }


def _config_document(
    endpoint_url: str, account: str, queue_url: str, port: int, lookup_interval: str
) -> dict[str, Any]:
    return {
        "rules": "rules",
        "state": "state.db",
        "listen": f"127.0.0.1:{port}",
        "endpoint_url": endpoint_url,
        "regions": [REGION],
        "accounts": [{"id": account}],
        "sources": {
            "eventbridge": {"queue_url": queue_url, "region": REGION, "wait_seconds": 1},
            "lookup": {"interval": lookup_interval, "overlap": "5m", "lookback": "1h"},
        },
        "detection_grace": "1m",
        "retention": "1d",
    }


def _write_yaml(path: Path, document: dict[str, Any]) -> None:
    header = "# Written by `breakglass-watcher demo` for its embedded AWS emulator.\n"
    path.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- CloudTrail's part


def authentication_records(
    auth: Authentication, source_ip: str = SOURCE_IP
) -> list[dict[str, Any]]:
    """The CloudTrail records of a drill's calls: the assume call (for a role), then the
    GetCallerIdentity made with the break-glass credentials."""
    if auth.method == "profile":
        user_name = auth.principal_arn.rsplit("/", 1)[-1]
        identity = iam_user_identity(auth.account, user_name, auth.access_key_id)
        return [_get_caller_identity(identity, auth, source_ip)]
    session_name = auth.session_name or ""
    assume = assume_role_record(
        caller=_caller_identity(auth.caller_arn, auth.account),
        role_arn=auth.principal_arn,
        session_name=session_name,
        event_time=auth.at,
        region=auth.region,
        source_ip=source_ip,
        issued_access_key_id=auth.access_key_id,
        source_identity=auth.source_identity,
    )
    identity = assumed_role_identity(
        auth.principal_arn,
        session_name,
        auth.access_key_id,
        source_identity=auth.source_identity,
        creation_date=auth.at,
    )
    return [assume, _get_caller_identity(identity, auth, source_ip)]


def _get_caller_identity(
    identity: dict[str, Any], auth: Authentication, source_ip: str
) -> dict[str, Any]:
    return api_call_record(
        identity=identity,
        event_name="GetCallerIdentity",
        event_source="sts.amazonaws.com",
        account=auth.account,
        event_time=auth.at,
        region=auth.region,
        source_ip=source_ip,
    )


def _caller_identity(arn: str, account: str) -> dict[str, Any]:
    """The ``userIdentity`` of the operator who assumed the role, from GetCallerIdentity's ARN."""
    resource = arn.split(":", 5)[-1]
    if resource.startswith("assumed-role/"):
        _, role, session = resource.split("/", 2)
        return assumed_role_identity(f"arn:aws:iam::{account}:role/{role}", session, "")
    return iam_user_identity(account, resource.rsplit("/", 1)[-1])


class CloudTrailStandIn:
    """Plays CloudTrail for calls made against the emulator: each record goes to EventBridge
    (``put_events`` on the default bus → the rule → SQS) and to the LookupEvents emulator."""

    def __init__(self, endpoint_url: str, lookup: LookupEventStore, region: str = REGION) -> None:
        self._endpoint_url = endpoint_url
        self._lookup = lookup
        self._region = region
        self.delivered: list[dict[str, Any]] = []
        self.delivered_at: datetime | None = None

    async def record(self, auth: Authentication) -> None:
        """Use as the drill's ``after_auth``: record what the drill just did."""
        await self.publish(authentication_records(auth))

    async def publish(self, records: Sequence[dict[str, Any]]) -> None:
        await asyncio.to_thread(deliver_many, self._endpoint_url, records, region=self._region)
        for record in records:
            self._lookup.add(record)
        self.delivered += records
        self.delivered_at = utc_now()


# ------------------------------------------------------------------------------------- the demo


def run_demo(*, once: bool, port: int, out: TextIO) -> int:
    """Entry point of ``breakglass-watcher demo``."""
    with (
        emulator_environment(),
        tempfile.TemporaryDirectory(prefix="breakglass-demo-") as folder,
    ):
        return asyncio.run(demo(Path(folder), once=once, port=port, out=out))


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


async def demo(folder: Path, *, once: bool, port: int, out: TextIO) -> int:
    """Run the demo in ``folder``; with ``once``, 0 only when every check passed."""
    say = _printer(out)
    say("breakglass-watcher demo: everything below runs against an AWS emulator (moto) on this")
    say("machine. No AWS account is used; the credentials are dummies for the emulator.\n")
    emulator = await asyncio.to_thread(start_emulator)
    try:
        setup = await asyncio.to_thread(
            set_up_demo, emulator.endpoint_url, folder, now=utc_now(), port=port
        )
        _describe_setup(setup, folder, say)
        async with running_watcher(setup.config_path) as watcher:
            url = watcher.url
            say(f"Watcher running in this process: {url}/metrics\n")
            story = asyncio.create_task(_story(watcher.daemon, emulator, setup, folder, url, say))
            await asyncio.wait({watcher.task, story}, return_when=asyncio.FIRST_COMPLETED)
            if not story.done():
                story.cancel()
                await asyncio.wait({story})
                code = watcher.task.result()
                say(f"The watcher stopped (exit {code}) before the demo finished.")
                return code or 1
            checks = story.result()
            failed = [c.name for c in checks if not c.ok]
            if failed:
                say(f"\nDemo FAILED: {'; '.join(failed)} (see the checks above).")
            say(f"\nMetrics:    {url}/metrics")
            say(f"Events:     {url}/api/events")
            say(f"Exercises:  {url}/api/exercises")
            say(f"Calendar:   {url}/calendar.ics  (subscribe a team calendar to it)")
            say(f"Readiness:  {url}/readyz")
            if not once:
                say("\nServing until Ctrl-C: point Prometheus (and Grafana) at the metrics URL.")
                await watcher.task
            return 1 if failed else 0
    finally:
        await asyncio.to_thread(emulator.stop)


@dataclass(frozen=True, slots=True)
class RunningWatcher:
    daemon: Daemon
    task: asyncio.Task[int]
    url: str


@asynccontextmanager
async def running_watcher(config_path: Path) -> AsyncIterator[RunningWatcher]:
    """The daemon as a task of this event loop, listening; stopped on exit (its exit code, or
    what stopped it, stays in ``task``)."""
    daemon = Daemon.load(config_path)
    task = asyncio.create_task(daemon.run(), name="watcher")
    try:
        port = await _listening(daemon, task)
        yield RunningWatcher(daemon, task, f"http://127.0.0.1:{port}")
    finally:
        daemon.stop.set()
        await asyncio.wait({task})


async def _listening(daemon: Daemon, task: asyncio.Task[int]) -> int:
    """The daemon's HTTP port once it listens (or what stopped it before)."""
    listening = asyncio.ensure_future(daemon.listening.wait())
    try:
        await asyncio.wait({listening, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        listening.cancel()
    if daemon.port is None:
        task.result()  # raises what stopped it
        raise WatcherError("the watcher stopped before it listened")
    return daemon.port


async def _story(
    daemon: Daemon,
    emulator: Emulator,
    setup: DemoSetup,
    folder: Path,
    url: str,
    say: Callable[[str], None],
) -> list[Check]:
    stand_in = CloudTrailStandIn(emulator.endpoint_url, emulator.lookup, setup.region)
    say("== The drill (the code of `breakglass-watcher drill`) ==")
    say("CloudTrail stand-in: moto records no CloudTrail events, so the demo turns each call")
    say("it makes into a CloudTrail record and delivers it twice: to EventBridge (put_events →")
    say("rule → SQS) and to the LookupEvents emulator. The watcher must count each once.\n")
    result = await drill(
        DrillOptions(
            config_path=setup.config_path,
            exercise=DRILL_EXERCISE,
            participants=(PARTICIPANT,),
            watcher_url=url,
            timeout=DRILL_TIMEOUT,
            records_dir=folder / "records",
            poll_interval=0.5,
            max_poll_interval=2.0,
        ),
        out=_Indented(say),
        after_auth=stand_in.record,
    )

    say(f"\n== Unexpected use: assuming the role as session {UNEXPECTED_SESSION!r} ==")
    say(f"(the drill window is open, but the name does not match {SESSION_PATTERN!r})")
    misuse = await assume_role(
        setup.endpoint_url, setup.region, setup.role_arn, UNEXPECTED_SESSION, None, utc_now
    )
    await stand_in.publish(authentication_records(misuse))
    say(f"  {misuse.caller_arn} assumed {misuse.principal_arn}; records delivered.\n")

    checks = await _wait_for_checks(daemon, setup, result, misuse, stand_in)
    await _print_events(daemon, say)
    say("\n== Exercise record ==")
    say(f"({result.markdown_path.name} and {result.json_path.name} in {folder / 'records'})\n")
    say(render_markdown(result.record))
    say("== Checks ==")
    for check in checks:
        say(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    return checks


async def _wait_for_checks(
    daemon: Daemon,
    setup: DemoSetup,
    result: DrillResult,
    misuse: Authentication,
    stand_in: CloudTrailStandIn,
) -> list[Check]:
    """Evaluate the checks until all pass or :data:`CHECK_TIMEOUT` passes (no fixed sleep:
    the watcher's sources and lifecycle decide when they are true)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CHECK_TIMEOUT
    settled = _LookupSettled(daemon, setup, stand_in)
    while True:
        checks = [
            _drill_check(result),
            _misuse_check(await daemon.store.recent_events(100), misuse),
            _window_check(daemon),
            _person_check(daemon),
            await _dedup_check(daemon, setup, stand_in, settled),
        ]
        if all(c.ok for c in checks) or loop.time() >= deadline:
            return checks
        await asyncio.sleep(0.25)


def _drill_check(result: DrillResult) -> Check:
    detection = result.record.detection
    ok = (
        result.record.ok
        and detection is not None
        and detection.classification == "drill"
        and detection.exercise == DRILL_EXERCISE
    )
    got = f"{detection.classification} ({detection.exercise})" if detection else "not reported"
    return Check(
        "drill classified drill", ok, f"{got}; record {'passed' if result.record.ok else 'failed'}"
    )


def _misuse_check(events: list[dict[str, Any]], misuse: Authentication) -> Check:
    expect = Expectation(ROLE_PRINCIPAL, misuse.at, misuse.session_name)
    event = find_detection(events, expect)
    got = event.get("classification") if event else None
    return Check(
        "other use classified unexpected",
        got == "unexpected",
        f"session {misuse.session_name}: {got or 'not reported yet'}",
    )


def _window_check(daemon: Daemon) -> Check:
    labels = {"exercise": DRILL_EXERCISE, "result": "detected"}
    value = daemon.registry.get_sample_value("breakglass_exercise_windows_total", labels) or 0.0
    return Check(
        "window detected",
        value >= 1,
        f'breakglass_exercise_windows_total{{exercise="{DRILL_EXERCISE}",result="detected"}} '
        f"= {value:g}",
    )


def _person_check(daemon: Daemon) -> Check:
    labels = {"person": PARTICIPANT}
    value = daemon.registry.get_sample_value(PERSON_LAST_DRILL, labels)
    when = (
        "none yet"
        if value is None
        else f"{datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M:%S} UTC (from its SourceIdentity)"
    )
    return Check(f"drill recorded for {PARTICIPANT}", value is not None, f"last drill {when}")


class _LookupSettled:
    """Whether a LookupEvents poll *started* after the last delivery has completed.

    The first successful poll ending after the delivery may have started before it; the next
    one started after that one ended, so it read every delivered record.
    """

    def __init__(self, daemon: Daemon, setup: DemoSetup, stand_in: CloudTrailStandIn) -> None:
        self._daemon = daemon
        self._labels = {"source": "lookup", "account": setup.account, "region": setup.region}
        self._stand_in = stand_in
        self._first: float | None = None

    def __call__(self) -> bool:
        delivered = self._stand_in.delivered_at
        last = self._daemon.registry.get_sample_value(
            "breakglass_source_last_success_timestamp_seconds", self._labels
        )
        if delivered is None or last is None or last <= delivered.timestamp():
            return False
        if self._first is None:
            self._first = last
        return last > self._first


async def _dedup_check(
    daemon: Daemon, setup: DemoSetup, stand_in: CloudTrailStandIn, settled: _LookupSettled
) -> Check:
    delivered = len(stand_in.delivered)
    counted = _events_total(daemon)
    name = "each event counted once"
    if not settled() or not await asyncio.to_thread(_queue_drained, setup):
        return Check(name, False, f"waiting for both sources to read all {delivered} records")
    return Check(
        name,
        counted == delivered,
        f"{delivered} records delivered twice each (EventBridge and LookupEvents); "
        f"breakglass_events_total sums to {counted:g}",
    )


def _events_total(daemon: Daemon) -> float:
    return sum(
        sample.value
        for metric in daemon.registry.collect()
        if metric.name == "breakglass_events"
        for sample in metric.samples
        if sample.name == "breakglass_events_total"
    )


def _queue_drained(setup: DemoSetup) -> bool:
    """No message waiting or in flight: the SQS source stored and deleted every one."""
    sqs = boto3.client("sqs", region_name=setup.region, endpoint_url=setup.endpoint_url)
    attributes = sqs.get_queue_attributes(
        QueueUrl=setup.pipeline.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in attributes.values())


async def _print_events(daemon: Daemon, say: Callable[[str], None]) -> None:
    events = list(reversed(await daemon.store.recent_events(100)))
    say("\n== What the watcher classified (oldest first; source = which copy arrived first) ==")
    header = (
        "time (UTC)",
        "principal",
        "event",
        "session",
        "classification",
        "exercise",
        "outcome",
        "source",
    )
    rows = [
        (
            str(e["event_time"])[11:19],
            str(e["principal"]),
            str(e["event_name"]),
            str(e["session_name"] or "-"),
            str(e["classification"]),
            str(e["exercise"] or "-"),
            str(e["outcome"]),
            str(e["source"]),
        )
        for e in events
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        say("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _describe_setup(setup: DemoSetup, folder: Path, say: Callable[[str], None]) -> None:
    window = setup.window
    say(f"AWS emulator: {setup.endpoint_url} (moto server + LookupEvents emulator)")
    say(f"Created in account {setup.account}:")
    say(f"  role   {setup.role_arn} (trust policy: this account's operators)")
    say(f"  user   {setup.user_arn} (console password, MFA device, access key)")
    say(
        f"  rule   {setup.pipeline.rule_name} → SQS {setup.pipeline.queue_url.rsplit('/', 1)[-1]}"
        f" (dead-letter queue {setup.pipeline.dlq_url.rsplit('/', 1)[-1]})"
    )
    say(f"Config and rules: {folder}")
    say(
        f"  exercise {DRILL_EXERCISE}: window open {window.start:%H:%M:%S} to "
        f"{window.end:%H:%M:%S} UTC, session names {SESSION_PATTERN!r}"
    )
    say("  exercises quarterly-drill and quarterly-user-drill: as a real deployment would have")


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    return say


class _Indented:
    """A text stream that indents the drill's lines inside the demo's output."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._pending = ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._say(f"  {line}" if line else "")
        return len(text)

    def flush(self) -> None:
        pass
