"""``audit`` against the moto server: a report a person can act on, and the exit status."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from watcher.audit import audit, format_json, format_table, run_audit
from watcher.errors import StoreError, WatcherError
from watcher.model import Principal, Rules, TrailEvent, Verdict
from watcher.settings import Account, Config
from watcher.store.sqlite import SqliteStore

ACCOUNT = "123456789012"
USER = Principal("break-glass-admin", "user", ACCOUNT, iam_names=("break-glass-admin",))
ROLE = Principal(
    "break-glass-admin-role",
    "role",
    ACCOUNT,
    iam_names=("break-glass-admin-role",),
    arn=f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role",
)
RULES = Rules((USER, ROLE), ())
RULES_YAML = f"""
principals:
  - name: break-glass-admin
    match:
      user_name: break-glass-admin
    account: "{ACCOUNT}"
    max_days_between_drills: 90
  - name: break-glass-admin-role
    match:
      role_arn: arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role
    account: "{ACCOUNT}"
    max_days_between_drills: 90
exercises:
  - name: quarterly-drill
    principals: [break-glass-admin, break-glass-admin-role]
    schedule: "0 14 1 1,4,7,10 *"
    duration: 4h
"""
MFA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/break-glass-admin"},
            "Action": "sts:AssumeRole",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        }
    ],
}
OPEN_TRUST = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}]}


@pytest.fixture
def iam(moto_endpoint: str) -> Any:
    return boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")


def config(tmp_path: Path, endpoint: str) -> Config:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "break-glass.yaml").write_text(RULES_YAML)
    return Config(
        rules_path=rules,
        state_path=tmp_path / "state.db",
        accounts=(Account(ACCOUNT, ("us-east-1",)),),
        endpoint_url=endpoint,
    )


def healthy(iam: Any, *, mfa: bool = True, trust: dict[str, Any] = MFA_TRUST) -> str:
    """A break-glass user and role as they should be; returns the user's access key id."""
    iam.create_user(UserName="break-glass-admin")
    iam.create_login_profile(UserName="break-glass-admin", Password="Correct-horse-battery-1")
    if mfa:
        device = iam.create_virtual_mfa_device(VirtualMFADeviceName="bg-mfa")
        iam.enable_mfa_device(
            UserName="break-glass-admin",
            SerialNumber=device["VirtualMFADevice"]["SerialNumber"],
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
    iam.create_role(RoleName="break-glass-admin-role", AssumeRolePolicyDocument=json.dumps(trust))
    key_id: str = iam.create_access_key(UserName="break-glass-admin")["AccessKey"]["AccessKeyId"]
    return key_id


async def record_drill(state: Path, principal: str, at: datetime) -> None:
    event = TrailEvent(
        event_id=f"drill-{principal}",
        event_time=at,
        account=ACCOUNT,
        region="us-east-1",
        event_name="AssumeRole",
        event_source="sts.amazonaws.com",
        identity={},
        raw={},
    )
    store = SqliteStore(state)
    await store.open()
    try:
        verdict = Verdict(event, principal, "drill", "success", exercise="quarterly-drill")
        await store.commit([(verdict, "lookup")], now=at)
    finally:
        await store.close()


async def record_first_seen(state: Path, principal: str, at: datetime) -> None:
    store = SqliteStore(state)
    await store.open()
    try:
        await store.first_seen("principal", principal, at)
    finally:
        await store.close()


def lines_of(text: str, principal: str) -> list[str]:
    """The check lines under ``principal``'s heading in a table report."""
    block = text.split(f"\n{principal}  (", 1)[1].split("\n\n", 1)[0]
    return block.splitlines()[1:]


async def test_table_report_names_every_problem(
    tmp_path: Path, moto_endpoint: str, iam: Any
) -> None:
    key_id = healthy(iam, mfa=False, trust=OPEN_TRUST)
    iam.update_access_key(UserName="break-glass-admin", AccessKeyId=key_id, Status="Inactive")
    iam.create_user(UserName="Emergency-Ops")
    now = datetime.now(UTC)
    await record_drill(tmp_path / "state.db", "break-glass-admin", now - timedelta(days=132))
    watched = now - timedelta(days=10, hours=1)
    await record_first_seen(tmp_path / "state.db", "break-glass-admin-role", watched)

    report = await audit(config(tmp_path, moto_endpoint), RULES, now=now)
    text = format_table(report)

    assert text.startswith(
        f"break-glass audit at {now:%Y-%m-%d %H:%M} UTC: 3 principals, 7 failing checks, "
        "0 account errors\n"
    )
    label = f"{key_id[:4]}…{key_id[-4:]}"
    assert lines_of(text, "break-glass-admin") == [
        "  OK    exists             user break-glass-admin exists",
        f"  FAIL  access_key_active  access key {label} inactive",
        "  OK    access_key_age     no active access key",
        "  OK    login_profile      console password set",
        "  FAIL  mfa_device         no MFA device",
        "  FAIL  drill_recency      last drill 132 days ago, due every 90 days",
    ]
    assert lines_of(text, "break-glass-admin-role") == [
        "  OK    exists             role break-glass-admin-role exists",
        "  FAIL  trust_policy       trust policy open to *",
        "  OK    drill_recency      no drill since watching began 10 days ago, next due in 79 days",
    ]
    discovered = lines_of(text, "emergency-ops")
    assert discovered[0] == (
        f"  note  found in IAM as arn:aws:iam::{ACCOUNT}:user/Emergency-Ops; not declared in any "
        "rule, so only unexpected use is watched"
    )
    assert "  FAIL  access_key_active  no access key" in discovered
    assert not any("drill_recency" in line for line in discovered)
    assert "emergency-ops  (user, discovered, account 123456789012)" in text


async def test_json_report_is_a_list_of_uniform_rows(
    tmp_path: Path, moto_endpoint: str, iam: Any
) -> None:
    healthy(iam, mfa=False)
    report = await audit(config(tmp_path, moto_endpoint), RULES, now=datetime.now(UTC))
    rows = json.loads(format_json(report))
    assert {tuple(sorted(r)) for r in rows} == {
        ("account", "arn", "check", "kind", "ok", "origin", "principal", "reason")
    }
    failing = [(r["principal"], r["check"], r["reason"]) for r in rows if not r["ok"]]
    assert failing == [("break-glass-admin", "mfa_device", "no MFA device")]
    role_rows = [r for r in rows if r["principal"] == "break-glass-admin-role"]
    assert role_rows[0]["arn"] == ROLE.arn and role_rows[0]["kind"] == "role"


async def test_no_state_file_leaves_drill_recency_out_with_a_note(
    tmp_path: Path, moto_endpoint: str, iam: Any
) -> None:
    healthy(iam)
    cfg = config(tmp_path, moto_endpoint)
    report = await audit(cfg, RULES, now=datetime.now(UTC))
    assert not any(c.check == "drill_recency" for c in report.checks)
    assert report.notes == (f"drill recency not checked: no state file at {cfg.state_path}",)
    assert format_table(report).endswith(f"Notes:\n  {report.notes[0]}\n")
    assert report.ok


async def test_unreadable_account_fails_the_audit(tmp_path: Path, closed_port: int) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}"
    report = await audit(config(tmp_path, endpoint), RULES, now=datetime.now(UTC))
    assert report.checks == () and not report.ok
    text = format_table(report)
    assert "  ----  not checked: IAM of account 123456789012 could not be read" in text
    assert f"Account errors:\n  FAIL  {ACCOUNT}  network: Could not connect" in text
    (row,) = json.loads(format_json(report))
    assert (row["account"], row["check"], row["ok"]) == (ACCOUNT, "source", False)


