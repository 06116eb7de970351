"""Identification, classification and replay on the real record corpus (tests/data/real).

Each test names the point of issue 11 it proves. The records are AWS's, not generated.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from watcher.classify import Classifier, carries_network
from watcher.events import Malformed, Skipped, iter_document, iter_file, normalise
from watcher.model import Principal, Rules, TrailEvent
from watcher.replay import run_replay
from watcher.rules import load_rules

REAL = Path(__file__).resolve().parent / "data" / "real"
RULES = load_rules(REAL / "rules.yaml")


def records(name: str) -> list[TrailEvent]:
    items = list(iter_file(REAL / name))
    assert all(isinstance(i, TrailEvent) for i in items), items
    return [i for i in items if isinstance(i, TrailEvent)]


def raw(name: str) -> Any:
    return json.loads((REAL / name).read_text())


def replay(files: list[Path], rules: Rules = RULES) -> tuple[int, list[dict[str, Any]], str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_replay(rules, files, summary=False, out=out, err=err)
    *warnings, summary = err.getvalue().splitlines(keepends=True)
    assert summary.startswith("replay: "), summary
    return code, [json.loads(line) for line in out.getvalue().splitlines()], "".join(warnings)


# -- point 2: a denied assume call names the role only in errorMessage ------------------------


def test_denied_assume_calls_are_failed_uses_of_the_role_they_asked_for() -> None:
    classifier = Classifier(RULES)
    verdicts = [classifier.classify(e) for e in records("lookup-events-denied-assume.json")]
    assert [(v.principal, v.outcome) for v in verdicts if v] == [
        ("bg-restricted", "failure"),
        ("bg-cross-account-denied", "failure"),  # the caller's account's record
        ("bg-saml-denied", "failure"),  # role only in responseElements.assumedRoleUser
        ("bg-github-denied", "failure"),
    ]
    assert all(
        e.raw["requestParameters"] is None for e in records("lookup-events-denied-assume.json")
    )


def test_a_denied_assume_of_another_role_is_no_use() -> None:
    [event] = [e for e in records("lookup-events-denied-assume.json") if e.account][:1]
    other = dict(event.raw, errorMessage=event.raw["errorMessage"].replace("Restricted", "Other"))
    assert Classifier(RULES).classify(normalise(other, "x")) is None


# -- point 4a/4b: CheckMfa is part of an MFA sign-in; MFAUsed in any case ----------------------


def test_check_mfa_is_an_mfa_step_of_the_sign_in_not_a_separate_session() -> None:
    [check] = records("iam-user-checkmfa.json")
    verdict = Classifier(RULES).classify(check)
    assert check.mfa_used is True
    assert verdict is not None and verdict.classification == "drill"
    assert verdict.session_key is None  # counted with its ConsoleLogin


def test_mfa_used_compares_ignoring_case() -> None:
    [upper] = records("root-console-login-mfa-uppercase.json")
    [no] = records("root-console-login.json")
    assert upper.raw["additionalEventData"]["MFAUsed"] == "YES" and upper.mfa_used
    assert not no.mfa_used
    classifier = Classifier(RULES)
    assert [classifier.classify(e).classification for e in (upper, no)] == [  # type: ignore[union-attr]
        "drill",
        "unexpected",
    ]


# -- point 4c: the records AWS writes for one console switch-role -----------------------------


def test_a_correct_console_switch_role_drill_is_a_drill_in_every_record() -> None:
    classifier = Classifier(RULES)
    verdicts = [classifier.classify(e) for e in records("console-switch-role-mfa.json")]
    assert [(v.event.event_name, v.classification) for v in verdicts if v] == [
        ("AssumeRole", "drill"),  # caller-account copy: "AWS Internal", MFA session
        ("AssumeRole", "drill"),  # role-account copy: AWSAccount caller, "AWS Internal"
        ("SwitchRole", "drill"),
        ("CreateUser", "drill"),
    ]


def test_a_switch_without_mfa_stays_unexpected_where_the_records_say_so() -> None:
    classifier = Classifier(RULES)
    verdicts = [classifier.classify(e) for e in records("console-switch-role-no-mfa.json")]
    assert [v.classification for v in verdicts if v] == [
        "unexpected",  # the caller's copy carries the session's MFA: none
        "drill",  # the role-account copy carries no MFA evidence
        "drill",  # SwitchRole carries none either
        "unexpected",  # the session's call: mfaAuthenticated false
    ]


def test_a_switch_from_outside_the_network_stays_unexpected() -> None:
    events = records("console-switch-role-mfa.json")
    moved = [
        replace(e, source_ip="203.0.113.9") if e.source_ip == "198.51.100.15" else e for e in events
    ]
    verdicts = [Classifier(RULES).classify(e) for e in moved]
    assert [v.classification for v in verdicts if v] == [
        "drill",
        "drill",
        "unexpected",
        "unexpected",
    ]


def test_aws_internal_is_still_no_address_outside_switch_role_companions() -> None:
    [put_rule] = records("root-api-console.json")  # a root console call: "AWS Internal"
    assert put_rule.source_ip == "AWS Internal"
    assert carries_network(put_rule)


# -- point 5: which copy of a cross-account assume decides ------------------------------------


def test_replay_lets_the_callers_copy_decide_a_switch_without_mfa() -> None:
    _, verdicts, _ = replay([REAL / "console-switch-role-no-mfa.json"])
    assert [(v["event_name"], v["classification"], v["event_id"][:8]) for v in verdicts] == [
        ("AssumeRole", "unexpected", "24fb06e3"),  # the caller's copy, read first, decided
        ("SwitchRole", "drill", "80627092"),
        ("CreateUser", "unexpected", "48d0221b"),
    ]


@pytest.mark.parametrize("caller_first", [True, False])
def test_the_copy_with_the_callers_identity_decides_whatever_the_order(
    tmp_path: Path, caller_first: bool
) -> None:
    """A break-glass user switching into a break-glass role: the caller's copy names the user
    (the acting identity), the role-account copy the role; the caller's copy decides."""
    caller, role_copy = raw("console-switch-role-mfa.json")[:2]
    first, second = (caller, role_copy) if caller_first else (role_copy, caller)
    (tmp_path / "a.json").write_text(json.dumps(first))
    (tmp_path / "b.json").write_text(json.dumps(second))
    bob = Principal("bg-bob", "user", "444433332222", iam_names=("bob@example.com",))
    rules = Rules(principals=(*RULES.principals, bob), exercises=RULES.exercises)
    _, verdicts, _ = replay([tmp_path / "a.json", tmp_path / "b.json"], rules)
    assert [(v["principal"], v["event_id"]) for v in verdicts] == [
        ("bg-bob", "14fb06e3-5649-4fc3-a274-226ba85c8be6")
    ]


