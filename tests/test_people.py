"""People: ``people:`` validated with located errors, and drill events attributed to a person
from real CloudTrail record shapes (``tests/data/people/README.md`` cites them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from watcher.classify import Classifier
from watcher.errors import ConfigError
from watcher.events import normalise
from watcher.model import Person
from watcher.people import attribute
from watcher.rules import parse_rules

DATA = Path(__file__).parent / "data" / "people"
NOW = datetime(2026, 9, 1, tzinfo=UTC)
ROLE_ARN = "arn:aws:iam::123456789012:role/break-glass-admin-role"

RULES = f"""
principals:
  - name: bg-admin
    match: {{role_arn: "{ROLE_ARN}"}}
  - name: bg-user
    match: {{user_name: break-glass-user}}
    account: "123456789012"
exercises:
  - name: q4-drill
    principals: [bg-admin]
    start: "2026-10-01T12:00:00Z"
    end: "2026-10-01T14:00:00Z"
people:
  - name: alice
    principals: [bg-admin]
  - name: bob
    principals: [bg-admin]
    identity_center_user: Bob@Example.com
    max_days_between_drills: 90
  - name: carol
    principals: [bg-admin]
    iam_user: arn:aws:iam::111122223333:user/Carol
  - name: dave
    principals: [bg-user]
    source_identity: dave.ops
