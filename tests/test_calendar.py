"""The exercise calendar: parsed back by the icalendar library, every event at the instants of
the schedule's windows, through daylight-saving changes, gaps and repeated hours."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from harness import write_config
from icalendar import Calendar, Event, Timezone

from watcher.calendar import calendar_span, render_calendar, window_uid
from watcher.cli import main
from watcher.daemon import Daemon
from watcher.model import Exercise, Person, Principal, Rules, Window
from watcher.schedule import windows_overlapping

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/break-glass-admin-role"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
YEAR = (NOW, NOW + timedelta(days=365))

ADMIN = Principal("bg-admin", "role", ACCOUNT, ("break-glass-admin-role",), arn=ROLE_ARN)
# Weekly on Sunday night: every spring-forward and fall-back change of both zones is a Sunday.
BERLIN = Exercise(
    "berlin-weekly",
    ("bg-admin",),
    timezone="Europe/Berlin",
    schedule="30 2 * * 0",
    duration=timedelta(hours=3),
    session_name="break-glass-exercise*",
)
NEW_YORK = Exercise(
    "new-york-weekly",
    ("bg-admin",),
    timezone="America/New_York",
    schedule="30 1 * * 0",
    duration=timedelta(hours=2),
    require_mfa=True,
)
RULES = Rules(
    (ADMIN,),
    (BERLIN, NEW_YORK),
    people=(Person("alice", ("bg-admin",)), Person("zed", ("bg-other",))),
)


def parse(ics: bytes) -> Calendar:
    return Calendar.from_ical(ics)


def events(calendar: Calendar) -> list[Event]:
    return [e for e in calendar.walk("VEVENT") if isinstance(e, Event)]


def instants(calendar: Calendar) -> set[tuple[str, datetime, datetime]]:
    """(UID, start, end) of every event, as UTC instants, read as the library reads them."""
    return {
        (
            str(e["UID"]),
            e.decoded("DTSTART").astimezone(UTC),
            e.decoded("DTEND").astimezone(UTC),
        )
        for e in events(calendar)
    }


def expected(
    exercise: Exercise, after: datetime, until: datetime
) -> set[tuple[str, datetime, datetime]]:
    return {(window_uid(w), w.start, w.end) for w in windows_overlapping(exercise, after, until)}


def test_a_year_round_trips_to_the_schedules_windows_in_two_zones() -> None:
    ics = render_calendar(RULES, *YEAR, stamp=NOW)
    calendar = parse(ics)
    want = expected(BERLIN, *YEAR) | expected(NEW_YORK, *YEAR)
    assert len(want) == 104  # 52 Sundays a year, two exercises
    assert instants(calendar) == want
    # The change days of both zones, at the instants DESIGN.md's rule gives: a skipped local
    # time one gap later, a repeated one at its first occurrence.
    starts = {start for _, start, _ in instants(calendar)}
    assert {
        datetime(2027, 3, 28, 1, 30, tzinfo=UTC),  # Berlin 02:30 skipped: 03:30 CEST
        datetime(2027, 10, 31, 0, 30, tzinfo=UTC),  # Berlin 02:30 twice: the CEST one
        datetime(2027, 3, 14, 6, 30, tzinfo=UTC),  # New York 01:30 EST, before the gap
        datetime(2027, 11, 7, 5, 30, tzinfo=UTC),  # New York 01:30 twice: the EDT one
    } <= starts


def test_each_zone_gets_a_vtimezone_that_alone_gives_the_right_instants() -> None:
    """Read every event's local time through the file's own VTIMEZONE (not the machine's tz
    database): a subscribing calendar without IANA zones sees the same instants."""
    calendar = parse(render_calendar(RULES, *YEAR, stamp=NOW))
    zones: dict[str, Timezone] = {
        str(tz["TZID"]): tz for tz in calendar.walk("VTIMEZONE") if isinstance(tz, Timezone)
    }
    assert set(zones) == {"Europe/Berlin", "America/New_York"}
    tzinfos = {name: tz.to_tz() for name, tz in zones.items()}
    seen = set()
    for event in events(calendar):
        start = event["DTSTART"]
        naive = event.decoded("DTSTART").replace(tzinfo=None)
        instant = naive.replace(tzinfo=tzinfos[str(start.params["TZID"])]).astimezone(UTC)
        seen.add((str(event["UID"]), instant))
    assert seen == {
        (uid, start) for uid, start, _ in expected(BERLIN, *YEAR) | expected(NEW_YORK, *YEAR)
    }


def test_a_start_in_a_spring_forward_gap_is_written_one_gap_later() -> None:
    """02:30 on 28 March 2027 does not exist in Berlin: the window starts at 03:30 CEST
    (01:30 UTC), and the file says 03:30 local, which has one reading."""
    daily = Exercise("nightly", ("bg-admin",), "Europe/Berlin", "30 2 * * *", timedelta(hours=1))
    after = datetime(2027, 3, 27, tzinfo=UTC)
    ics = render_calendar(Rules((ADMIN,), (daily,)), after, after + timedelta(days=3), stamp=NOW)
    calendar = parse(ics)
    gap_day = next(e for e in events(calendar) if "20270328" in str(e["UID"]))
    assert gap_day.decoded("DTSTART") == datetime(
        2027, 3, 28, 3, 30, tzinfo=ZoneInfo("Europe/Berlin")
    )
    assert gap_day.decoded("DTSTART").astimezone(UTC) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert b"DTSTART;TZID=Europe/Berlin:20270328T033000" in ics
    assert instants(calendar) == expected(daily, after, after + timedelta(days=3))


def test_a_one_off_in_the_repeated_hour_keeps_its_instant() -> None:
    """01:30 on 7 Nov 2027 happens twice in New York; a one-off at the second (06:30 UTC) is
    written in UTC, since iCalendar reads the local time as the first (05:30 UTC)."""
    second = datetime(2027, 11, 7, 6, 30, tzinfo=UTC)
    first = datetime(2027, 10, 7, 5, 30, tzinfo=UTC)
    one_offs = (
        Exercise(
            "second",
            ("bg-admin",),
            "America/New_York",
            start=second,
            end=second + timedelta(hours=1),
        ),
        Exercise(
            "ordinary",
            ("bg-admin",),
            "America/New_York",
            start=first,
            end=first + timedelta(hours=1),
        ),
    )
    ics = render_calendar(Rules((ADMIN,), one_offs), NOW, NOW + timedelta(days=400), stamp=NOW)
    assert b"DTSTART:20271107T063000Z" in ics
    assert b"DTSTART;TZID=America/New_York:20271007T013000" in ics
    assert instants(parse(ics)) == {
        (
            window_uid(Window("second", second, second + timedelta(hours=1))),
            second,
            second + timedelta(hours=1),
        ),
        (
            window_uid(Window("ordinary", first, first + timedelta(hours=1))),
            first,
            first + timedelta(hours=1),
        ),
    }


def test_uids_are_stable_across_renders_so_a_reimport_updates() -> None:
    early = parse(render_calendar(RULES, NOW, NOW + timedelta(days=60), stamp=NOW))
    later_now = NOW + timedelta(days=10)
    later = parse(
        render_calendar(RULES, later_now, later_now + timedelta(days=60), stamp=later_now)
    )
    uids_early = {str(e["UID"]) for e in events(early)}
    uids_later = {str(e["UID"]) for e in events(later)}
    overlap = uids_early & uids_later
    assert len(overlap) >= 2 * 7  # the windows both files hold have the same UIDs
    assert len(uids_early) == len(events(early))  # unique within a file
    stamps = {e.decoded("DTSTAMP") for e in events(later)}
    assert stamps == {later_now}


def test_the_description_says_who_what_and_how() -> None:
    calendar = parse(render_calendar(RULES, *YEAR, stamp=NOW, config_hint="/etc/bgw/config.yaml"))
    by_exercise = {str(e["SUMMARY"]): str(e["DESCRIPTION"]) for e in events(calendar)}
    berlin = by_exercise["Break-glass drill: berlin-weekly"]
    assert f"bg-admin ({ROLE_ARN})" in berlin
    assert "Role session name must match: break-glass-exercise*" in berlin
    assert "People expected to practise: alice\n" in berlin
    assert "breakglass-watcher drill --exercise berlin-weekly -c /etc/bgw/config.yaml" in berlin
    new_york = by_exercise["Break-glass drill: new-york-weekly"]
    assert "MFA required" in new_york and "session name" not in new_york


def test_an_open_window_is_included_and_a_past_one_off_is_not() -> None:
    now = datetime(2027, 1, 3, 2, 0, tzinfo=UTC)  # Berlin window 01:30-04:30 UTC is open
    past = Exercise(
        "past", ("bg-admin",), start=NOW - timedelta(days=9), end=NOW - timedelta(days=8)
    )
    rules = Rules((ADMIN,), (BERLIN, past))
    starts = sorted(
        start
        for _, start, _ in instants(
            parse(render_calendar(rules, now, now + timedelta(days=8), stamp=now))
        )
    )
    assert starts[0] == datetime(2027, 1, 3, 1, 30, tzinfo=UTC)
    assert len(starts) == 2


RULES_YAML = f"""
principals:
  - name: bg-admin
    match: {{role_arn: "{ROLE_ARN}"}}
