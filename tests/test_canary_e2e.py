"""The canary end to end through the emulator: the daemon assumes the canary role, the call
becomes a CloudTrail record on both paths (EventBridge → SQS, LookupEvents), and the watcher
recognises it, exports it per source and account and never counts it as a break-glass use.

moto writes no CloudTrail records, so a small stand-in plays CloudTrail: it reads the calls the
daemon really made (moto's recorder, ``watcher/emulator/calls.py``) and delivers the records of
its ``AssumeRole`` calls as CloudTrail would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from harness import ACCOUNT, write_config

from watcher.canary import with_canaries
from watcher.clock import utc_now
from watcher.daemon import Daemon
from watcher.emulator.calls import assume_role_records
from watcher.emulator.infra import create_pipeline, deliver_many
from watcher.emulator.server import Emulator
from watcher.rules import parse_rules
from watcher.settings import Account, CanarySettings

RULES = f"""
principals:
  - name: bg-user
    match: {{user_name: break-glass-admin}}
    account: "{ACCOUNT}"
"""


async def play_cloudtrail(emulator: Emulator, stop: asyncio.Event) -> None:
    """Deliver each new recorded AssumeRole call once to EventBridge and LookupEvents."""
    done = 0
    while not stop.is_set():
        calls = await asyncio.to_thread(emulator.calls.calls)
        records = assume_role_records(calls[done:], utc_now())
        done = len(calls)
        if records:
            await asyncio.to_thread(deliver_many, emulator.endpoint_url, records, ACCOUNT)
            for record in records:
                emulator.lookup.add(record)
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_canary_flows_on_both_paths_and_is_never_a_break_glass_use(
    emulator: Emulator, tmp_path: Path
) -> None:
    settings = CanarySettings(enabled=True)
    rules = with_canaries(
        parse_rules([("rules.yaml", yaml.safe_load(RULES))]),
        settings,
        [Account(ACCOUNT, ("us-east-1",))],
    )
    pipeline = create_pipeline(emulator.endpoint_url, rules)
    config = write_config(
        tmp_path,
        endpoint_url=emulator.endpoint_url,
        queue_url=pipeline.queue_url,
        rules=RULES,
        extra="canary: {interval: 1s}",
    )
    emulator.calls.start()
    daemon = Daemon.load(config)
    value = daemon.registry.get_sample_value
    stop = asyncio.Event()
    bridge = asyncio.create_task(play_cloudtrail(emulator, stop))
    task = asyncio.create_task(daemon.run())
    try:
        started = value(
            "breakglass_canary_last_seen_timestamp_seconds",
            {"source": "eventbridge", "account": ACCOUNT},
        )
        assert started is not None  # waiting since the start
        for source in ("eventbridge", "lookup"):
            for _ in range(300):
                if value("breakglass_canary_delay_seconds_count", {"source": source}):
                    break
                await asyncio.sleep(0.1)
            count = value("breakglass_canary_delay_seconds_count", {"source": source})
            assert count, f"no canary through {source}"
            labels = {"source": source, "account": ACCOUNT}
            seen = value("breakglass_canary_last_seen_timestamp_seconds", labels)
            assert seen is not None and seen >= started
        sent = value("breakglass_canary_sent_timestamp_seconds", {"account": ACCOUNT})
        assert sent is not None and seen is not None and sent <= seen
        assert value("breakglass_canary_interval_seconds", {}) == 1.0
        # Never a break-glass use: no event counted, nothing stored.
        for classification in ("unexpected", "drill"):
            for outcome in ("success", "failure"):
                labels = {
                    "principal": "bg-user",
                    "classification": classification,
                    "outcome": outcome,
                }
                assert value("breakglass_events_total", labels) == 0.0
        assert "canary" not in str(await daemon.store.recent_events(100))
    finally:
        daemon.stop.set()
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
        await bridge
