"""The demo's canary: the watcher's own canary call, played through both paths by the
CloudTrail stand-in, and its delay per source read back from the watcher."""

from __future__ import annotations

import asyncio

from watcher.clock import utc_now
from watcher.daemon import Daemon
from watcher.demo.checks import Check
from watcher.emulator.calls import assume_role_records
from watcher.emulator.infra import deliver_many
from watcher.emulator.server import Emulator

SOURCES = ("eventbridge", "lookup")
CANARY_TIMEOUT = 20.0


async def show_canary(daemon: Daemon, emulator: Emulator, region: str) -> tuple[Check, list[str]]:
    """Deliver the canary calls the watcher made (moto's recorder has them) as CloudTrail
    would, wait until each source classified one, and describe the delays."""
    calls = await asyncio.to_thread(emulator.calls.calls)
    canaries = [c for c in calls if c.params.get("RoleSessionName", "").startswith("canary-")]
    records = assume_role_records(canaries, utc_now())
    if records:
        await asyncio.to_thread(deliver_many, emulator.endpoint_url, records, None, region=region)
        for record in records:
            emulator.lookup.add(record)
    value = daemon.registry.get_sample_value
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANARY_TIMEOUT
    while loop.time() < deadline:
        if all(value("breakglass_canary_delay_seconds_count", {"source": s}) for s in SOURCES):
            break
        await asyncio.sleep(0.25)
    lines = [
        f"{len(canaries)} canary call(s) made by the watcher (sts:AssumeRole of the canary role)"
    ]
    seen = []
    for source in SOURCES:
        count = value("breakglass_canary_delay_seconds_count", {"source": source}) or 0.0
        total = value("breakglass_canary_delay_seconds_sum", {"source": source}) or 0.0
        if count:
            seen.append(source)
            lines.append(f"{source:<12} canary seen, delay send → classified {total / count:.1f} s")
        else:
            lines.append(f"{source:<12} no canary seen")
    ok = bool(canaries) and seen == list(SOURCES)
    detail = "seen through " + " and ".join(seen) if seen else "not seen"
    return Check("canary travels both paths, never counted as a use", ok, detail), lines