@pytest.mark.slow  # 52 IAM users in moto
async def test_truncated_discovery_is_reported(
    tmp_path: Path, moto_endpoint: str, iam: Any
) -> None:
    for n in range(52):
        iam.create_user(UserName=f"emergency-{n:02}")
    report = await audit(config(tmp_path, moto_endpoint), Rules((), ()), now=datetime.now(UTC))
    assert len(report.principals) == 50
    assert not report.ok  # a matching principal left unwatched is a failed check
    assert (
        "Discovery truncated:\n  FAIL  123456789012: 2 more discovered principals not watched"
        in format_table(report)
    )
    rows = json.loads(format_json(report))
    assert rows[-1]["check"] == "discovery" and not rows[-1]["ok"]


def test_run_audit_exit_status(tmp_path: Path, moto_endpoint: str, iam: Any) -> None:
    healthy(iam)
    cfg = config(tmp_path, moto_endpoint)
    recent = datetime.now(UTC) - timedelta(days=3, hours=1)
    for principal in ("break-glass-admin", "break-glass-admin-role"):
        asyncio.run(record_drill(cfg.state_path, principal, recent))
    out = io.StringIO()
    assert run_audit(cfg, fmt="table", out=out) == 0
    assert "0 failing checks, 0 account errors" in out.getvalue()
    assert "last drill 3 days ago, next due in 86 days" in out.getvalue()

    iam.delete_login_profile(UserName="break-glass-admin")
    out = io.StringIO()
    assert run_audit(cfg, fmt="json", out=out) == 1
    failing = [r for r in json.loads(out.getvalue()) if not r["ok"]]
    assert [(r["check"], r["reason"]) for r in failing] == [
        ("login_profile", "no console login profile")
    ]


def test_run_audit_with_broken_rules_raises_a_watcher_error(
    tmp_path: Path, moto_endpoint: str
) -> None:
    cfg = config(tmp_path, moto_endpoint)
    (cfg.rules_path / "break-glass.yaml").write_text("principals: [{name: 1}]\n")
    with pytest.raises(WatcherError):
        run_audit(cfg, fmt="table", out=io.StringIO())


async def test_audit_writes_nothing_to_the_state_file(
    tmp_path: Path, moto_endpoint: str, iam: Any
) -> None:
    """``audit`` reads the state beside a running daemon: it never writes to the file, not even
    the first-seen time of a principal that has no drill yet (the daemon records that)."""
    healthy(iam)
    cfg = config(tmp_path, moto_endpoint)
    await record_drill(cfg.state_path, "break-glass-admin", datetime.now(UTC) - timedelta(days=3))
    before = cfg.state_path.read_bytes()
    report = await audit(cfg, RULES, now=datetime.now(UTC))
    assert cfg.state_path.read_bytes() == before
    due = {c.principal: c.reason for c in report.checks if c.check == "drill_recency"}
    assert due["break-glass-admin-role"].startswith("no drill since watching began")
    store = SqliteStore(cfg.state_path)
    await store.open()
    try:
        assert await store.first_seen_at("principal", "break-glass-admin-role") is None
    finally:
        await store.close()


async def test_a_read_only_store_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await record_first_seen(path, "p", datetime(2026, 1, 1, tzinfo=UTC))
    store = SqliteStore(path, read_only=True)
    await store.open()
    try:
        assert await store.first_seen_at("principal", "p") == datetime(2026, 1, 1, tzinfo=UTC)
        with pytest.raises(StoreError, match="read-only"):
            await store.first_seen("principal", "q", datetime(2026, 1, 2, tzinfo=UTC))
    finally:
        await store.close()
