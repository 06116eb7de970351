"""Reading GetAccountAuthorizationDetails pages (``watcher/iam_entities.py``): a page in the
shape AWS documents (tests/data/iam/README.md), and what a page can hold that is not usable."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watcher.credentials import PrincipalFacts, RoleFacts, check_credentials
from watcher.iam_entities import UNKNOWN_AGE, IamEntity, has_tags, page_entities
from watcher.model import Principal

PAGE = json.loads(
    (Path(__file__).parent / "data" / "iam" / "get-account-authorization-details.json").read_text()
)


def test_the_documented_page_gives_each_user_and_role_with_tags_and_trust() -> None:
    entities = {e.name: e for e in page_entities(PAGE)}
    assert [(e.kind, e.name) for e in page_entities(PAGE)] == [
        ("user", "break-glass-admin"),
        ("user", "alice"),
        ("role", "ops-admin"),
        ("role", "EC2role"),
        ("role", "AWSServiceRoleForSupport"),
    ]  # groups and managed policies are not principals
    admin = entities["break-glass-admin"]
    assert admin == IamEntity(
        "user",
        "break-glass-admin",
        "arn:aws:iam::123456789012:user/break-glass-admin",
        "/",
        {},
        datetime(2021, 3, 4, 10, tzinfo=UTC),
        {"team": "security"},
    )
    assert entities["alice"].path == "/people/" and entities["alice"].tags == {}
    ops = entities["ops-admin"]
    assert ops.tags == {"breakglass": "true"}
    assert ops.trust_policy["Statement"][0]["Principal"] == {
        "AWS": "arn:aws:iam::123456789012:root"
    }
    assert entities["AWSServiceRoleForSupport"].path.startswith("/aws-service-role/")


def test_a_url_encoded_trust_policy_is_decoded_and_judged() -> None:
    ec2 = next(e for e in page_entities(PAGE) if e.name == "EC2role")
    assert ec2.trust_policy["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    role = Principal("ec2", "role", "123456789012", iam_names=("ec2role",))
    facts = PrincipalFacts(roles=(RoleFacts(ec2.name, ec2.arn, ec2.trust_policy),))
    (exists, trust) = check_credentials(
        role, facts, max_key_age=timedelta(days=90), now=datetime.now(UTC)
    )
    assert exists.ok and trust.ok and trust.reason == "assumable by ec2.amazonaws.com"


def test_tags_match_in_any_case_and_every_wanted_pair_must_be_there() -> None:
    ops = next(e for e in page_entities(PAGE) if e.name == "ops-admin")
    assert has_tags(ops, {"breakglass": "true"})
    assert has_tags(ops, {"BREAKGLASS": "True"})
    assert not has_tags(ops, {"breakglass": "true", "team": "sec"})
    assert not has_tags(ops, {"breakglass": "false"})


def test_unusable_items_are_skipped_and_odd_fields_read_safely() -> None:
    page = {
        "UserDetailList": [
            "not an item",
            {"UserName": "no-arn"},
            {"Arn": "arn:aws:iam::123456789012:user/no-name"},
            {
                "UserName": "odd",
                "Arn": "arn:aws:iam::123456789012:user/odd",
                "CreateDate": "soon",
                "Tags": [{"Value": "no key"}, "junk", {"Key": "BreakGlass"}],
            },
        ],
        "RoleDetailList": [
            {
                "RoleName": "bad-trust",
                "Arn": "arn:aws:iam::123456789012:role/bad-trust",
                "AssumeRolePolicyDocument": "%7Bnot json",
                "CreateDate": "2020-01-01T00:00:00",
            },
            {
                "RoleName": "list-trust",
                "Arn": "arn:aws:iam::123456789012:role/list-trust",
                "AssumeRolePolicyDocument": "%5B%5D",
            },
        ],
        "GroupDetailList": None,
    }
    odd, bad, listed = page_entities(page)
    assert (odd.name, odd.created, odd.tags, odd.path) == (
        "odd",
        UNKNOWN_AGE,
        {"breakglass": ""},
        "/",
    )
    assert bad.trust_policy == {} and bad.created == datetime(2020, 1, 1, tzinfo=UTC)
    assert listed.trust_policy == {}
    assert list(page_entities({})) == []
