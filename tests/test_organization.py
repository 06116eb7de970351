"""Accounts from AWS Organizations and ``regions: all``: the pure resolution, the config form,
and a daemon watching a moto organization (accounts found, added while running, one broken)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from harness import queue_depth, running_daemon, wait_for, write_config
from test_deploy_aws import CENTRAL, FORWARDER, READER, create_stack

from watcher.accounts import resolve
from watcher.audit import audit
from watcher.aws import AwsClients
from watcher.clock import utc_now
from watcher.config import load_config, parse_config
from watcher.daemon import Daemon
from watcher.emulator.infra import account_client, deliver
from watcher.emulator.lookup import LookupEventStore
from watcher.emulator.records import api_call_record, assume_role_record, iam_user_identity
from watcher.emulator.server import Emulator
from watcher.emulator.sts import require_roles_in
from watcher.errors import ConfigError
from watcher.events import normalise
from watcher.organization import Member, members, org_accounts
from watcher.regions import enabled
from watcher.render import eventbridge_pattern_json
from watcher.rules import load_rules
from watcher.settings import Organization

# AWS answers a denied AssumeRole with AccessDenied, a code STS's service model has no shape for.
pytestmark = pytest.mark.filterwarnings("ignore:Exception.STSClientError.:UserWarning")

READ_ROLE = "breakglass-watcher-read"
READER_ROLE = "breakglass-watcher-reader"  # reader-role.yaml's RoleName


def _trust(principal: dict[str, str]) -> str:
    """A trust policy letting ``principal`` assume the role."""
    statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


TRUST = _trust({"AWS": "arn:aws:iam::123456789012:role/breakglass-watcher"})


def test_members_read_state_then_status() -> None:
    items = [
        {"Id": "111111111111", "State": "ACTIVE", "Status": "ACTIVE"},
        {"Id": "222222222222", "Status": "SUSPENDED"},
        {"Id": "333333333333", "State": "closed"},
        {"Arn": "no id"},
    ]
    assert members(items) == [
        Member("111111111111", "ACTIVE"),
        Member("222222222222", "SUSPENDED"),
        Member("333333333333", "CLOSED"),
    ]


def test_org_accounts_are_active_not_excluded_and_read_through_the_role() -> None:
    settings = Organization(
        role_name="ro", exclude=("333333333333",), include_management=False, regions=("eu-west-1",)
    )
    listed = [
        Member("333333333333", "ACTIVE"),
        Member("222222222222", "ACTIVE"),
        Member("111111111111", "ACTIVE"),
        Member("444444444444", "SUSPENDED"),
        Member("555555555555", "PENDING_CLOSURE"),
    ]
    accounts = org_accounts(settings, listed, management="111111111111")
    assert [(a.id, a.role_arn, a.regions) for a in accounts] == [
        ("222222222222", "arn:aws:iam::222222222222:role/ro", ("eu-west-1",))
    ]
    with_management = org_accounts(
        Organization(role_name="ro", all_regions=True), listed, "111111111111"
    )
    assert [a.id for a in with_management] == ["111111111111", "222222222222", "333333333333"]
    assert all(a.all_regions and a.regions == () for a in with_management)


def test_enabled_regions_leave_out_regions_not_opted_in() -> None:
    items = [
        {"RegionName": "us-east-1", "OptInStatus": "opt-in-not-required"},
        {"RegionName": "af-south-1", "OptInStatus": "not-opted-in"},
        {"RegionName": "ap-east-1", "OptInStatus": "opted-in"},
        {"RegionName": "eu-west-1"},
    ]
    assert enabled(items) == ("ap-east-1", "eu-west-1", "us-east-1")


def _config(accounts: str, regions: str = "") -> dict[str, Any]:
    import yaml

    text = f"rules: r\naccounts: {accounts}\nsources: {{lookup: {{}}}}\n{regions}"
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def test_config_takes_an_organization_and_regions_all(tmp_path: Path) -> None:
    config = parse_config(
        _config(
            f'{{organization: {{role_name: {READ_ROLE}, exclude: ["123456789012"], '
            "include_management: false, refresh: 5m}}",
            "regions: all",
        ),
        label="c.yaml",
        base_dir=tmp_path,
    )
    assert config.accounts == ()
    assert config.organization == Organization(
        role_name=READ_ROLE,
        exclude=("123456789012",),
        include_management=False,
        refresh=timedelta(minutes=5),
        regions=(),
        all_regions=True,
    )
    listed = parse_config(
        _config(
            '[{id: "123456789012", regions: all}, {id: "210987654321"}]', "regions: [eu-west-1]"
        ),
        label="c.yaml",
        base_dir=tmp_path,
    )
    assert [(a.all_regions, a.regions) for a in listed.accounts] == [
        (True, ()),
        (False, ("eu-west-1",)),
    ]


@pytest.mark.parametrize(
    ("accounts", "regions", "where", "reason"),
    [
        ("{organization: {}}", "", "accounts.organization.role_name", "is required"),
        ("{organization: {role_name: 'a b'}}", "", "accounts.organization.role_name", "not an IAM"),
        ("{organization: {role_name: r, exclude: [12]}}", "", "exclude[0]", "expected text"),
        ("{orgs: {}}", "", "accounts", "orgs"),
        ('[{id: "123456789012"}]', "regions: some", "regions", "list of regions or all"),
    ],
)
def test_config_problems_are_located(
    tmp_path: Path, accounts: str, regions: str, where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(accounts, regions), label="c.yaml", base_dir=tmp_path)
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "c.yaml" in text and where in text and reason in text


# -- against a moto organization -------------------------------------------------------------


@pytest.fixture
def organization(emulator: Emulator) -> Iterator[tuple[str, list[str]]]:
    """A moto organization with three member accounts, each with the read role except the
    last (its role is broken: AssumeRole into it is denied). Yields (management, members)."""
    orgs = boto3.client(
        "organizations", region_name="us-east-1", endpoint_url=emulator.endpoint_url
    )
    management = orgs.create_organization(FeatureSet="ALL")["Organization"]["MasterAccountId"]
    created = [
        orgs.create_account(AccountName=f"m{n}", Email=f"m{n}@example.com")["CreateAccountStatus"][
            "AccountId"
        ]
        for n in range(3)
    ]
    for account in [management, *created[:2]]:
        _create_read_role(emulator.endpoint_url, account)
    require_roles_in([management, *created])
    try:
        yield management, created
    finally:
        require_roles_in([])


def _create_read_role(endpoint_url: str, account: str) -> None:
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint_url)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
        RoleSessionName="setup",
    )["Credentials"]
    iam = boto3.client(
        "iam",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    iam.create_role(RoleName=READ_ROLE, AssumeRolePolicyDocument=TRUST)


@pytest.mark.slow
async def test_resolve_lists_the_organization_and_its_enabled_regions(
    emulator: Emulator, organization: tuple[str, list[str]], tmp_path: Path
) -> None:
    management, created = organization
    config = parse_config(
        _config(f"{{organization: {{role_name: {READ_ROLE}}}}}", "regions: all")
        | {"endpoint_url": emulator.endpoint_url},
        label="c.yaml",
        base_dir=tmp_path,
    )
    result = await resolve(AwsClients(emulator.endpoint_url), config, {})
    by_id = {a.id: a for a in result.accounts}
    assert result.management == management
    assert set(by_id) == {management, *created}
    working = by_id[created[0]]
    assert working.role_arn == f"arn:aws:iam::{created[0]}:role/{READ_ROLE}"
    assert "us-east-1" in working.regions and "eu-west-1" in working.regions
    # The broken account keeps only the home region (its poller will show the failure).
    assert by_id[created[2]].regions == ("us-east-1",)
    assert [(p.source, p.account, p.kind) for p in result.problems] == [
        ("regions", created[2], "auth")
    ]


def _org_config(
    folder: Path, endpoint_url: str, sources: str = "{lookup: {interval: 1s, overlap: 20m}}"
) -> Path:
    (folder / "rules").mkdir()
    (folder / "rules" / "rules.yaml").write_text(
        """
