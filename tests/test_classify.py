"""classify: drill vs unexpected, conditions, outcome, session keys — on real-shaped records."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from watcher.classify import Classifier
from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    console_login_record,
    iam_user_identity,
)
from watcher.events import normalise
from watcher.model import Exercise, Principal, Rules, TrailEvent, Verdict

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"
ROLE_P = Principal("break-glass-admin-role", "role", ACCOUNT, iam_names=("break-glass-admin-role",))
USER_P = Principal("break-glass-admin", "user", ACCOUNT, iam_names=("break-glass-admin",))
QUARTERLY = Exercise(
    "quarterly-drill",
    principals=("break-glass-admin-role", "break-glass-admin"),
    timezone="Europe/Berlin",
    schedule="0 14 1 1,4,7,10 *",
    duration=timedelta(hours=4),
    session_name="break-glass-exercise*",
)
RULES = Rules((ROLE_P, USER_P), (QUARTERLY,))
OPEN = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)  # 14:00 in Berlin (CEST)
CLOSE = OPEN + timedelta(hours=4)
INSIDE = OPEN + timedelta(minutes=5)
OUTSIDE = OPEN - timedelta(days=1)


def event(record: dict[str, Any]) -> TrailEvent:
    return normalise(record, "test")


def assume(t: datetime = INSIDE, session: str = "break-glass-exercise-1", **kw: Any) -> TrailEvent:
    kw.setdefault("issued_access_key_id", "ASIAISSUED")
    caller = kw.pop("caller", iam_user_identity(ACCOUNT, "alice", "AKIAALICE"))
    return event(
        assume_role_record(
            caller=caller,
            role_arn=ROLE,
            session_name=session,
            event_time=t,
            event_id="e-assume",
            **kw,
        )
    )


def session_call(
    t: datetime = INSIDE, session: str = "break-glass-exercise-1", **kw: Any
) -> TrailEvent:
    mfa = kw.pop("mfa", False)
    identity = assumed_role_identity(ROLE, session, "ASIAISSUED", mfa=mfa)
    return event(
        api_call_record(
            identity=identity,
            event_name="ListUsers",
            event_source="iam.amazonaws.com",
            account=ACCOUNT,
            event_time=t,
            event_id="e-call",
            **kw,
        )
    )


def verdict(e: TrailEvent, rules: Rules = RULES) -> Verdict:
    found = Classifier(rules).classify(e)
    assert found is not None
    return found


def test_drill_inside_an_open_window() -> None:
    v = verdict(assume())
    assert (v.principal, v.classification, v.outcome, v.exercise) == (
        "break-glass-admin-role",
        "drill",
        "success",
        "quarterly-drill",
    )
    assert v.window is not None and (v.window.start, v.window.end) == (OPEN, CLOSE)


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (OPEN - timedelta(seconds=1), "unexpected"),
        (OPEN, "drill"),
        (CLOSE - timedelta(seconds=1), "drill"),
        (CLOSE, "unexpected"),
        (OUTSIDE, "unexpected"),
        (datetime(2026, 1, 1, 13, 30, tzinfo=UTC), "drill"),  # CET in January: 14:00 = 13:00Z
        (datetime(2026, 1, 1, 12, 30, tzinfo=UTC), "unexpected"),
    ],
)
def test_window_edges_in_event_time(t: datetime, expected: str) -> None:
    v = verdict(session_call(t))
    assert v.classification == expected
    assert v.exercise == ("quarterly-drill" if expected == "drill" else None)


def test_session_name_glob_is_case_sensitive_and_required() -> None:
    assert verdict(session_call(session="break-glass-exercise")).classification == "drill"
    assert verdict(session_call(session="Break-Glass-Exercise-1")).classification == "unexpected"
    assert verdict(session_call(session="x-break-glass-exercise")).classification == "unexpected"
    no_session = api_call_record(
        identity=iam_user_identity(ACCOUNT, "break-glass-admin", "AKIABG"),
        event_name="ListUsers",
        event_source="iam.amazonaws.com",
        account=ACCOUNT,
        event_time=INSIDE,
    )
    v = verdict(event(no_session))
    assert (v.principal, v.classification) == ("break-glass-admin", "unexpected")


def with_exercise(**kw: Any) -> Rules:
    exercise = Exercise(
        "drill",
        principals=("break-glass-admin-role", "break-glass-admin"),
        schedule="0 14 1 1,4,7,10 *",
        duration=timedelta(hours=4),
        timezone="Europe/Berlin",
        **kw,
    )
    return Rules((ROLE_P, USER_P), (exercise,))


def nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


@pytest.mark.parametrize(
    ("source_ip", "cidrs", "expected"),
    [
        ("203.0.113.10", ("203.0.113.0/24",), "drill"),
        ("198.51.100.7", ("203.0.113.0/24",), "unexpected"),
        ("198.51.100.7", ("203.0.113.0/24", "198.51.100.0/28"), "drill"),
        ("AWS Internal", ("0.0.0.0/0",), "unexpected"),
        ("cloudformation.amazonaws.com", ("0.0.0.0/0",), "unexpected"),
        ("::ffff:203.0.113.10", ("203.0.113.0/24",), "unexpected"),
        ("2001:db8::1", ("0.0.0.0/0",), "unexpected"),
        ("2001:db8::1", ("2001:db8::/32",), "drill"),
    ],
)
def test_source_cidrs(source_ip: str, cidrs: tuple[str, ...], expected: str) -> None:
    rules = with_exercise(source_cidrs=nets(*cidrs))
    assert verdict(session_call(source_ip=source_ip), rules).classification == expected


def test_source_cidrs_without_a_source_ip() -> None:
    e = session_call()
    raw = {k: v for k, v in e.raw.items() if k != "sourceIPAddress"}
    assert (
        verdict(event(raw), with_exercise(source_cidrs=nets("0.0.0.0/0"))).classification
        == "unexpected"
    )


def test_require_mfa() -> None:
    rules = with_exercise(require_mfa=True)
    assert verdict(session_call(mfa=True), rules).classification == "drill"
    assert verdict(session_call(mfa=False), rules).classification == "unexpected"
    assert (
        verdict(assume(mfa_serial=f"arn:aws:iam::{ACCOUNT}:mfa/alice"), rules).classification
        == "drill"
    )
    assert verdict(assume(), rules).classification == "unexpected"
    identity = iam_user_identity(ACCOUNT, "break-glass-admin")
    for mfa, expected in ((True, "drill"), (False, "unexpected")):
        login = console_login_record(
            identity=identity, success=True, mfa_used=mfa, event_time=INSIDE
        )
        assert verdict(event(login), rules).classification == expected


def test_first_open_exercise_in_rule_order_wins() -> None:
    strict = Exercise(
        "strict",
        principals=("break-glass-admin-role",),
        start=OPEN,
        end=CLOSE,
        session_name="nomatch*",
    )
    one_off = Exercise("one-off", principals=("break-glass-admin-role",), start=OPEN, end=CLOSE)
    rules = Rules((ROLE_P,), (strict, one_off, QUARTERLY))
    assert verdict(assume(), rules).exercise == "one-off"
    rules = Rules((ROLE_P,), (QUARTERLY, one_off))
    assert verdict(assume(), rules).exercise == "quarterly-drill"
    other = Exercise("other", principals=("someone-else",), start=OPEN, end=CLOSE)
    assert verdict(assume(), Rules((ROLE_P,), (other,))).classification == "unexpected"


def test_failures_are_classified_with_outcome_failure() -> None:
    denied = assume(error_code="AccessDenied")
    v = verdict(denied)
    assert (v.classification, v.outcome, v.session_key) == ("drill", "failure", "e-assume")
    assert verdict(assume(OUTSIDE, error_code="AccessDenied")).classification == "unexpected"
    identity = iam_user_identity(ACCOUNT, "break-glass-admin")
    login = event(
        console_login_record(
            identity=identity, success=False, mfa_used=False, event_time=OUTSIDE, event_id="login-1"
        )
    )
    v = verdict(login)
    assert (v.principal, v.classification, v.outcome, v.session_key) == (
        "break-glass-admin",
        "unexpected",
        "failure",
        "login-1",
    )


def test_session_keys_tie_an_assumption_to_its_calls() -> None:
    assert verdict(assume()).session_key == "ASIAISSUED"
    assert verdict(session_call()).session_key == "ASIAISSUED"


def test_acting_session_name_counts_when_a_break_glass_session_assumes_a_role() -> None:
    caller = assumed_role_identity(ROLE, "break-glass-exercise-9", "ASIACALLER")
    record = assume_role_record(
        caller=caller,
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/ReadOnly",
        session_name="chained",
        event_time=INSIDE,
    )
    v = verdict(event(record))
    assert (v.principal, v.classification, v.event.session_name, v.session_key) == (
        "break-glass-admin-role",
        "drill",
        "break-glass-exercise-9",
        "ASIACALLER",
    )


def test_other_events_are_not_break_glass_and_classify_is_pure() -> None:
    other = api_call_record(
        identity=iam_user_identity(ACCOUNT, "alice", "AKIAALICE"),
        event_name="ListUsers",
        event_source="iam.amazonaws.com",
        account=ACCOUNT,
        event_time=INSIDE,
    )
    classifier = Classifier(RULES)
    assert classifier.classify(event(other)) is None
    e = assume()
    assert classifier.classify(e) == classifier.classify(e) == verdict(e)
    unexpected = Classifier(Rules(RULES.principals, ())).classify(e)
    assert unexpected is not None
    assert unexpected.classification == "unexpected"
    # Classifiers share no state: the other rules changed nothing for this one.
    assert classifier.classify(e) == verdict(e)