"""


def rules_of(text: str) -> Any:
    return parse_rules([("rules/people.yaml", yaml.safe_load(text))], now=NOW)


RULES_PARSED = rules_of(RULES)


def record(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def attributed(raw: dict[str, Any], rules: Any = RULES_PARSED) -> tuple[str, str | None]:
    """(classification, person) of one record through the real classifier."""
    verdict = Classifier(rules).classify(normalise(raw, "test"))
    assert verdict is not None, "not identified as a break-glass event"
    return verdict.classification, attribute(verdict.event, verdict.principal, rules.people)


def test_people_parse_with_defaults() -> None:
    alice, bob, carol, dave = RULES_PARSED.people
    assert alice == Person("alice", ("bg-admin",), source_identity="alice")
    assert bob.identity_center_user == "bob@example.com" and bob.max_days_between_drills == 90
    assert alice.max_days_between_drills == 180
    assert (carol.iam_user, carol.iam_user_account) == ("carol", "111122223333")
    assert dave.source_identity == "dave.ops"


@pytest.mark.parametrize(
    ("file", "person"),
    [
        ("assume-role-source-identity.json", "alice"),
        ("session-call-source-identity.json", "alice"),
        ("identity-center-assume-role.json", "bob"),
        ("switch-role.json", "carol"),
        ("assume-role-iam-user.json", "carol"),
    ],
)
def test_a_drill_event_is_attributed_from_the_record(file: str, person: str) -> None:
    assert attributed(record(file)) == ("drill", person)


def test_source_identity_wins_over_the_caller_and_is_case_sensitive() -> None:
    raw = record("assume-role-source-identity.json")
    raw["userIdentity"] = record("assume-role-iam-user.json")["userIdentity"]  # carol calls
    assert attributed(raw) == ("drill", "alice")
    raw["requestParameters"]["sourceIdentity"] = "Alice"
    assert attributed(raw) == ("drill", "carol")


def test_identity_center_user_id_from_on_behalf_of() -> None:
    rules = rules_of(
        RULES.replace(
            "identity_center_user: Bob@Example.com",
            "identity_center_user_id: 94482488-3041-7026-18f3-be45837cd0e4",
        )
    )
    raw = record("session-call-source-identity.json")
    del raw["userIdentity"]["sessionContext"]["sourceIdentity"]
    assert attributed(raw, rules) == ("drill", None)
    raw["userIdentity"]["onBehalfOf"] = {
        "userId": "94482488-3041-7026-18f3-be45837cd0e4",
        "identityStoreArn": "arn:aws:identitystore::123456789012:identitystore/d-9067642ac7",
    }
    assert attributed(raw, rules) == ("drill", "bob")


def test_nobody_is_credited_for_a_principal_they_are_not_listed_for() -> None:
    raw = record("assume-role-source-identity.json")
    raw["requestParameters"]["sourceIdentity"] = "dave.ops"  # dave practises bg-user only
    assert attributed(raw) == ("drill", None)


def test_an_iam_user_of_another_account_is_someone_else() -> None:
    raw = record("switch-role.json")
    raw["additionalEventData"]["SwitchFrom"] = "arn:aws:iam::444455556666:user/carol"
    assert attributed(raw) == ("drill", None)


def test_a_bare_iam_user_name_matches_in_any_account() -> None:
    rules = rules_of(RULES.replace("arn:aws:iam::111122223333:user/Carol", "CAROL"))
    raw = record("switch-role.json")
    raw["additionalEventData"]["SwitchFrom"] = "arn:aws:iam::444455556666:user/carol"
    assert attributed(raw, rules) == ("drill", "carol")


def test_a_session_name_alone_credits_nobody() -> None:
    """The SwitchRole session is named after the user, but any CLI caller may pick a name."""
    raw = record("session-call-source-identity.json")
    del raw["userIdentity"]["sessionContext"]["sourceIdentity"]
    raw["userIdentity"]["arn"] = raw["userIdentity"]["arn"].replace(
        "break-glass-exercise-2026q4", "carol"
    )
    assert attributed(raw) == ("drill", None)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as error:
        rules_of(text)
    return [str(p) for p in error.value.problems]


@pytest.mark.parametrize(
    ("people", "expected"),
    [
        (
            "  - name: erin\n",
            "rules/people.yaml: people[0].principals: is required",
        ),
        (
            "  - name: erin\n    principals: [bg-nobody]\n",
            "rules/people.yaml: people[0].principals[0]: no principal named 'bg-nobody' "
            "(declared: bg-admin, bg-user)",
        ),
        (
            "  - name: erin\n    principals: []\n",
            "rules/people.yaml: people[0].principals: names no principal",
        ),
        (
            "  - name: erin smith\n    principals: [bg-admin]\n",
            "rules/people.yaml: people[0].name: 'erin smith' is not a valid name",
        ),
        (
            "  - name: erin\n    principals: [bg-admin]\n    source_identity: 'aws:erin'\n",
            "rules/people.yaml: people[0].source_identity: 'aws:erin' is not a valid STS source "
            "identity",
        ),
        (
            "  - name: erin\n    principals: [bg-admin]\n    iam_user: arn:aws:iam::1:user/e\n",
            "rules/people.yaml: people[0].iam_user: 'arn:aws:iam::1:user/e' is not an IAM user ARN",
        ),
        (
            "  - name: erin\n    principals: [bg-admin]\n    max_days_between_drills: 0\n",
            "rules/people.yaml: people[0].max_days_between_drills: 0 must be a positive number",
        ),
        (
            "  - name: erin\n    principals: [bg-admin]\n    identity_centre_user: erin\n",
            "rules/people.yaml: people[0].identity_centre_user: unknown key; did you mean "
            "'identity_center_user'?",
        ),
        (
            "  - name: alice\n    principals: [bg-user]\n",
            "rules/people.yaml: people[0].name: person 'alice' is already declared at "
            "rules/people.yaml: people[0]",
        ),
        (
            "  - name: erin\n    principals: [bg-admin]\n    source_identity: alice\n",
            "rules/people.yaml: people[0].source_identity: 'alice' already identifies person "
            "'alice'",
        ),
    ],
)
def test_bad_people_are_located(people: str, expected: str) -> None:
    """Each new person is appended after the four good ones: its index is 4."""
    found = problems(RULES + people)
    expected = expected.replace("people[0]", "people[4]", 1)  # the location, not a reference
    assert any(p.startswith(expected) for p in found), found