principals:
  - name: bg-user
    match: {user_name: break-glass-admin}
    account: any
"""
    )
    config = folder / "config.yaml"
    config.write_text(
        f"""rules: rules
state: state.db
listen: 127.0.0.1:0
endpoint_url: {endpoint_url}
regions: [us-east-1]
accounts: {{organization: {{role_name: {READ_ROLE}, refresh: 1s}}}}
sources: {sources}
inventory: {{enabled: false}}
"""
    )
    return config


async def test_unready_until_the_organization_is_listed(emulator: Emulator, tmp_path: Path) -> None:
    """No organization to list (moto: not in use): no accounts, so not ready; listed: ready."""
    daemon = Daemon.load(_org_config(tmp_path, emulator.endpoint_url))
    await daemon._resolve_accounts()
    assert daemon.readiness().checks["organization"] is False
    assert daemon.sources == []
    boto3.client(
        "organizations", region_name="us-east-1", endpoint_url=emulator.endpoint_url
    ).create_organization(FeatureSet="ALL")
    await daemon._resolve_accounts()
    assert daemon.readiness().checks["organization"] is True
    assert [s.labels[0] for s in daemon.sources] == ["lookup"]


# -- end to end: the organization as deployed, a real daemon, both sources ---------------------

WATCHER_ROLE = "arn:aws:iam::123456789012:role/breakglass-watcher"
ORG_RULES = """
principals:
  - name: bg-role
    match: {role_name: break-glass-admin}
    account: any
