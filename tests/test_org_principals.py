"""``account: any``: one rule, one principal per watched account, bounded metric labels."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from watcher.classify import Classifier
from watcher.cli import main
from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    iam_user_identity,
)
from watcher.errors import ConfigError
from watcher.events import iter_document
from watcher.identify import PrincipalIndex, identify
from watcher.metrics import WatcherMetrics
from watcher.model import TrailEvent
from watcher.org_principals import expand
from watcher.replay import run_replay
from watcher.rules import parse_rules

RULES = """
principals:
  - name: bg-role
    match: {role_name: Break-Glass-Admin}
    account: any
  - name: bg-user
    match: {user_name: emergency}
    account: "123456789012"
exercises:
  - name: q
    principals: [bg-role]
    start: 2026-01-01T10:00:00Z
    end: 2026-01-01T12:00:00Z
people:
  - name: ana
    principals: [bg-role, bg-user]
    source_identity: ana
"""
NOW = datetime(2025, 12, 1, tzinfo=UTC)


def _rules(text: str) -> Any:
    return parse_rules([("r.yaml", yaml.safe_load(text))], now=NOW)


def _accounts(n: int) -> list[str]:
    return [f"{100000000000 + i:012d}" for i in range(n)]


def test_an_any_account_principal_is_one_per_account() -> None:
    rules = expand(_rules(RULES), ["111111111111", "222222222222"])
    assert [(p.name, p.account, p.arn) for p in rules.principals] == [
        (
            "bg-role@111111111111",
            "111111111111",
            "arn:aws:iam::111111111111:role/Break-Glass-Admin",
        ),
        (
            "bg-role@222222222222",
            "222222222222",
            "arn:aws:iam::222222222222:role/Break-Glass-Admin",
        ),
        ("bg-user", "123456789012", "arn:aws:iam::123456789012:user/emergency"),
    ]
    assert rules.exercises[0].principals == ("bg-role@111111111111", "bg-role@222222222222")
    assert rules.people[0].principals == (
        "bg-role@111111111111",
        "bg-role@222222222222",
        "bg-user",
    )


def test_the_expansion_identifies_the_role_in_each_account() -> None:
    rules = expand(_rules(RULES), _accounts(3))
    index = PrincipalIndex(rules.principals)
    account = _accounts(3)[1]
    record = {
        "eventVersion": "1.08",
        "awsRegion": "us-east-1",
        "eventID": "e1",
        "eventTime": "2026-01-01T10:30:00Z",
        "eventName": "ListUsers",
        "eventSource": "iam.amazonaws.com",
        "recipientAccountId": account,
        "userIdentity": {
            "type": "AssumedRole",
            "accountId": account,
            "arn": f"arn:aws:sts::{account}:assumed-role/break-glass-admin/ana",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "arn": f"arn:aws:iam::{account}:role/break-glass-admin",
                }
            },
        },
    }
    (event,) = iter_document({"Records": [record]}, "test")
    assert isinstance(event, TrailEvent)
    found = identify(event, index)
    assert found is not None and found.name == f"bg-role@{account}"


@pytest.mark.parametrize(
    ("match", "reason"),
    [
        ('{role_arn: "arn:aws:iam::123456789012:role/x"}', "any: match by role_name"),
        ('{root_of_account: "123456789012"}', "any: match by role_name"),
    ],
)
def test_any_needs_a_name_match(match: str, reason: str) -> None:
    text = f"principals:\n  - name: p\n    match: {match}\n    account: any\n"
    with pytest.raises(ConfigError) as caught:
        _rules(text)
    assert any(reason in str(p) and "account" in str(p) for p in caught.value.problems)


def _series(accounts: int) -> tuple[int, int]:
    """(principal-labelled series of the org-wide rule, bytes of the whole exposition)."""
    metrics = WatcherMetrics()
    metrics.init_labels(expand(_rules(RULES), _accounts(accounts)), [])
    text = generate_latest(metrics.registry).decode()
    return sum('principal="bg-role@' in line for line in text.splitlines()), len(text)


@pytest.mark.parametrize("accounts", [30, 100, 300])
def test_metric_series_grow_linearly_with_the_accounts(accounts: int) -> None:
    """The series of one org-wide rule: those of one principal, once per account."""
    one, _ = _series(1)
    series, size = _series(accounts)
    assert one > 0 and series == one * accounts
    print(f"{accounts} accounts: {series} series of the rule, {size} bytes of /metrics")


# -- without the accounts (replay): identification names the record's account ------------------

ORG_RULES = """
principals:
  - name: bg-role
    match: {role_name: Break-Glass-Admin}
    account: any
  - name: bg-user
    match: {user_name: emergency}
    account: any
  - name: bg-pattern
    match: {name_pattern: "bg-ops-*"}
    kind: role
    account: any
  - name: local-admin
    match: {role_name: break-glass-admin}
    account: "999999999999"
exercises:
  - name: q
    principals: [bg-role, bg-user]
    start: 2026-01-01T10:00:00Z
    end: 2026-01-01T12:00:00Z