# -- point 6: root console actions are uses, AWS acting on its own is not ---------------------


def test_root_console_actions_are_uses_and_service_events_are_not() -> None:
    classifier = Classifier(RULES)
    [console] = records("root-console-action-invoked-by-signin.json")
    assert console.identity["invokedBy"] == "signin.amazonaws.com"
    assert classifier.classify(console) is not None
    [service] = records("service-event.json")
    assert classifier.classify(service) is None
    by_service = dict(
        console.raw, userIdentity=dict(console.identity, invokedBy="support.amazonaws.com")
    )
    assert classifier.classify(normalise(by_service, "x")) is None


def test_assume_root_is_a_use_of_the_member_accounts_root() -> None:
    classifier = Classifier(RULES)
    [assume_root] = records("root-assume-root.json")
    [session_call] = records("root-assume-root-session.json")
    first, then = classifier.classify(assume_root), classifier.classify(session_call)
    assert first is not None and then is not None
    assert first.principal == then.principal == "bg-root-222222222222"
    assert first.session_key == then.session_key == "ASIAIOSFODNN7EXAMPLE"


# -- point 7: early records without eventID; Insights and digests -----------------------------


def test_an_eventversion_1_0_record_gets_a_stable_content_derived_id(tmp_path: Path) -> None:
    [event] = records("root-api-eventversion-1.0-no-event-id.json")
    minified = tmp_path / "minified.json.gz"
    record = raw("root-api-eventversion-1.0-no-event-id.json")["Records"][0]
    reordered = dict(reversed(list(record.items())))
    minified.write_bytes(gzip.compress(json.dumps({"Records": [reordered]}).encode()))
    [again] = [i for i in iter_file(minified) if isinstance(i, TrailEvent)]
    assert event.event_id.startswith("derived-") and again.event_id == event.event_id
    later = dict(record, eventTime="2014-03-23T21:50:35Z")
    assert normalise(later, "x").event_id != event.event_id


