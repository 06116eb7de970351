"""Which replica leads: the one holding the store's leader lease.

Every replica consumes the SQS queue; LookupEvents polling, the inventory and the window
lifecycle run on the leader only, so the LookupEvents rate stays one replica's. A replica tries
to take or renew the lease every third of the lease period. It leads while its last renewal is
less than two thirds of a period old by its own monotonic clock, so it stops leading before
its lease can expire in the store (clock skew between replicas aside) and a successor can take
over within two lease periods of its death; one that stops (SIGTERM) releases the lease, and a
successor takes it within a third of a period. Writes a leader must not make after losing the
lease (checkpoints) carry the lease as a fence (``Store.set_checkpoints``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime

from watcher.errors import StoreError
from watcher.store.base import Lease, Store

log = logging.getLogger(__name__)

#: Attempts per lease period.
ATTEMPTS_PER_PERIOD = 3


def replica_id() -> str:
    """This process among the replicas: host (the pod's name on Kubernetes) and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    """Holds, renews and gives up the lease; ``leading``/``following`` say where we stand."""

    def __init__(
        self,
        store: Store,
        replica: str,
        clock: Callable[[], datetime],
        on_change: Callable[[bool], None],
    ) -> None:
        self.store = store
        self.replica = replica
        self.clock = clock
        self.on_change = on_change
        self.leading = asyncio.Event()
        self.following = asyncio.Event()
        self.following.set()
        self._lease: Lease | None = None
        self._valid_until = 0.0

    @property
    def lease(self) -> Lease | None:
        """The lease while leading (a fence for leader-only writes), else None."""
        if self._lease is not None and asyncio.get_running_loop().time() < self._valid_until:
            return self._lease
        return None

    async def run(self, stop: asyncio.Event) -> None:
        period = self.store.lease_period.total_seconds()
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            asked = loop.time()
            try:
                lease = await self.store.hold_lease(self.replica, self.clock())
            except StoreError as exc:
                log.error("leader lease not renewed", extra={"error": str(exc)})
            else:
                if lease is None:
                    self._lease = None
                else:
                    self._lease, self._valid_until = lease, asked + period * 2 / 3
            self._set(self.lease is not None)
            wait = period / ATTEMPTS_PER_PERIOD
            if self.leading.is_set():  # wake up in time to step down if renewals fail
                wait = max(0.0, min(wait, self._valid_until - loop.time()))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
        lease = self.lease
        self._set(False)
        if lease is not None:  # stopping: a successor need not wait for the lease to run out
            try:
                await self.store.release_lease(lease)
            except StoreError as exc:
                log.warning("leader lease not released", extra={"error": str(exc)})

    def _set(self, leading: bool) -> None:
        if leading == self.leading.is_set():
            return
        if leading:
            self.following.clear()
            self.leading.set()
        else:
            self.leading.clear()
            self.following.set()
        token = self._lease.token if leading and self._lease is not None else None
        log.info(
            "leading" if leading else "following", extra={"replica": self.replica, "token": token}
        )
        self.on_change(leading)
