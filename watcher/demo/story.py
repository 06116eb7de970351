"""The demo as a person sees it: set up, run the watcher, drill, misuse, check, explain."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from watcher.clock import utc_now
from watcher.daemon import Daemon
from watcher.demo.canary import show_canary
from watcher.demo.checks import Check, wait_for_checks
from watcher.demo.cloudtrail import CloudTrailStandIn, authentication_records
from watcher.demo.running import running_watcher
from watcher.demo.scenario import (
    DRILL_EXERCISE,
    PARTICIPANT,
    SESSION_PATTERN,
    TRAIL_NAME,
    UNEXPECTED_SESSION,
    DemoSetup,
    emulator_environment,
    set_up_demo,
)
from watcher.drill import DrillOptions, drill
from watcher.drill_auth import assume_role
from watcher.drill_record import render_markdown
from watcher.emulator.server import Emulator, start_emulator

DRILL_TIMEOUT = 20.0


def run_demo(*, once: bool, port: int, out: TextIO) -> int:
    """Entry point of ``breakglass-watcher demo``."""
    with (
        emulator_environment(),
        tempfile.TemporaryDirectory(prefix="breakglass-demo-") as folder,
    ):
        return asyncio.run(demo(Path(folder), once=once, port=port, out=out))


async def demo(folder: Path, *, once: bool, port: int, out: TextIO) -> int:
    """Run the demo in ``folder``; with ``once``, 0 only when every check passed."""
    say = _printer(out)
    say("breakglass-watcher demo: everything below runs against an AWS emulator (moto) on this")
    say("machine. No AWS account is used; the credentials are dummies for the emulator.\n")
    emulator = await asyncio.to_thread(start_emulator)
    try:
        setup = await asyncio.to_thread(
            set_up_demo, emulator.endpoint_url, folder, now=utc_now(), port=port
        )
        _describe_setup(setup, folder, say)
        # Every call the watcher makes is recorded: the canary's is played through CloudTrail.
        await asyncio.to_thread(emulator.calls.start)
        async with running_watcher(setup.config_path) as watcher:
            url = watcher.url
            say(f"Watcher running in this process: {url}/metrics\n")
            story = asyncio.create_task(_story(watcher.daemon, emulator, setup, folder, url, say))
            await asyncio.wait({watcher.task, story}, return_when=asyncio.FIRST_COMPLETED)
            if not story.done():
                story.cancel()
                await asyncio.wait({story})
                code = watcher.task.result()
                say(f"The watcher stopped (exit {code}) before the demo finished.")
                return code or 1
            checks = story.result()
            failed = [c.name for c in checks if not c.ok]
            if failed:
                say(f"\nDemo FAILED: {'; '.join(failed)} (see the checks above).")
            say(f"\nMetrics:    {url}/metrics")
            say(f"Events:     {url}/api/events")
            say(f"Exercises:  {url}/api/exercises")
            say(f"Calendar:   {url}/calendar.ics  (subscribe a team calendar to it)")
            say(f"Readiness:  {url}/readyz")
            if not once:
                say("\nServing until Ctrl-C: point Prometheus (and Grafana) at the metrics URL.")
                await watcher.task
            return 1 if failed else 0
    finally:
        await asyncio.to_thread(emulator.stop)


async def _story(
    daemon: Daemon,
    emulator: Emulator,
    setup: DemoSetup,
    folder: Path,
    url: str,
    say: Callable[[str], None],
) -> list[Check]:
    stand_in = CloudTrailStandIn(emulator.endpoint_url, emulator.lookup, setup.region)
    say("== The drill (the code of `breakglass-watcher drill`) ==")
    say("CloudTrail stand-in: moto records no CloudTrail events, so the demo turns each call")
    say("it makes into a CloudTrail record and delivers it twice: to EventBridge (put_events →")
    say("rule → SQS) and to the LookupEvents emulator. The watcher must count each once.\n")
    result = await drill(
        DrillOptions(
            config_path=setup.config_path,
            exercise=DRILL_EXERCISE,
            participants=(PARTICIPANT,),
            watcher_url=url,
            timeout=DRILL_TIMEOUT,
            records_dir=folder / "records",
            poll_interval=0.5,
            max_poll_interval=2.0,
        ),
        out=_Indented(say),
        after_auth=stand_in.record,
    )

    say(f"\n== Unexpected use: assuming the role as session {UNEXPECTED_SESSION!r} ==")
    say(f"(the drill window is open, but the name does not match {SESSION_PATTERN!r})")
    misuse = await assume_role(
        setup.endpoint_url, setup.region, setup.role_arn, UNEXPECTED_SESSION, None, utc_now
    )
    await stand_in.publish(authentication_records(misuse))
    say(f"  {misuse.caller_arn} assumed {misuse.principal_arn}; records delivered.\n")

    checks = await wait_for_checks(daemon, setup, result, misuse, stand_in)
    say("\n== The canary: proof of the pipeline between drills ==")
    say("Every canary.interval the watcher assumes its canary role (no permissions), with the")
    say("send time in the session name; the record travels the same path as a break-glass use.")
    canary_check, lines = await show_canary(daemon, emulator, setup.region)
    for line in lines:
        say(f"  {line}")
    checks.append(canary_check)
    await _print_events(daemon, say)
    say("\n== Exercise record ==")
    say(f"({result.markdown_path.name} and {result.json_path.name} in {folder / 'records'})\n")
    say(render_markdown(result.record))
    say("== Checks ==")
    for check in checks:
        say(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    return checks


async def _print_events(daemon: Daemon, say: Callable[[str], None]) -> None:
    events = list(reversed(await daemon.store.recent_events(100)))
    say("\n== What the watcher classified (oldest first; source = which copy arrived first) ==")
    header = (
        "time (UTC)",
        "principal",
        "event",
        "session",
        "classification",
        "exercise",
        "outcome",
        "source",
    )
    rows = [
        (
            str(e["event_time"])[11:19],
            str(e["principal"]),
            str(e["event_name"]),
            str(e["session_name"] or "-"),
            str(e["classification"]),
            str(e["exercise"] or "-"),
            str(e["outcome"]),
            str(e["source"]),
        )
        for e in events
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        say("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _describe_setup(setup: DemoSetup, folder: Path, say: Callable[[str], None]) -> None:
    window = setup.window
    say(f"AWS emulator: {setup.endpoint_url} (moto server + LookupEvents emulator)")
    say(f"Created in account {setup.account}:")
    say(f"  role   {setup.role_arn} (trust policy: this account's operators)")
    say(f"  user   {setup.user_arn} (console password, MFA device, access key)")
    say(
        f"  rule   {setup.pipeline.rule_name} → SQS {setup.pipeline.queue_url.rsplit('/', 1)[-1]}"
        f" (dead-letter queue {setup.pipeline.dlq_url.rsplit('/', 1)[-1]})"
    )
    say(f"  trail  {TRAIL_NAME}, all regions, logging (moto keeps it but records nothing)")
    say(f"Config and rules: {folder}")
    say(
        f"  exercise {DRILL_EXERCISE}: window open {window.start:%H:%M:%S} to "
        f"{window.end:%H:%M:%S} UTC, session names {SESSION_PATTERN!r}"
    )
    say("  exercises quarterly-drill and quarterly-user-drill: as a real deployment would have")


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    return say


class _Indented:
    """A text stream that indents the drill's lines inside the demo's output."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._pending = ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._say(f"  {line}" if line else "")
        return len(text)

    def flush(self) -> None:
        pass
