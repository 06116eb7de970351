"""Credential checks are pure: facts and ``now`` in, verdicts with reasons out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from watcher.credentials import (
    AccessKey,
    CheckResult,
    PrincipalFacts,
    RoleFacts,
    RootFacts,
    UserFacts,
    access_key_ages,
    check_credentials,
    drill_due,
    drill_due_at,
    key_label,
)
from watcher.model import Principal

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(days=90)
USER = Principal("bg-user", "user", "123456789012", iam_names=("break-glass-admin",))
ROLE = Principal("bg-role", "role", "123456789012", iam_names=("break-glass-admin-role",))
KEY1 = "AKIAEXAMPLEAAAA1111"
KEY2 = "AKIAEXAMPLEBBBB2222"


def key(
    key_id: str = KEY1, *, active: bool = True, age_days: int = 10, used_days: int | None = None
) -> AccessKey:
    last = NOW - timedelta(days=used_days) if used_days is not None else None
    return AccessKey(key_id, active, NOW - timedelta(days=age_days), last)


def user(name: str = "break-glass-admin", **kw: Any) -> UserFacts:
    defaults: dict[str, Any] = {
        "access_keys": (key(),),
        "login_profile": True,
        "mfa_devices": ("arn:aws:iam::123456789012:mfa/bg",),
    }
    return UserFacts(name, f"arn:aws:iam::123456789012:user/{name}", **(defaults | kw))


def by_check(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check: r for r in results}


def user_checks(*users: UserFacts, principal: Principal = USER) -> dict[str, CheckResult]:
    facts = PrincipalFacts(users=users)
    return by_check(check_credentials(principal, facts, max_key_age=MAX_AGE, now=NOW))


def trust(policy: dict[str, Any]) -> CheckResult:
    facts = PrincipalFacts(roles=(RoleFacts("break-glass-admin-role", "arn:x", policy),))
    return by_check(check_credentials(ROLE, facts, max_key_age=MAX_AGE, now=NOW))["trust_policy"]


def allow(
    principal: object, condition: dict[str, Any] | None = None, action: object = "sts:AssumeRole"
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": action}
    if condition is not None:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def test_healthy_user_passes_every_check() -> None:
    results = user_checks(user(access_keys=(key(used_days=3),)))
    assert list(results) == [
        "exists",
        "access_key_active",
        "access_key_age",
        "login_profile",
        "mfa_device",
    ]
    assert all(r.ok for r in results.values())
    assert results["exists"].reason == "user break-glass-admin exists"
    assert results["access_key_active"].reason == "access key AKIA…1111 active"
    assert results["access_key_age"].reason == "AKIA…1111 10 days old, last used 3 days ago"
    assert results["login_profile"].reason == "console password set"
    assert results["mfa_device"].reason == "MFA device arn:aws:iam::123456789012:mfa/bg"


def test_inactive_only_key_fails() -> None:
    result = user_checks(user(access_keys=(key(active=False),)))["access_key_active"]
    assert (result.ok, result.reason) == (False, "access key AKIA…1111 inactive")


def test_one_active_key_is_enough_and_inactive_ones_are_named() -> None:
    result = user_checks(user(access_keys=(key(KEY1, active=False), key(KEY2))))[
        "access_key_active"
    ]
    assert (result.ok, result.reason) == (True, "access key AKIA…2222 active (AKIA…1111 inactive)")


def test_user_without_access_key_fails_active_check_but_not_age() -> None:
    results = user_checks(user(access_keys=()))
    assert (results["access_key_active"].ok, results["access_key_active"].reason) == (
        False,
        "no access key",
    )
    assert (results["access_key_age"].ok, results["access_key_age"].reason) == (
        True,
        "no active access key",
    )


def test_key_at_or_over_max_age_fails_and_names_the_limit() -> None:
    old = user_checks(user(access_keys=(key(age_days=132),)))["access_key_age"]
    assert (old.ok, old.reason) == (False, "AKIA…1111 132 days old (limit 90 days), never used")
    assert not user_checks(user(access_keys=(key(age_days=90),)))["access_key_age"].ok
    assert user_checks(user(access_keys=(key(age_days=89),)))["access_key_age"].ok


def test_old_inactive_key_does_not_fail_the_age_check() -> None:
    result = user_checks(user(access_keys=(key(KEY1, active=False, age_days=400), key(KEY2))))
    assert result["access_key_age"].ok


def test_missing_login_profile_and_mfa_fail() -> None:
    results = user_checks(user(login_profile=False, mfa_devices=()))
    assert (results["login_profile"].ok, results["login_profile"].reason) == (
        False,
        "no console login profile",
    )
    assert (results["mfa_device"].ok, results["mfa_device"].reason) == (False, "no MFA device")


def test_several_users_of_one_principal_fail_together_and_are_named() -> None:
    principal = Principal("bg", "user", "123456789012", name_pattern="*break-glass*")
    results = user_checks(user("bg-a"), user("bg-b", mfa_devices=()), principal=principal)
    assert results["exists"].reason == "user bg-a, bg-b exists"
    mfa = results["mfa_device"]
    assert not mfa.ok
    assert mfa.reason == "bg-a: MFA device arn:aws:iam::123456789012:mfa/bg; bg-b: no MFA device"


def test_missing_user_fails_exists_and_omits_other_checks() -> None:
    facts = PrincipalFacts(missing=("break-glass-admin",))
    results = check_credentials(USER, facts, max_key_age=MAX_AGE, now=NOW)
    assert results == [
        CheckResult("bg-user", "exists", False, "user break-glass-admin does not exist")
    ]


def test_declared_name_missing_next_to_a_found_one_fails_exists() -> None:
    facts = PrincipalFacts(users=(user(),), missing=("break-glass-old",))
    result = by_check(check_credentials(USER, facts, max_key_age=MAX_AGE, now=NOW))["exists"]
    assert (result.ok, result.reason) == (False, "user break-glass-old does not exist")


def test_unmatched_pattern_fails_exists() -> None:
    principal = Principal("bg", "role", "123456789012", name_pattern="*break-glass*")
    results = check_credentials(
        principal, PrincipalFacts(pattern_unmatched=True), max_key_age=MAX_AGE, now=NOW
    )
    assert results == [CheckResult("bg", "exists", False, "no role matches '*break-glass*'")]


def test_role_facts_give_exists_and_trust_policy_only() -> None:
    facts = PrincipalFacts(
        roles=(
            RoleFacts(
                "break-glass-admin-role", "arn:x", allow({"AWS": "arn:aws:iam::111122223333:root"})
            ),
        )
    )
    results = check_credentials(ROLE, facts, max_key_age=MAX_AGE, now=NOW)
    assert [r.check for r in results] == ["exists", "trust_policy"]
    assert results[0].reason == "role break-glass-admin-role exists"


@pytest.mark.parametrize(
    "principal",
    ["*", {"AWS": "*"}, {"AWS": ["arn:aws:iam::111122223333:root", "*"]}],
)
def test_trust_policy_open_to_anyone_fails(principal: object) -> None:
    result = trust(allow(principal))
    assert (result.ok, result.reason) == (False, "trust policy open to *")


def test_not_principal_allow_is_open_to_anyone() -> None:
    policy = {
        "Statement": {
            "Effect": "Allow",
            "NotPrincipal": {"AWS": "arn:aws:iam::1:root"},
            "Action": "sts:AssumeRole",
        }
    }
    assert not trust(policy).ok


def test_open_principal_with_a_condition_passes_and_names_the_condition() -> None:
    result = trust(allow({"AWS": "*"}, {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}))
    assert result.ok
    assert result.reason == "assumable by * (if aws:PrincipalOrgID); does not require MFA"


def test_named_principal_without_mfa_passes_and_says_so() -> None:
    result = trust(allow({"AWS": "arn:aws:iam::111122223333:root"}))
    assert (result.ok, result.reason) == (
        True,
        "assumable by arn:aws:iam::111122223333:root; does not require MFA",
    )


@pytest.mark.parametrize(
    "condition",
    [
        {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        {"Bool": {"aws:MultiFactorAuthPresent": True}},
        {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}},
        {"Null": {"aws:MultiFactorAuthAge": "false"}},
    ],
)
def test_mfa_condition_is_reported(condition: dict[str, Any]) -> None:
    result = trust(allow({"AWS": "arn:aws:iam::111122223333:user/alice"}, condition))
    assert (result.ok, result.reason) == (
        True,
        "assumable by arn:aws:iam::111122223333:user/alice; requires MFA",
    )


def test_bool_if_exists_mfa_does_not_count_as_required() -> None:
    result = trust(
        allow(
            {"AWS": "arn:aws:iam::1:root"}, {"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}
        )
    )
    assert result.reason.endswith("does not require MFA")


def test_federated_principal_has_no_mfa_note() -> None:
    result = trust(
        allow({"Federated": "arn:aws:iam::1:saml-provider/idp"}, action="sts:AssumeRoleWithSAML")
    )
    assert (result.ok, result.reason) == (True, "assumable by arn:aws:iam::1:saml-provider/idp")


@pytest.mark.parametrize(
    "policy",
    [
        {"Statement": []},
        {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}]},
        allow({"AWS": "arn:aws:iam::1:root"}, action="sts:TagSession"),
        {"Statement": [{"Effect": "Allow", "Principal": "*", "NotAction": "sts:*"}]},
    ],
)
def test_trust_policy_granting_no_assume_fails(policy: dict[str, Any]) -> None:
    result = trust(policy)
    assert (result.ok, result.reason) == (False, "trust policy lets no one assume the role")


def test_wildcard_action_grants_assume() -> None:
    assert trust(allow({"AWS": "*"}, action=["sts:*"])).reason == "trust policy open to *"


def test_root_gets_only_the_mfa_check() -> None:
    root = Principal("root", "root", "123456789012")
    ok = check_credentials(
        root, PrincipalFacts(root=RootFacts(mfa_enabled=True)), max_key_age=MAX_AGE, now=NOW
    )
    bad = check_credentials(
        root, PrincipalFacts(root=RootFacts(mfa_enabled=False)), max_key_age=MAX_AGE, now=NOW
    )
    assert ok == [CheckResult("root", "mfa_device", True, "root user has MFA")]
    assert bad == [CheckResult("root", "mfa_device", False, "no MFA device on the root user")]
    assert check_credentials(root, PrincipalFacts(), max_key_age=MAX_AGE, now=NOW) == []


def test_access_key_ages_by_label() -> None:
    facts = PrincipalFacts(
        users=(user(access_keys=(key(KEY1, age_days=1), key(KEY2, active=False, age_days=2))),)
    )
    assert access_key_ages(facts, NOW) == {"AKIA…1111": 86400.0, "AKIA…2222": 172800.0}


def test_colliding_key_labels_fall_back_to_the_full_id() -> None:
    twin = "AKIAEXAMPLECCCC1111"
    assert key_label(twin) == key_label(KEY1)
    facts = PrincipalFacts(
        users=(user("a", access_keys=(key(KEY1),)), user("b", access_keys=(key(twin),)))
    )
    assert set(access_key_ages(facts, NOW)) == {KEY1, twin}


def test_drill_overdue_names_the_days() -> None:
    result = drill_due(USER, NOW - timedelta(days=132), NOW - timedelta(days=400), NOW)
    assert result == CheckResult(
        "bg-user", "drill_recency", False, "last drill 132 days ago, due every 90 days"
    )


def test_recent_drill_says_when_the_next_is_due() -> None:
    result = drill_due(USER, NOW - timedelta(days=10), NOW - timedelta(days=400), NOW)
    assert (result.ok, result.reason) == (True, "last drill 10 days ago, next due in 80 days")


def test_never_drilled_counts_from_first_watched() -> None:
    fresh = drill_due(USER, None, NOW - timedelta(hours=5), NOW)
    assert (fresh.ok, fresh.reason) == (
        True,
        "no drill since watching began less than a day ago, next due in 89 days",
    )
    stale = drill_due(USER, None, NOW - timedelta(days=91), NOW)
    assert (stale.ok, stale.reason) == (
        False,
        "no drill since watching began 91 days ago, due every 90 days",
    )


def test_drill_is_due_exactly_at_the_limit() -> None:
    last = NOW - timedelta(days=90)
    assert drill_due_at(USER, last, NOW - timedelta(days=500)) == NOW
    assert not drill_due(USER, last, NOW, NOW).ok
    one_day = Principal("x", "user", "1", max_days_between_drills=1)
    assert drill_due(one_day, NOW - timedelta(hours=1), NOW, NOW).reason == (
        "last drill less than a day ago, next due in less than a day"
    )
