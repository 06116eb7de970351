"""Two repairs to moto's DynamoDB so several clients can share one emulated table.

moto's server handles requests on several threads, but its DynamoDB backend is not thread-safe:
a transaction snapshots the tables with ``copy.deepcopy`` while another request writes them,
and the copy fails ("dictionary changed size during iteration"). DynamoDB itself applies every
request atomically, so the emulator runs DynamoDB requests one at a time.

moto also snapshots the whole table once per *item* of a TransactWriteItems (for rollback),
which makes a 60-item transaction on a table of a few thousand items take seconds; here it is
snapshotted once per transaction. Results are unchanged: the snapshot is only read on rollback.
Neither repair makes moto model DynamoDB's limits (throughput, TransactionConflict, TTL
deletion): those remain unemulated.
"""

from __future__ import annotations

import copy
import threading
import types
from typing import Any

_lock = threading.RLock()
_installed = False


def install() -> None:
    """Patch moto's DynamoDB in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.dynamodb import models
        from moto.dynamodb.responses import DynamoHandler

        call_action = DynamoHandler.call_action
        transact = models.DynamoDBBackend.transact_write_items

        def serialised_call_action(self: Any) -> Any:
            with _lock:
                return call_action(self)

        def snapshot_once_transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
            snapshots: dict[int, Any] = {}

            def deepcopy_once(value: Any, memo: Any = None) -> Any:
                if id(value) not in snapshots:
                    snapshots[id(value)] = copy.deepcopy(value, memo)
                return snapshots[id(value)]

            models.copy = types.SimpleNamespace(deepcopy=deepcopy_once)  # type: ignore[attr-defined,assignment]
            try:
                transact(self, transact_items)
            finally:
                models.copy = copy  # type: ignore[attr-defined]

        DynamoHandler.call_action = serialised_call_action  # type: ignore[method-assign]
        models.DynamoDBBackend.transact_write_items = snapshot_once_transact  # type: ignore[method-assign]
        _installed = True
