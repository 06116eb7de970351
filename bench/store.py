"""The two state stores side by side: SQLite (a file) and DynamoDB (moto's server, in this
process), fed the same distinct break-glass events in SQS-sized batches.

Prints events/s of each, and for DynamoDB the requests per stored event, the items written per
stored event (each transaction item, plus the index copies DynamoDB writes), their sizes by
DynamoDB's rules, and from those the cost per million stored events at on-demand prices
(see PRICES). A second pass sends every batch again, as LookupEvents' overlap re-reads do, and
counts what a duplicate costs. moto's throughput says little about DynamoDB's (no network, one
request at a time, see watcher/emulator/dynamodb.py); the request and item counts are exact.

    .venv/bin/python bench/store.py [--count 5000] [--batch 10]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

from dynamo import create_table

from watcher.emulator.server import start_emulator
from watcher.model import TrailEvent, Verdict
from watcher.store.base import Store
from watcher.store.dynamodb import DynamoDbStore
from watcher.store.sqlite import SqliteStore

#: US East (N. Virginia) on-demand, standard table class, USD (the price list since Nov 2024).
PRICES = {"write_unit": 0.625e-6, "read_unit": 0.125e-6, "gb_month": 0.25, "pitr_gb_month": 0.20}
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def stream(count: int) -> list[tuple[Verdict, str]]:
    """Distinct events of 3 principals; a new session every 4 events; every third a drill."""
    items = []
    for i in range(count):
        event = TrailEvent(
            event_id=f"{i:08d}-5f2c-4a53-9f0e-0c1a2b3c4d5e",
            event_time=NOW - timedelta(days=1) + timedelta(seconds=i),
            account="123456789012",
            region="us-east-1",
            event_name="AssumeRole",
            event_source="sts.amazonaws.com",
            identity={},
            raw={},
            session_name="break-glass-exercise-alice",
            source_ip="203.0.113.5",
        )
        drill = i % 3 == 0
        verdict = Verdict(
            event,
            f"break-glass-admin-{i % 3}",
            "drill" if drill else "unexpected",
            "success",
            exercise="quarterly-drill" if drill else None,
            session_key=f"ASIA{i // 4:012d}",
        )
        items.append((verdict, "eventbridge"))
    return items


def size(item: dict[str, Any]) -> int:
    """An item's size by DynamoDB's rules: names plus values (numbers: ~1 byte per 2 digits)."""
    total = 0
    for name, value in item.items():
        total += len(name.encode())
        ((kind, inner),) = value.items()
        if kind == "S":
            total += len(inner.encode())
        elif kind == "N":
            total += math.ceil(len(inner.strip("-").replace(".", "")) / 2) + 1
        else:
            total += len(str(inner).encode())
    return total


class Meter:
    """Counts what the DynamoDB store sends: transaction items, index copies, read keys."""

    def __init__(self, store: DynamoDbStore) -> None:
        self.units: Counter[str] = Counter()
        self.sizes: dict[str, list[int]] = {"event": [], "other": []}
        client = store._client
        transact, batch_get = client.transact_write_items, client.batch_get_item

        async def metered_transact(**kwargs: Any) -> Any:
            answer = await transact(**kwargs)  # only committed transactions are billed as such
            for op in kwargs["TransactItems"]:
                ((_, body),) = op.items()
                item = body.get("Item") or {}
                kb = max(1, math.ceil(size(item) / 1024)) if item else 1
                self.units["write"] += 2 * kb  # a transactional write: 2 units per KB
                if item.get("pk", {}).get("S", "").startswith("E#"):
                    self.sizes["event"].append(size(item))
                    # Each index holding the item is written too (projected size + 100 B).
                    indexes = 1 + ("g2pk" in item)
                    self.units["write"] += indexes * max(1, math.ceil((size(item) + 100) / 1024))
                elif item:
                    self.sizes["other"].append(size(item))
            return answer

        async def metered_batch_get(**kwargs: Any) -> Any:
            answer = await batch_get(**kwargs)
            for request in kwargs["RequestItems"].values():
                self.units["read"] += len(request["Keys"])  # consistent, < 4 KB: 1 unit a key
            return answer

        client.transact_write_items = metered_transact
        client.batch_get_item = metered_batch_get


async def feed(store: Store, items: Sequence[tuple[Verdict, str]], batch: int) -> float:
    began = time.perf_counter()
    for start in range(0, len(items), batch):
        await store.commit(items[start : start + batch], now=NOW)
    return time.perf_counter() - began


async def main_async(count: int, batch: int) -> None:
    items = stream(count)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as folder:
        sqlite = SqliteStore(Path(folder) / "state.db")
        await sqlite.open()
        try:
            sqlite_seconds = await feed(sqlite, items, batch)
        finally:
            await sqlite.close()
    with start_emulator() as emulator:
        table = create_table(emulator.endpoint_url)
        store = DynamoDbStore(table, "us-east-1", endpoint_url=emulator.endpoint_url)
        await store.open()
        try:
            meter = Meter(store)
            store.requests.clear()
            dynamo_seconds = await feed(store, items, batch)
            requests, units = Counter(store.requests), Counter(meter.units)
            store.requests.clear()
            meter.units.clear()
            again_seconds = await feed(store, items, batch)
            dup_requests, dup_units = Counter(store.requests), Counter(meter.units)
            stored = sum((await store.totals()).events.values())
        finally:
            await store.close()
    assert stored == count, f"stored {stored} of {count}"
    print(f"{count:,} distinct events in batches of {batch}; Python {sys.version.split()[0]}")
    print(f"{'store':<22} {'seconds':>8} {'events/s':>9}")
    print(f"{'SQLite (file, FULL)':<22} {sqlite_seconds:>8.2f} {count / sqlite_seconds:>9,.0f}")
    print(f"{'DynamoDB (moto)':<22} {dynamo_seconds:>8.2f} {count / dynamo_seconds:>9,.0f}")
    print(f"{'DynamoDB, all again':<22} {again_seconds:>8.2f} {count / again_seconds:>9,.0f}")
    per = {op: n / count for op, n in sorted(requests.items())}
    print("DynamoDB requests per stored event:", {k: round(v, 3) for k, v in per.items()})
    print(
        f"  total {sum(requests.values()) / count:.3f}; per duplicate re-sent: "
        f"{sum(dup_requests.values()) / count:.3f}"
    )
    event_size = sum(meter.sizes["event"]) / max(1, len(meter.sizes["event"]))
    other = meter.sizes["other"]
    print(f"item sizes: event {event_size:.0f} B, session {sum(other) / max(1, len(other)):.0f} B")
    wru, rru = units["write"] / count, units["read"] / count
    cost = 1e6 * (wru * PRICES["write_unit"] + rru * PRICES["read_unit"])
    dup_cost = 1e6 * (dup_units["read"] / count) * PRICES["read_unit"]
    storage = 1e6 * (event_size + 100 + 150) / 1e9  # event + recent index copy + session share
    print(f"write units per stored event {wru:.2f}, read units {rru:.2f}")
    print(
        f"on-demand cost per million stored events: ${cost:.2f} in requests; "
        f"per million duplicates: ${dup_cost:.2f}; storage {storage:.2f} GB "
        f"(${storage * (PRICES['gb_month'] + PRICES['pitr_gb_month']):.2f}/month with PITR)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.count, args.batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
