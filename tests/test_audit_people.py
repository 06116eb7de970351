"""``audit`` lists every person of ``people:`` with their last drill, from the daemon's state;
an overdue person fails the audit like an overdue principal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from test_audit import ACCOUNT, RULES_YAML, config, healthy, iam  # noqa: F401  (fixture)

from watcher.audit import audit, format_json, format_table
from watcher.model import TrailEvent, Verdict
from watcher.rules import load_rules
from watcher.store.sqlite import SqliteStore

PEOPLE = """
people:
  - name: alice
    principals: [break-glass-admin-role]
  - name: bob
    principals: [break-glass-admin, break-glass-admin-role]
    max_days_between_drills: 30
"""


async def state_with(state: Path, *, alice_drill: datetime, bob_listed: datetime) -> None:
    event = TrailEvent(
        event_id="drill-alice",
        event_time=alice_drill,
        account=ACCOUNT,
        region="us-east-1",
        event_name="AssumeRole",
        event_source="sts.amazonaws.com",
        identity={},
        raw={},
    )
    verdict = Verdict(event, "break-glass-admin-role", "drill", "success", person="alice")
    store = SqliteStore(state)
    await store.open()
    try:
        await store.commit([(verdict, "lookup")], now=alice_drill)
        await store.first_seen("person", "bob", bob_listed)
        for principal in ("break-glass-admin", "break-glass-admin-role"):
            await store.first_seen("principal", principal, bob_listed)
    finally:
        await store.close()


async def test_audit_lists_people_with_their_last_drill(
    tmp_path: Path,
    moto_endpoint: str,
    iam: Any,  # noqa: F811
) -> None:
    healthy(iam)
    cfg = config(tmp_path, moto_endpoint)
    (cfg.rules_path / "break-glass.yaml").write_text(RULES_YAML + PEOPLE)
    now = datetime.now(UTC)
    alice_drill = (now - timedelta(days=12)).replace(microsecond=0)
    await state_with(cfg.state_path, alice_drill=alice_drill, bob_listed=now - timedelta(days=31))

    report = await audit(cfg, load_rules(cfg.rules_path), now=now)

    alice, bob = report.people
    assert alice.ok and alice.last_drill == alice_drill
    assert not bob.ok and bob.last_drill is None
    assert report.failing == 1 and not report.ok
    table = format_table(report)
    people = table.split("\nPeople:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    due = (alice_drill + timedelta(days=180)).strftime("%Y-%m-%d")
    assert people[0] == (
        f"  OK    alice  last drill {alice_drill:%Y-%m-%d %H:%M} UTC, due {due} "
        "(every 180 days)  [break-glass-admin-role]"
    )
    assert people[1].startswith("  FAIL  bob    never seen practising, due ")
    assert people[1].endswith(
        "(every 30 days): overdue  [break-glass-admin, break-glass-admin-role]"
    )
    rows = [r for r in json.loads(format_json(report)) if r["check"] == "person_drill"]
    assert [(r["ok"], r["reason"].split(":")[0]) for r in rows] == [
        (True, "person alice"),
        (False, "person bob"),
    ]