exercises:
  - name: monthly
    principals: [bg-admin]
    schedule: "0 14 1 * *"
    duration: 4h
    timezone: Europe/Berlin
"""


def test_cli_writes_a_file_for_the_months_asked(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_YAML)
    out = tmp_path / "exercises.ics"
    assert main(["calendar", "--rules", str(rules), "--months", "3", "-o", str(out)]) == 0
    calendar = parse(out.read_bytes())
    assert len(events(calendar)) == 3
    assert {str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")} == {"Europe/Berlin"}


def test_cli_refuses_bad_months_and_reports_bad_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_YAML)
    with pytest.raises(SystemExit) as exit_:
        main(["calendar", "--rules", str(rules), "--months", "0"])
    assert exit_.value.code == 2
    assert "'0' is not a whole number from 1 to 60" in capsys.readouterr().err
    rules.write_text(RULES_YAML.replace("4h", "4 hours"))
    assert main(["calendar", "--rules", str(rules)]) == 2
    assert "exercises[0].duration" in capsys.readouterr().err


async def test_the_daemon_serves_the_calendar(tmp_path: Path) -> None:
    # Nothing listens on the endpoint: the poller fails and retries; HTTP serves regardless.
    config = write_config(
        tmp_path, endpoint_url="http://127.0.0.1:1", queue_url=None, rules=RULES_YAML
    )
    daemon = Daemon.load(config)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.listening.wait(), 20)
        url = f"http://127.0.0.1:{daemon.port}/calendar.ics"
        async with aiohttp.ClientSession() as http, http.get(url) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"] == "text/calendar; charset=utf-8"
            body = await answer.read()
    finally:
        daemon.stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    calendar = parse(body)
    now = datetime.now(UTC)
    monthly = Exercise("monthly", ("bg-admin",), "Europe/Berlin", "0 14 1 * *", timedelta(hours=4))
    assert instants(calendar) == expected(monthly, *calendar_span(now, 12))
    assert f"-c {config}" in str(events(calendar)[0]["DESCRIPTION"])