"""
MEMBERS = 10  # with the management account 11 lookup sources: /readyz tolerates one stale


@dataclass
class DeployedOrganization:
    """A moto organization with the watcher deployed as README "Organization" says."""

    endpoint: str
    lookup: LookupEventStore
    management: str
    members: list[str]
    queue_url: str
    bus_arn: str
    pattern: str

    def add_member(self, name: str) -> str:
        """A new account with what the StackSets put into every member: the reader role and
        the forwarder. moto's StackSets do not deploy to an account created later (AWS's
        automatic deployment does): the test creates the same stacks from the same templates."""
        orgs = boto3.client("organizations", region_name="us-east-1", endpoint_url=self.endpoint)
        account = str(
            orgs.create_account(AccountName=name, Email=f"{name}@example.com")[
                "CreateAccountStatus"
            ]["AccountId"]
        )
        create_stack(self.endpoint, READER, {"WatcherRoleArn": WATCHER_ROLE}, account=account)
        create_stack(
            self.endpoint,
            FORWARDER,
            {"CentralEventBusArn": self.bus_arn, "EventPattern": self.pattern},
            account=account,
        )
        return account

    def use(self, account: str, event_id: str, *, lookup: bool, eventbridge: bool) -> None:
        """Someone assumes ``account``'s break-glass role, as CloudTrail records it: kept for
        LookupEvents and/or put on the account's default bus, where CloudTrail's EventBridge
        integration puts it (the forwarder's rule sends it on to the central bus)."""
        record = assume_role_record(
            caller=iam_user_identity(account, "alice", "AKIAALICE00000000001"),
            role_arn=f"arn:aws:iam::{account}:role/break-glass-admin",
            session_name="oncall",
            event_time=utc_now() - timedelta(minutes=1),
            event_id=event_id,
        )
        if lookup:
            self.lookup.add(record)
        if eventbridge:
            deliver(self.endpoint, record, account)


@pytest.fixture
def deployed(emulator: Emulator, tmp_path: Path) -> Iterator[DeployedOrganization]:
    """The central intake (eventbridge-to-sqs.yaml) and the management account's reader stack
    in the management account; the reader role and the forwarder in every member, from the
    templates the StackSets deploy (tests/test_deploy_organization.py creates the StackSets
    themselves). moto does not evaluate the central bus policy (aws:PrincipalOrgID), the
    forwarder's role, nor its retry policy and dead-letter queue: events reach the bus whatever
    they say. moto's cross-account delivery keeps the record (``detail``) but stamps the
    central account and the delivery time on the envelope; the watcher reads neither."""
    endpoint = emulator.endpoint_url
    orgs = boto3.client("organizations", region_name="us-east-1", endpoint_url=endpoint)
    organization = orgs.create_organization(FeatureSet="ALL")["Organization"]
    management = organization["MasterAccountId"]
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(ORG_RULES)
    pattern = eventbridge_pattern_json(load_rules(tmp_path / "rules"))
    central = create_stack(
        endpoint, CENTRAL, {"EventPattern": pattern, "ForwardingOrganizationId": organization["Id"]}
    )
    create_stack(endpoint, READER, {"WatcherRoleArn": WATCHER_ROLE, "ReadOrganization": "true"})
    bus = central["EventBusArn"]
    org = DeployedOrganization(
        endpoint, emulator.lookup, management, [], central["QueueUrl"], bus, pattern
    )
    org.members = [org.add_member(f"m{n}") for n in range(MEMBERS)]
    require_roles_in([management, *org.members])
    try:
        yield org
    finally:
        require_roles_in([])


def _break_reader_trust(endpoint: str, account: str) -> None:
    """The reader role trusts a service only: the watcher's AssumeRole is denied (a role never
    created or deleted is the ``organization`` fixture's broken account)."""
    account_client(endpoint, "iam", "us-east-1", account).update_assume_role_policy(
        RoleName=READER_ROLE, PolicyDocument=_trust({"Service": "ec2.amazonaws.com"})
    )


@pytest.mark.slow
def test_the_organization_end_to_end_through_both_sources(
    deployed: DeployedOrganization, tmp_path: Path
) -> None:
    """Every account is found and read; a use in a member comes through EventBridge and
    LookupEvents and is one use; an account created while running is watched without a
    restart; the member whose reader role no longer trusts the watcher fails alone (/readyz
    stays 200, the rest keep detecting); a closed account is dropped with its series."""
    org = deployed
    working, broken, closing = org.members[:3]
    _break_reader_trust(org.endpoint, broken)
    config = write_config(
        tmp_path,
        endpoint_url=org.endpoint,
        queue_url=org.queue_url,
        rules=ORG_RULES,
        accounts=f"{{organization: {{role_name: {READER_ROLE}, refresh: 1s}}}}",
        extra="regions: [us-east-1]",
    )
    org.use(working, "via-eventbridge", lookup=False, eventbridge=True)
    org.use(working, "via-lookup", lookup=True, eventbridge=False)
    org.use(working, "via-both", lookup=True, eventbridge=True)
    with running_daemon(config) as daemon:

        def up(account: str) -> float:
            return daemon.metric("breakglass_source_up", source="lookup", account=account)

        def used(event_id: str, principal: str) -> bool:
            return any(
                (e["event_id"], e["principal"]) == (event_id, principal) for e in daemon.events()
            )

        def stored(*event_ids: str) -> bool:
            return all(used(event_id, principal) for event_id in event_ids)

        principal = f"bg-role@{working}"
        # Read from the queue at once, maybe before the organization is listed (the queue
        # reader is not restarted when the accounts change: its cut-short long poll would hide
        # the messages for the visibility timeout, two minutes here).
        wait_for(lambda: all(up(a) == 1 for a in (org.management, working)), 30, "polled")
        wait_for(lambda: stored("via-eventbridge", "via-lookup", "via-both"), 30, "the uses")
        # Both sources have read past the record: the queue is drained and the member's
        # poller succeeded after it was stored. Still one use.
        wait_for(lambda: queue_depth(org.endpoint, org.queue_url) == (0, 0), 30, "drained")
        seen = daemon.metric(
            "breakglass_source_last_success_timestamp_seconds", source="lookup", account=working
        )
        wait_for(
            lambda: (
                daemon.metric(
                    "breakglass_source_last_success_timestamp_seconds",
                    source="lookup",
                    account=working,
                )
                > seen
            ),
            30,
            "another poll",
        )
        assert [e["event_id"] for e in daemon.events()].count("via-both") == 1
        assert daemon.metric("breakglass_events_total", principal=principal) == 3

        # The broken account fails on its own and /readyz stays 200.
        wait_for(
            lambda: (
                daemon.metric(
                    "breakglass_source_errors_total", source="lookup", account=broken, kind="auth"
                )
                >= 1
            ),
            30,
            "the broken account's error",
        )
        assert up(broken) == 0
        assert [a for a in [org.management, *org.members] if up(a) != 1] == [broken]
        assert daemon.get("/readyz")[0] == 200

        # A new account: polled without a restart, and its use detected through both sources.
        added = org.add_member("late")
        require_roles_in([org.management, *org.members, added])
        wait_for(lambda: up(added) == 1, 30, "the new account polled")
        org.use(added, "late-use", lookup=True, eventbridge=True)
        wait_for(lambda: used("late-use", f"bg-role@{added}"), 30, "the new account's use")

        # A closed account is dropped: no series names it any more, not even its past use.
        org.use(closing, "closing-use", lookup=True, eventbridge=True)
        wait_for(lambda: used("closing-use", f"bg-role@{closing}"), 30, "the closing account's use")
        orgs = boto3.client("organizations", region_name="us-east-1", endpoint_url=org.endpoint)
        orgs.close_account(AccountId=closing)

        def series_of(account: str) -> list[tuple[str, frozenset[tuple[str, str]]]]:
            return [
                key
                for key in daemon.metrics()
                if ("account", account) in key[1] or ("principal", f"bg-role@{account}") in key[1]
            ]

        assert series_of(closing)
        wait_for(lambda: not series_of(closing), 30, "the closed account's series removed")
        assert up(working) == 1 and daemon.get("/readyz")[0] == 200
        assert [e["event_id"] for e in daemon.events()].count("via-both") == 1


async def test_a_use_read_before_the_organization_is_listed_is_that_accounts(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The queue is read from the start, the organization listed a moment later (or an account
    joins between two listings): a use read meanwhile is the account's ``NAME@ACCOUNT`` use,
    stored and counted, not taken for no break-glass event and deleted from the queue."""
    member = "210987654321"
    daemon = Daemon.load(_org_config(tmp_path, emulator.endpoint_url))
    assert daemon.rules.principals == ()  # no account listed yet: nothing expanded
    record = api_call_record(
        identity=iam_user_identity(member, "break-glass-admin", "AKIABREAKGLASS000001"),
        event_name="ListUsers",
        event_source="iam.amazonaws.com",
        account=member,
        event_time=utc_now(),
        event_id="early-use",
    )
    await daemon.store.open()
    try:
        await daemon.sink([normalise(record, "test")], "eventbridge", {})
        stored = [(e["event_id"], e["principal"]) for e in await daemon.store.recent_events(5)]
    finally:
        await daemon.store.close()
    assert stored == [("early-use", f"bg-user@{member}")]


# -- account: any in the offline commands ----------------------------------------------------


@pytest.mark.slow
async def test_audit_checks_an_org_wide_rule_in_every_account_of_the_organization(
    emulator: Emulator, organization: tuple[str, list[str]], tmp_path: Path
) -> None:
    """The audit lists the organization as the daemon does and checks ``bg-user`` (account:
    any) once per account; the member whose reader role is missing is an account error."""
    management, created = organization
    working, _, broken = created
    account_client(emulator.endpoint_url, "iam", "us-east-1", working).create_user(
        UserName="break-glass-admin"
    )
    config = load_config(_org_config(tmp_path, emulator.endpoint_url))
    report = await audit(config, load_rules(config.rules_path), now=utc_now())
    names = {p.name for p in report.principals}
    assert names == {f"bg-user@{a}" for a in [management, *created]}
    exists = {c.principal: c.ok for c in report.checks if c.check == "exists"}
    assert exists[f"bg-user@{working}"] is True
    assert exists[f"bg-user@{management}"] is False  # no such user there: a failing check
    assert [(e.account, e.kind) for e in report.errors] == [(broken, "auth")]
    assert f"bg-user@{broken}" not in exists
    assert not report.ok


@pytest.mark.slow
async def test_a_change_of_the_accounts_restarts_only_the_sources_it_changes(
    emulator: Emulator, organization: tuple[str, list[str]], tmp_path: Path
) -> None:
    """An account joins: its pollers are new; the queue reader and every other account's
    pollers are the ones already running (not stopped, so no long poll is cut short)."""
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    sources = f'{{lookup: {{interval: 1s}}, eventbridge: {{queue_url: "{queue}"}}}}'
    daemon = Daemon.load(_org_config(tmp_path, emulator.endpoint_url, sources))
    (reader,) = daemon.sources  # no account listed yet: only the queue reader
    await daemon._resolve_accounts()
    before = {s.labels: s for s in daemon.sources}
    assert before[reader.labels] is reader and len(before) == 5
    orgs = boto3.client(
        "organizations", region_name="us-east-1", endpoint_url=emulator.endpoint_url
    )
    added = orgs.create_account(AccountName="late", Email="late@example.com")[
        "CreateAccountStatus"
    ]["AccountId"]
    await daemon._resolve_accounts()
    after = {s.labels: s for s in daemon.sources}
    assert set(after) - set(before) == {("lookup", added, "us-east-1")}
    assert all(after[labels] is source for labels, source in before.items())
