"""Two repairs to moto's DynamoDB so several clients can share one emulated table.

moto's server handles requests on several threads, but its DynamoDB backend is not thread-safe:
a transaction snapshots the tables with ``copy.deepcopy`` while another request writes them,
and the copy fails ("dictionary changed size during iteration"). DynamoDB itself applies every
request atomically, so the emulator runs DynamoDB requests one at a time.

For rollback, moto deep-copies every table a TransactWriteItems names, once per item: a
transaction on a table of a few thousand items took seconds, and the cost grew with the table.
Here only the items the transaction touches are saved, and restored if it fails; what a
transaction does and answers is unchanged. Neither repair makes moto model DynamoDB's limits
(throughput, TransactionConflict, TTL deletion): those remain unemulated.
"""

from __future__ import annotations

import copy
import threading
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

        def transact_saving_touched_items(self: Any, transact_items: list[Any]) -> None:
            saved = [_save(self, entry) for entry in transact_items]
            # moto's whole-table snapshot becomes the table itself (its "rollback" a no-op);
            # the items saved above are put back instead.
            setattr(models, "copy", _TablesUncopied)  # noqa: B010
            try:
                transact(self, transact_items)
            except BaseException:
                for touched in reversed(saved):
                    if touched is not None:
                        _restore(*touched)
                raise
            finally:
                setattr(models, "copy", copy)  # noqa: B010

        DynamoHandler.call_action = serialised_call_action  # type: ignore[method-assign]
        models.DynamoDBBackend.transact_write_items = transact_saving_touched_items  # type: ignore[method-assign]
        _installed = True


class _TablesUncopied:
    """``copy`` as moto's transaction sees it: tables are not copied, anything else is."""

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


Saved = tuple[Any, Any, Any, Any]


def _save(backend: Any, entry: Any) -> Saved | None:
    """(table, hash key, range key, a copy of the item or None) for one transaction item;
    None if the entry is malformed (moto then rejects the transaction before writing)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    try:
        ((kind, op),) = entry.items()
        table = backend.tables[op["TableName"]]
        attributes = op["Item"] if kind == "Put" else op["Key"]
        hash_key = DynamoType(attributes[table.hash_key_attr])
        range_key = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))


def _restore(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
    elif item is None:
        table.items.get(hash_key, {}).pop(range_key, None)
    else:
        table.items[hash_key][range_key] = item
