"""``account: any``: one rule, one principal per watched account, bounded metric labels."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from watcher.errors import ConfigError
from watcher.events import iter_document
from watcher.identify import PrincipalIndex, identify
from watcher.metrics import WatcherMetrics
from watcher.model import TrailEvent
from watcher.org_principals import expand
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