def test_a_recent_record_without_event_id_is_still_malformed() -> None:
    [event] = records("root-api-console.json")
    record = {k: v for k, v in event.raw.items() if k != "eventID"}
    [item] = iter_document({"Records": [record]}, "x")
    assert isinstance(item, Malformed) and "eventID" in item.reason


def test_insights_and_digest_files_are_skipped_quietly() -> None:
    digest = next((REAL / "AWSLogs").rglob("*.json"))
    items = list(iter_file(REAL / "insights.json")) + list(iter_file(digest))
    assert [type(i) for i in items] == [Skipped, Skipped, Skipped]
    code, verdicts, err = replay([REAL / "insights.json", digest])
    assert (code, verdicts) == (0, [])
    assert "malformed" not in err and "warning" not in err
    assert "3 items that are no management events skipped" in err


# -- point 8: replay on folders, into a closed pipe, and where its rules come from ------------


def test_replay_of_a_folder_reads_json_and_json_gz_below_it_only(tmp_path: Path) -> None:
    nested = tmp_path / "AWSLogs" / "555566667777" / "CloudTrail" / "us-east-1" / "2020" / "09"
    nested.mkdir(parents=True)
    records_ = raw("console-switch-role-mfa.json")
    (nested / "a.json.gz").write_bytes(
        gzip.compress(json.dumps({"Records": records_[2:]}).encode())
    )
    (nested / "b.JSON").write_text(json.dumps({"Records": records_[:2]}))
    (nested / "notes.txt").write_text("not json")
    (nested / "manifest.csv").write_text("a,b\n")
    code, verdicts, err = replay([tmp_path])
    assert code == 0 and err == ""
    assert sorted(v["event_name"] for v in verdicts) == ["AssumeRole", "CreateUser", "SwitchRole"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_replay_into_a_closed_pipe_stops_without_a_traceback(tmp_path: Path) -> None:
    big = tmp_path / "many.json"
    record = raw("iam-user-console-action.json")
    many = [dict(record, eventID=f"e-{n}") for n in range(20000)]
    big.write_text(json.dumps({"Records": many}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher", "replay", "--rules", str(REAL / "rules.yaml"), str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read().decode()
    proc.stderr.close()
    code = proc.wait(timeout=60)
    assert json.loads(first)["principal"] == "bg-janedoe"
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert code == 141


def test_replay_says_where_its_rules_come_from(tmp_path: Path) -> None:
    helped = _cli("replay", "--help", cwd=tmp_path)
    assert "default: ./rules" in " ".join(helped.stdout.split())
    missing = _cli("replay", str(REAL / "insights.json"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "no --rules given and ./rules does not exist" in missing.stderr
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text((REAL / "rules.yaml").read_text())
    found = _cli("replay", str(REAL / "iam-user-checkmfa.json"), cwd=tmp_path)
    assert found.returncode == 0 and json.loads(found.stdout)["principal"] == "bg-anaya"
