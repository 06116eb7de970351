"""Waiting for "this, or stop": the one way the watcher's long-lived tasks pause.

A periodic job sleeps until its next turn or the stop event, a source backs off until its retry
or the stop event, the reload task waits for SIGHUP or the stop event: each is
:func:`wait_any` over its events, with or without a time limit.
"""

from __future__ import annotations

import asyncio


async def wait_any(*events: asyncio.Event, seconds: float | None = None) -> bool:
    """Wait until one of ``events`` is set, at most ``seconds`` (None: no limit).

    True when one is set (at once if one already is), False when the time ran out. Leaves no
    task behind, also when the caller is cancelled.
    """
    if any(event.is_set() for event in events):
        return True
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(
            waiters,
            timeout=None if seconds is None else max(0.0, seconds),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    return bool(done)
