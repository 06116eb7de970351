"""``breakglass-watcher audit``: the inventory and every credential check, once, for a person.

Exit status: 0 when every check passes, 1 when a check fails or an account could not be read
(an unread account is not a healthy one), 2 for config errors (raised as ``WatcherError``).

Drill recency needs the daemon's state (last drill per principal, when watching began). It is
read from ``state_path`` when that file exists; a never-drilled principal the daemon has not
recorded yet gets "first watched" = now, as the daemon would on its first tick. Without a state
file the check is left out and a note says so. The same state gives every person of
``people:`` their last attributed drill; an overdue person is a failing check too. With
``checks:`` in the config, the pipeline's drift checks (``watcher/pipeline.py``) are reported
with their reasons, and a failing one fails the audit.

The accounts are the daemon's: the config's list, and with ``accounts: {organization: ...}`` its
accounts as listed now (``accounts.py``); an ``account: any`` principal is audited once per
account (``NAME@ACCOUNT``, ``org_principals.py``). An organization or account that cannot be
listed is an account error, and the audit goes on with what could be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from watcher.accounts import needs_resolving, resolve
from watcher.aws import AwsClients
from watcher.credentials import CheckResult, check_credentials, drill_due
from watcher.inventory import AccountError, discover
from watcher.model import Person, Principal, Rules
from watcher.org_principals import expand
from watcher.pipeline import Check, check_config
from watcher.programme_metrics import person_due_at
from watcher.rules import load_rules
from watcher.settings import Config
from watcher.store.registry import build_store


@dataclass(frozen=True, slots=True)
class PersonDrill:
    """A person of ``people:`` with their newest attributed drill and when the next is due."""

    person: Person
    last_drill: datetime | None
    due: datetime
    now: datetime

    @property
    def ok(self) -> bool:
        return self.now < self.due

    @property
    def reason(self) -> str:
        last = (
            "never seen practising"
            if self.last_drill is None
            else (f"last drill {self.last_drill.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
        )
        every = f"every {self.person.max_days_between_drills} days"
        due = f"due {self.due.astimezone(UTC):%Y-%m-%d}"
        return f"{last}, {due} ({every})" + ("" if self.ok else ": overdue")


@dataclass(frozen=True, slots=True)
class AuditReport:
    principals: tuple[Principal, ...]
    checks: tuple[CheckResult, ...]
    errors: tuple[AccountError, ...]
    truncated: Mapping[str, int]
    notes: tuple[str, ...]
    now: datetime
    people: tuple[PersonDrill, ...] = ()
    pipeline: tuple[Check, ...] = ()

    @property
    def failing(self) -> int:
        return (
            sum(not c.ok for c in self.checks)
            + sum(not p.ok for p in self.people)
            + sum(not c.ok for c in self.pipeline)
        )

    @property
    def ok(self) -> bool:
        """No failing check, no unreadable account, no matching principal left unwatched."""
        return self.failing == 0 and not self.errors and not self.truncated


def run_audit(config: Config, *, fmt: str, out: TextIO) -> int:
    """Audit once and print the report as ``table`` or ``json``."""
    rules = load_rules(config.rules_path)
    report = asyncio.run(audit(config, rules, now=datetime.now(UTC)))
    out.write(format_json(report) if fmt == "json" else format_table(report))
    return 0 if report.ok else 1


async def audit(config: Config, rules: Rules, *, now: datetime) -> AuditReport:
    """Discover, check every watched principal, and check drill recency of declared ones."""
    clients = AwsClients(config.endpoint_url)
    unlisted: list[AccountError] = []
    if needs_resolving(config):
        resolution = await resolve(clients, config, {})
        config = replace(config, accounts=resolution.accounts)
        unlisted = [
            AccountError(p.account, p.kind, f"cannot list {p.source}: {p.message}")
            for p in resolution.problems
        ]
    rules = expand(rules, [a.id for a in config.accounts])
    inventory = await discover(clients, config, rules)
    max_age = config.inventory.max_access_key_age
    checks = [
        check
        for p in inventory.principals
        if (facts := inventory.facts.get(p.name)) is not None
        for check in check_credentials(p, facts, max_key_age=max_age, now=now)
    ]
    declared = [p for p in inventory.principals if p.origin == "declared"]
    notes: list[str] = []
    people: list[PersonDrill] = []
    if config.store.kind != "sqlite" or config.state_path.exists():
        checks += await _drill_checks(config, declared, now)
        people = await _people_drills(config, rules.people, now)
    else:
        notes.append(f"drill recency not checked: no state file at {config.state_path}")
    pipeline = (await check_config(config, now)).checks if config.checks.enabled else []
    order = {p.name: i for i, p in enumerate(inventory.principals)}
    return AuditReport(
        principals=inventory.principals,
        checks=tuple(sorted(checks, key=lambda c: order[c.principal])),
        errors=(*unlisted, *inventory.errors),
        truncated=inventory.truncated,
        notes=tuple(notes),
        now=now,
        people=tuple(people),
        pipeline=tuple(pipeline),
    )


async def _drill_checks(
    config: Config, principals: list[Principal], now: datetime
) -> list[CheckResult]:
    store = build_store(config, read_only=True)  # beside a running daemon
    await store.open()
    try:
        last_drill = (await store.totals()).last_drill
        results = []
        for p in principals:
            last = last_drill.get(p.name)
            first = None if last else await store.first_seen_at("principal", p.name)
            results.append(drill_due(p, last, first or now, now))
        return results
    finally:
        await store.close()


async def _people_drills(
    config: Config, people: tuple[Person, ...], now: datetime
) -> list[PersonDrill]:
    """Each person's last drill from the state; never seen: due from first listed (or now)."""
    if not people:
        return []
    store = build_store(config, read_only=True)  # beside a running daemon
    await store.open()
    try:
        last_drill = (await store.totals()).person_last_drill
        results = []
        for person in people:
            last = last_drill.get(person.name)
            first = None if last else await store.first_seen_at("person", person.name)
            due = person_due_at(person, last, first or now)
            results.append(PersonDrill(person, last, due, now))
        return results
    finally:
        await store.close()