"""
MEMBER = "210987654321"
IN_WINDOW = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)


def _event(record: dict[str, Any]) -> TrailEvent:
    (event,) = iter_document({"Records": [record]}, "test")
    assert isinstance(event, TrailEvent), event
    return event


def _records(account: str) -> list[dict[str, Any]]:
    """A session call, an assume call (the role asked for) and a denied one, a user's call and
    a pattern role's session, each in ``account``."""
    role = f"arn:aws:iam::{account}:role/break-glass-admin"
    caller = iam_user_identity(account, "alice", "AKIAALICE00000000001")
    return [
        api_call_record(
            identity=assumed_role_identity(role, "drill", "ASIASESSION000000001"),
            event_name="ListUsers",
            event_source="iam.amazonaws.com",
            account=account,
            event_time=IN_WINDOW,
        ),
        assume_role_record(caller=caller, role_arn=role, session_name="s", event_time=IN_WINDOW),
        assume_role_record(
            caller=caller,
            role_arn=role,
            session_name="s",
            event_time=IN_WINDOW,
            error_code="AccessDenied",
        ),
        api_call_record(
            identity=iam_user_identity(account, "EMERGENCY", "AKIAEMERGENCY0000001"),
            event_name="ListUsers",
            event_source="iam.amazonaws.com",
            account=account,
            event_time=IN_WINDOW,
        ),
        api_call_record(
            identity=assumed_role_identity(
                f"arn:aws:iam::{account}:role/ops/bg-ops-eu", "x", "ASIASESSION000000002"
            ),
            event_name="ListRoles",
            event_source="iam.amazonaws.com",
            account=account,
            event_time=IN_WINDOW,
        ),
    ]


def _seen(classifier: Classifier, record: dict[str, Any]) -> tuple[str, str, str | None] | None:
    verdict = classifier.classify(_event(record))
    if verdict is None:
        return None
    return verdict.principal, verdict.classification, verdict.exercise


def test_without_the_accounts_a_record_is_named_as_the_daemons_expansion_names_it() -> None:
    """replay (rules as written) and the daemon (rules expanded over the watched accounts)
    give every record of a member the same principal, classification and exercise."""
    rules = _rules(ORG_RULES)
    offline = Classifier(rules)
    daemon = Classifier(expand(rules, ["111111111111", MEMBER]))
    seen = [_seen(offline, record) for record in _records(MEMBER)]
    assert seen == [_seen(daemon, record) for record in _records(MEMBER)]
    assert seen == [
        (f"bg-role@{MEMBER}", "drill", "q"),
        (f"bg-role@{MEMBER}", "drill", "q"),
        (f"bg-role@{MEMBER}", "drill", "q"),
        (f"bg-user@{MEMBER}", "drill", "q"),
        (f"bg-pattern@{MEMBER}", "unexpected", None),
    ]


def test_a_principal_declared_for_the_account_wins_over_any() -> None:
    """Where a rule names the account itself, that principal is the record's, offline too."""
    rules = _rules(ORG_RULES)
    session = _records("999999999999")[0]
    assert _seen(Classifier(rules), session) == ("local-admin", "unexpected", None)


@pytest.mark.parametrize("account", ["any", "ANY", "12345", ""])
def test_a_record_naming_no_account_id_is_no_use_of_an_any_principal(account: str) -> None:
    """``any`` is the rules' word: a record whose identity claims the account "any" (or none
    that is an account id) matches no ``account: any`` principal."""
    rules = _rules(ORG_RULES)
    record = _records(MEMBER)[3]
    record["userIdentity"]["accountId"] = account
    record["recipientAccountId"] = account or MEMBER
    index = PrincipalIndex(rules.principals)
    found = identify(_event(record), index)
    assert found is None or found.account == MEMBER


def test_replay_prints_the_member_accounts_principal(tmp_path: Path) -> None:
    log = tmp_path / "trail.json"
    log.write_text(json.dumps({"Records": _records(MEMBER)[:1] + _records("111111111111")[3:4]}))
    out, err = io.StringIO(), io.StringIO()
    assert run_replay(_rules(ORG_RULES), [log], summary=False, out=out, err=err) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(v["principal"], v["account"], v["classification"]) for v in lines] == [
        (f"bg-role@{MEMBER}", MEMBER, "drill"),
        ("bg-user@111111111111", "111111111111", "drill"),
    ]
    summary = io.StringIO()
    run_replay(_rules(ORG_RULES), [log], summary=True, out=summary, err=err)
    rows = [line.split()[0] for line in summary.getvalue().splitlines()[1:]]
    assert rows == ["local-admin", f"bg-role@{MEMBER}", "bg-user@111111111111"]


# -- validate ---------------------------------------------------------------------------------


def _validate(tmp_path: Path, capsys: pytest.CaptureFixture[str], accounts: str | None) -> str:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.yaml").write_text(ORG_RULES)
    if accounts is None:
        assert main(["validate", "--rules", str(tmp_path / "rules")]) == 0
    else:
        config = tmp_path / "config.yaml"
        config.write_text(f"rules: rules\naccounts: {accounts}\nsources: {{lookup: {{}}}}\n")
        assert main(["validate", "-c", str(config)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("accounts", "over"),
    [
        (None, "each watched account"),
        ('[{id: "111111111111"}, {id: "222222222222"}]', "each of the 2 listed accounts"),
        (
            "{organization: {role_name: reader}}",
            "each account of the organization (listed when the watcher runs)",
        ),
    ],
)
def test_validate_says_how_an_org_wide_rule_expands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], accounts: str | None, over: str
) -> None:
    """The rule is valid, and ``validate`` says it is one principal per account and how named."""
    out = _validate(tmp_path, capsys, accounts).splitlines()
    assert out == [
        "ok: 4 principals, 1 exercises",
        *(
            f"principal {name}: account: any, one principal for {over}, named {name}@ACCOUNT"
            for name in ("bg-role", "bg-user", "bg-pattern")
        ),
    ]