def format_table(report: AuditReport) -> str:
    """Checks grouped per principal in aligned columns, then account errors and notes."""
    width = max((len(c.check) for c in report.checks), default=0)
    unread = {e.account for e in report.errors}
    lines = [
        f"break-glass audit at {report.now.astimezone(UTC):%Y-%m-%d %H:%M} UTC: "
        f"{_count(len(report.principals), 'principal')}, "
        f"{_count(report.failing, 'failing check')}, "
        f"{_count(len(report.errors), 'account error')}",
    ]
    for p in report.principals:
        lines += ["", f"{p.name}  ({p.kind}, {p.origin}, account {p.account})"]
        if p.origin == "discovered":
            lines.append(
                f"  note  found in IAM as {p.arn}; not declared in any rule, so only "
                "unexpected use is watched"
            )
        checks = [c for c in report.checks if c.principal == p.name]
        lines += [f"  {_mark(c.ok):<4}  {c.check:<{width}}  {c.reason}" for c in checks]
        if p.account in unread:
            lines.append(f"  ----  not checked: IAM of account {p.account} could not be read")
    if report.people:
        width = max(len(p.person.name) for p in report.people)
        lines += ["", "People:"]
        lines += [
            f"  {_mark(p.ok):<4}  {p.person.name:<{width}}  {p.reason}"
            f"  [{', '.join(p.person.principals)}]"
            for p in report.people
        ]
    if report.pipeline:
        lines += ["", "Pipeline (checks:):"]
        lines += [
            f"  {_mark(c.ok):<4}  {c.check}  {c.account}/{c.region}  {c.resource}"
            + (f"  {c.reason}" if c.reason else "")
            for c in report.pipeline
        ]
    if report.errors:
        lines += ["", "Account errors:"]
        lines += [f"  FAIL  {e.account}  {e.kind}: {e.message}" for e in report.errors]
    if report.truncated:
        lines += ["", "Discovery truncated:"]
        lines += [
            f"  FAIL  {account}: {n} more discovered principals not watched"
            for account, n in report.truncated.items()
        ]
    if report.notes:
        lines += ["", "Notes:", *(f"  {n}" for n in report.notes)]
    return "\n".join(lines) + "\n"


def format_json(report: AuditReport) -> str:
    """A list of rows: every check, each person's drill recency (check ``person_drill``), each
    account error (check ``source``), each truncation (check ``discovery``), all with the same
    keys."""
    by_name = {p.name: p for p in report.principals}
    rows: list[dict[str, Any]] = [
        _row(by_name[c.principal], c.check, c.ok, c.reason) for c in report.checks
    ]
    rows += [
        _row(None, "person_drill", p.ok, f"person {p.person.name}: {p.reason}")
        for p in report.people
    ]
    rows += [
        _row(None, f"pipeline:{c.check}", c.ok, c.reason or c.resource, c.account)
        for c in report.pipeline
    ]
    rows += [
        _row(None, "source", False, f"{e.kind}: {e.message}", e.account) for e in report.errors
    ]
    rows += [
        _row(None, "discovery", False, f"{n} more discovered principals not watched", account)
        for account, n in report.truncated.items()
    ]
    return orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n"


def _row(
    p: Principal | None, check: str, ok: bool, reason: str, account: str | None = None
) -> dict[str, Any]:
    return {
        "principal": p.name if p else None,
        "kind": p.kind if p else None,
        "origin": p.origin if p else None,
        "account": p.account if p else account,
        "arn": p.arn if p else None,
        "check": check,
        "ok": ok,
        "reason": reason,
    }


def _mark(ok: bool) -> str:
    return "OK" if ok else "FAIL"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
