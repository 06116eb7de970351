"""The state store in one DynamoDB table (single-table design), shared by several replicas.

Items (``pk``, ``sk``; times are integer microseconds since the epoch, ``expires_at`` seconds):

- event ``E#<dedup key>`` / ``E``: :data:`EVENT_FIELDS`, ``copy_rank``, ``expires_at``; index
  ``recent`` (``g1pk`` = ``EVENTS``, ``g1sk`` = event time # stored time # key) orders them for
  :meth:`recent_events`; drills also carry index ``drills`` (``g2pk`` = ``D#<exercise>``,
  ``g2sk`` = event time) for :meth:`drill_events_in`.
- session ``S#<principal>`` / session key: classification, first and last seen, ``expires_at``.
- aggregates ``AGG`` / a JSON array naming one (``["events", principal, class, outcome]``):
  ``n`` (a count) or ``t`` (a newest time). One query reads them all (:meth:`totals`).
- window ``W#<exercise>`` / start; beside it, per person seen (empty: none declared) drill
  events ``n`` and first and last drill ``t`` at ``<start>#n|first|last#<person>``, never pruned.
- checkpoint ``C`` / key; first sighting ``F#<kind>`` / name.
- the leader lease ``LEASE`` / ``leader``: holder, fencing token, ``until`` (holders' clocks).

Exactly-once counting: an event is written by a put conditional on it being absent (or expired;
a deciding copy: on the copy read still being stored), in the same transaction as the counter
updates for exactly the events it counts (``_counts``, the rule of ``sqlite.py``). A batch
larger than one transaction allows is written in chunks; if one fails, DynamoDB cancels it as a
whole and names the items whose conditions failed; those (events stored or replaced meanwhile by
another replica, sessions created meanwhile) are read again or switched and the chunk is
retried. A chunk that did commit is never counted again: its events' puts now fail their
condition. So a crash between chunks, and the re-sent batch after it, counts each event once.

Retention is DynamoDB's TTL on ``expires_at`` (stored time + retention). TTL deletes expired
items within days, not at once, so every read treats an expired item as absent and
:meth:`prune` deletes nothing itself.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from watcher.errors import StoreError
from watcher.keys import stored_key
from watcher.model import Classification, Verdict
from watcher.settings import Config
from watcher.store.base import (
    EVENT_FIELDS,
    CommitResult,
    FirstSeenKind,
    Lease,
    StoreKind,
    Totals,
    WindowHistory,
)
from watcher.validation import Fields, Key, Report, duration, region

#: TransactWriteItems takes at most 100 items.
MAX_TRANSACTION_ITEMS = 100
#: Attempts of one chunk before the commit fails (conflicts with other replicas, throttling).
_CHUNK_ATTEMPTS = 8
DEFAULT_LEASE_PERIOD = timedelta(seconds=15)
_RETRY_CODES = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}

# Botocore retries throttling and 5xx itself (standard mode); the sink retries the rest.
_CLIENT_CONFIG = AioConfig(
    retries={"total_max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=15
)

TTL_ATTRIBUTE = "expires_at"

_ser = TypeSerializer()
_de = TypeDeserializer()


def _us(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t.isoformat()}: the store takes timezone-aware times")
    return round(t.timestamp() * 1_000_000)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _iso(us: int) -> str:
    return _dt(us).isoformat().replace("+00:00", "Z")


def _item(**values: Any) -> dict[str, Any]:
    """A DynamoDB item from plain values; None values are left out."""
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _event_key(dedup_key: str) -> dict[str, Any]:
    return _item(pk=f"E#{dedup_key}", sk="E")


def _session_key(principal: str, session: str) -> dict[str, Any]:
    return _item(pk=f"S#{principal}", sk=session)


_LEASE_KEY = {"pk": {"S": "LEASE"}, "sk": {"S": "leader"}}
_LEASE_NAMES = {"#holder": "holder", "#token": "token", "#until": "until"}
_ABSENT = "attribute_not_exists(pk) OR expires_at < :now"
_PRESENT = "attribute_exists(pk) AND expires_at >= :now"


@dataclass(frozen=True, slots=True)
class DynamoDbSettings:
    table: str
    region: str
    lease_period: timedelta = DEFAULT_LEASE_PERIOD


@dataclass(frozen=True, slots=True)
class _Stored:
    """The stored copy of a dedup key: its rank (``Verdict.copy_rank``) and what it decided."""

    rank: int
    ranked: bool
    """False for an item written before ranks were stored (it counts as rank 2)."""
    decided: tuple[Any, ...]


@dataclass
class _Op:
    """One item of a transaction and what a failed condition on it means."""

    request: dict[str, Any]
    event: str | None = None
    """dedup key of an event put: failed = another writer stored or replaced it meanwhile."""
    session: tuple[str, str] | None = None
    """(principal, session key) of a session put or touch: failed = the opposite state."""
    extreme: str | None = None
    """``pk\0sk`` of a newest/oldest-time update: failed = a more extreme time is stored."""


@dataclass
class _Chunk:
    """Verdicts written in one transaction, and what earlier attempts learnt."""

    verdicts: list[tuple[Verdict, str]]
    known: set[tuple[str, str]]
    """Sessions believed stored (shared by the chunks of one commit)."""
    stored: dict[str, _Stored] = field(default_factory=dict)
    """The stored copies of the commit's dedup keys (shared by its chunks); absent: none."""
    stale_extremes: set[str] = field(default_factory=set)


class DynamoDbStore:
    """:class:`watcher.store.base.Store` in the DynamoDB table ``table`` (created beforehand)."""

    def __init__(
        self,
        table: str,
        region_name: str,
        *,
        endpoint_url: str | None = None,
        retention: timedelta = timedelta(days=400),
        lease_period: timedelta = DEFAULT_LEASE_PERIOD,
        read_only: bool = False,
    ) -> None:
        self.table = table
        self.lease_period = lease_period
        self.region = region_name
        self.endpoint_url = endpoint_url
        self.retention = retention
        self.read_only = read_only
        self.requests: Counter[str] = Counter()
        """Requests sent, by operation (for benchmarks and tests)."""
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._unreported = CommitResult()
        self._holding: str | None = None

    def __repr__(self) -> str:
        return f"dynamodb table {self.table} ({self.region})"

    # -- plumbing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _errors(self, what: str, *, write: bool = False) -> AsyncIterator[Any]:
        """Yields the client; AWS and network errors become :class:`StoreError`."""
        if self._client is None:
            raise StoreError(f"state store {self!r}: {what}: the store is not open")
        if write and self.read_only:
            raise StoreError(f"state store {self!r}: {what}: the store is open read-only")
        try:
            yield self._client
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise StoreError(
                f"state store {self!r}: {what} failed: {error.get('Code')}: {error.get('Message')}"
            ) from exc
        except (BotoCoreError, OSError, TimeoutError) as exc:
            raise StoreError(f"state store {self!r}: {what} failed: {exc}") from exc

    async def _send(self, client: Any, operation: str, **params: Any) -> dict[str, Any]:
        self.requests[operation] += 1
        answer: dict[str, Any] = await getattr(client, operation)(TableName=self.table, **params)
        return answer

    async def _pages(self, client: Any, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Every item of a query, following ``LastEvaluatedKey``."""
        while True:
            page = await self._send(client, "query", **params)
            for item in page.get("Items", []):
                yield item
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- open and close -------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            raise StoreError(f"state store {self!r}: already open")
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                get_session().create_client(
                    "dynamodb",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=_CLIENT_CONFIG,
                )
            )
            self._stack = stack
            async with self._errors("open") as client:
                self.requests["describe_table"] += 1
                answer = await client.describe_table(TableName=self.table)
            keys = {k["AttributeName"] for k in answer["Table"]["KeySchema"]}
            indexes = {i["IndexName"] for i in answer["Table"].get("GlobalSecondaryIndexes", [])}
            if keys != {"pk", "sk"} or not {"recent", "drills"} <= indexes:
                raise StoreError(
                    f"state store {self!r}: the table does not have the watcher's keys and "
                    "indexes (pk, sk; recent, drills): create it from "
                    "deploy/aws/dynamodb-table.yaml"
                )
        except BaseException:
            await self._shutdown()
            raise

    async def close(self) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._client = None
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # -- events ---------------------------------------------------------------------------

    async def commit(self, items: Sequence[tuple[Verdict, str]], *, now: datetime) -> CommitResult:
        batch: dict[str, tuple[Verdict, str]] = {}
        for verdict, source in items:
            key = verdict.event.dedup_key
            kept = batch.get(key)
            if kept is None or verdict.copy_rank > kept[0].copy_rank:
                batch[key] = (verdict, source)
        stored_us = _us(now)
        async with self._errors("commit", write=True) as client:
            stored = await self._stored_events(client, list(batch), stored_us)
            todo = [item for key, item in batch.items() if _wanted(item[0], stored.get(key))]
            counted = [v for v, _ in todo if _counts(v, stored.get(v.event.dedup_key))]
            sessions = {(v.principal, stored_key(v.session_key)) for v in counted if v.session_key}
            known = await self._existing(client, [_session_key(*s) for s in sessions], now)
            believed = {s for s in sessions if f"S#{s[0]}\0{s[1]}" in known}
            for verdicts in _chunks(todo):
                chunk = _Chunk(verdicts, believed, stored)
                result = await self._commit_chunk(client, chunk, stored_us)
                # Reported with this or the next successful commit, whatever fails later.
                self._unreported = CommitResult(
                    self._unreported.verdicts + result.verdicts,
                    self._unreported.new_sessions + result.new_sessions,
                )
        done, self._unreported = self._unreported, CommitResult()
        return done

    async def _stored_events(
        self, client: Any, dedup_keys: list[str], stored_us: int
    ) -> dict[str, _Stored]:
        """The stored (unexpired) copies among ``dedup_keys``: what each decided, its rank."""
        found: dict[str, _Stored] = {}
        # Every name through a placeholder, so none can clash with DynamoDB's reserved words.
        fields = ("pk", TTL_ATTRIBUTE, "copy_rank", "principal", "classification", "outcome")
        names = {f"#f{i}": name for i, name in enumerate((*fields, "exercise"))}
        items = await self._read(
            client, [_event_key(k) for k in dedup_keys], stored_us, ", ".join(names), names
        )
        for plain in items:
            found[plain["pk"][2:]] = _Stored(
                rank=int(plain.get("copy_rank", 2)),
                ranked="copy_rank" in plain,
                decided=_decided_item(plain),
            )
        return found

    async def _existing(self, client: Any, keys: list[dict[str, Any]], now: datetime) -> set[str]:
        """``pk\\0sk`` of the sessions among ``keys`` present and unexpired."""
        items = await self._read(client, keys, _us(now), "pk, sk, expires_at")
        return {f"{plain['pk']}\0{plain['sk']}" for plain in items}

    async def _read(
        self,
        client: Any,
        keys: list[dict[str, Any]],
        now_us: int,
        projection: str,
        names: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """The items among ``keys`` present and unexpired, consistently read, as plain dicts."""
        found: list[dict[str, Any]] = []
        now_s = now_us // 1_000_000
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {
                "Keys": keys[start : start + 100],
                "ConsistentRead": True,
                "ProjectionExpression": projection,
            }
            if names:
                request["ExpressionAttributeNames"] = names
            pending: dict[str, Any] = {self.table: request}
            while pending:
                self.requests["batch_get_item"] += 1
                answer = await client.batch_get_item(RequestItems=pending)
                for item in answer["Responses"].get(self.table, []):
                    plain = _plain(item)
                    if plain.get(TTL_ATTRIBUTE, now_s) >= now_s:
                        found.append(plain)
                pending = answer.get("UnprocessedKeys") or {}
                if pending:
                    await asyncio.sleep(random.uniform(0.05, 0.2))
        return found

    async def _commit_chunk(self, client: Any, chunk: _Chunk, stored_us: int) -> CommitResult:
        for attempt in range(_CHUNK_ATTEMPTS):
            ops, new_sessions = self._plan(chunk, stored_us)
            if not ops:
                return CommitResult()
            try:
                self.requests["transact_write_items"] += 1
                await client.transact_write_items(TransactItems=[op.request for op in ops])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = [
                    r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])
                ]
                reread = self._learn(chunk, ops, reasons)
                if reread is None:
                    raise
                if reread:  # another writer stored (or replaced) one of these meanwhile
                    now_stored = await self._stored_events(client, reread, stored_us)
                    for key in reread:
                        if key in now_stored:
                            chunk.stored[key] = now_stored[key]
                        else:
                            chunk.stored.pop(key, None)
                    chunk.verdicts = [
                        (v, s)
                        for v, s in chunk.verdicts
                        if _wanted(v, chunk.stored.get(v.event.dedup_key))
                    ]
                if _RETRY_CODES.intersection(reasons):
                    await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))
                continue
            chunk.known.update(s for s, _ in new_sessions)
            counted = [
                v for v, _ in chunk.verdicts if _counts(v, chunk.stored.get(v.event.dedup_key))
            ]
            for v, _ in chunk.verdicts:  # what this transaction stored is now the stored copy
                chunk.stored[v.event.dedup_key] = _Stored(v.copy_rank, True, _decided(v))
            return CommitResult(counted, [(p, c) for (p, _), c in new_sessions])
        raise StoreError(
            f"state store {self!r}: commit gave up after {_CHUNK_ATTEMPTS} attempts of a chunk "
            "(conflicts with other writers or throttling); the batch is retried later"
        )

    @staticmethod
    def _learn(chunk: _Chunk, ops: list[_Op], reasons: list[str]) -> list[str] | None:
        """Adjust ``chunk`` to what the cancelled transaction's reasons say; returns the dedup
        keys whose stored copy changed meanwhile (to read again), or None if the reasons say
        nothing we can act on (the error is then raised)."""
        if len(reasons) != len(ops):
            return None
        actionable = False
        reread: list[str] = []
        for op, code in zip(ops, reasons, strict=True):
            if code in _RETRY_CODES:
                actionable = True
            elif code != "ConditionalCheckFailed":
                if code not in ("None", ""):
                    return None
            elif op.event is not None:
                reread.append(op.event)
                actionable = True
            elif op.session is not None:
                chunk.known ^= {op.session}
                actionable = True
            elif op.extreme is not None:
                chunk.stale_extremes.add(op.extreme)
                actionable = True
        return reread if actionable else None

    def _plan(
        self, chunk: _Chunk, stored_us: int
    ) -> tuple[list[_Op], list[tuple[tuple[str, str], Classification]]]:
        """The transaction for ``chunk``, and the sessions it creates.

        A fresh event is put if absent and counted; a deciding copy replaces a stored copy of
        lower rank (put only while that copy is still the stored one) and is counted only if
        it decides otherwise. Counters and sessions follow the counted verdicts.
        """
        expires = stored_us // 1_000_000 + int(self.retention.total_seconds())
        now_value = {":now": _ser.serialize(stored_us // 1_000_000)}
        ops: list[_Op] = []
        sessions: dict[tuple[str, str], Classification] = {}
        adds: Counter[tuple[str, str]] = Counter()
        extremes: dict[tuple[str, str, str], int] = {}
        for verdict, source in chunk.verdicts:
            key = verdict.event.dedup_key
            item = _event_item(verdict, source, stored_us, expires)
            put = {"TableName": self.table, "Item": item}
            seen = chunk.stored.get(key)
            if seen is None:
                put |= {"ConditionExpression": _ABSENT, "ExpressionAttributeValues": now_value}
            elif seen.ranked:  # replaces the stored copy only while it is the one read
                put |= {
                    "ConditionExpression": f"{_PRESENT} AND copy_rank = :seen",
                    "ExpressionAttributeValues": now_value | _item(**{":seen": seen.rank}),
                }
            else:
                put |= {
                    "ConditionExpression": f"{_PRESENT} AND attribute_not_exists(copy_rank)",
                    "ExpressionAttributeValues": now_value,
                }
            ops.append(_Op({"Put": put}, event=key))
            if not _counts(verdict, seen):
                continue
            if verdict.session_key:
                session = (verdict.principal, stored_key(verdict.session_key))
                sessions.setdefault(session, verdict.classification)
            for how, target, value in _aggregates(verdict):
                if how == "add":
                    adds[target] += value
                else:
                    was = extremes.get((how, *target), value)
                    extremes[(how, *target)] = max(was, value) if how == "max" else min(was, value)
        created: list[tuple[tuple[str, str], Classification]] = []
        for session, classification in sessions.items():
            if session in chunk.known:
                ops.append(_Op(self._touch_session(session, stored_us, expires), session=session))
            else:
                item = _session_key(*session) | _item(
                    classification=classification,
                    first_seen=stored_us,
                    last_seen=stored_us,
                    expires_at=expires,
                )
                put = {"TableName": self.table, "Item": item, "ConditionExpression": _ABSENT}
                ops.append(
                    _Op({"Put": put | {"ExpressionAttributeValues": now_value}}, session=session)
                )
                adds[_agg_target("sessions", session[0], classification)] += 1
                created.append((session, classification))
        for target, n in adds.items():
            ops.append(_Op(self._add(target, n)))
        for (how, pk, sk), t in extremes.items():
            name = f"{pk}\0{sk}"
            if name not in chunk.stale_extremes:
                ops.append(_Op(self._extreme((pk, sk), t, how), extreme=name))
        return (ops if chunk.verdicts else []), created

    def _touch_session(
        self, session: tuple[str, str], stored_us: int, expires: int
    ) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table,
                "Key": _session_key(*session),
                "UpdateExpression": "SET last_seen = :t, expires_at = :x",
                "ConditionExpression": _PRESENT,
                "ExpressionAttributeValues": _item(
                    **{":t": stored_us, ":x": expires, ":now": stored_us // 1_000_000}
                ),
            }
        }

    def _add(self, target: tuple[str, str], n: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table,
                "Key": _item(pk=target[0], sk=target[1]),
                "UpdateExpression": "ADD n :n",
                "ExpressionAttributeValues": _item(**{":n": n}),
            }
        }

    def _extreme(self, target: tuple[str, str], t: int, how: str) -> dict[str, Any]:
        """Set ``t`` on ``target`` if it is newer (``max``) or older (``min``) than stored."""
        older = "<=" if how == "max" else ">="
        return {
            "Update": {
                "TableName": self.table,
                "Key": _item(pk=target[0], sk=target[1]),
                "UpdateExpression": "SET t = :t",
                "ConditionExpression": f"attribute_not_exists(t) OR t {older} :t",
                "ExpressionAttributeValues": _item(**{":t": t}),
            }
        }

    async def recent_events(self, limit: int) -> list[dict[str, Any]]:
        now_s = int(datetime.now(UTC).timestamp())
        events: list[dict[str, Any]] = []
        if limit <= 0:
            return events
        async with self._errors("recent_events") as client:
            query = self._pages(
                client,
                IndexName="recent",
                KeyConditionExpression="g1pk = :p",
                FilterExpression="expires_at >= :now",
                ExpressionAttributeValues=_item(**{":p": "EVENTS", ":now": now_s}),
                ScanIndexForward=False,
                Limit=limit,
            )
            async for item in query:
                plain = _plain(item)
                event = {name: plain.get(name) for name in EVENT_FIELDS}
                event["event_time"] = _iso(int(plain["event_time"]))
                event["stored_at"] = _iso(int(plain["stored_at"]))
                events.append(event)
                if len(events) == limit:
                    break
        return events

    async def prune(self, before: datetime) -> int:
        _us(before)
        return 0  # TTL on expires_at removes expired items; reads skip them until then

    # -- checkpoints, aggregates, first sightings -----------------------------------------

    async def checkpoint(self, key: str) -> str | None:
        async with self._errors("checkpoint") as client:
            answer = await self._send(
                client, "get_item", Key=_item(pk="C", sk=key), ConsistentRead=True
            )
        item = answer.get("Item")
        return None if item is None else str(_plain(item)["value"])

    async def set_checkpoints(
        self, values: Mapping[str, str], *, fence: Lease | None = None
    ) -> None:
        puts = [
            {"Put": {"TableName": self.table, "Item": _item(pk="C", sk=k, value=v)}}
            for k, v in values.items()
        ]
        async with self._errors("set_checkpoints", write=True) as client:
            if fence is None:
                for put in puts:
                    await self._send(client, "put_item", Item=put["Put"]["Item"])
                return
            check = {
                "ConditionCheck": {
                    "TableName": self.table,
                    "Key": _LEASE_KEY,
                    "ConditionExpression": "#holder = :h AND #token = :t",
                    "ExpressionAttributeNames": {"#holder": "holder", "#token": "token"},
                    "ExpressionAttributeValues": _item(**{":h": fence.holder, ":t": fence.token}),
                }
            }
            try:
                self.requests["transact_write_items"] += 1
                await client.transact_write_items(TransactItems=[check, *puts])
            except ClientError as exc:
                reasons = exc.response.get("CancellationReasons", [])
                if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                    raise StoreError(
                        f"state store {self!r}: set_checkpoints refused: lease token "
                        f"{fence.token} of {fence.holder} is no longer the leader's"
                    ) from exc
                raise

    async def hold_lease(self, holder: str, now: datetime) -> Lease | None:
        values = {":h": holder, ":u": _us(now + self.lease_period)}
        renew = ("#holder = :h", "SET #until = :u", values)  # the token stays
        take = (  # a free or expired lease: the token goes up
            "attribute_not_exists(pk) OR #until < :now",
            "SET #holder = :h, #until = :u ADD #token :one",
            values | {":now": _us(now), ":one": 1},
        )
        # The likely one first: a failed conditional write is billed like a write.
        attempts = (renew, take) if self._holding == holder else (take, renew)
        async with self._errors("hold_lease", write=True) as client:
            for condition, update, given in attempts:
                try:
                    answer = await self._send(
                        client,
                        "update_item",
                        Key=_LEASE_KEY,
                        UpdateExpression=update,
                        ConditionExpression=condition,
                        ExpressionAttributeNames={
                            n: v for n, v in _LEASE_NAMES.items() if n in condition + update
                        },
                        ExpressionAttributeValues=_item(**given),
                        ReturnValues="ALL_NEW",
                    )
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code")
                    if code != "ConditionalCheckFailedException":
                        raise
                    continue
                self._holding = holder
                return Lease(holder, int(_plain(answer["Attributes"])["token"]))
        self._holding = None
        return None

    async def release_lease(self, lease: Lease) -> None:
        async with self._errors("release_lease", write=True) as client:
            try:
                await self._send(
                    client,
                    "update_item",
                    Key=_LEASE_KEY,
                    UpdateExpression="SET #until = :zero",
                    ConditionExpression="#holder = :h AND #token = :t",
                    ExpressionAttributeNames=_LEASE_NAMES,
                    ExpressionAttributeValues=_item(
                        **{":h": lease.holder, ":t": lease.token, ":zero": 0}
                    ),
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise  # someone else holds it now: nothing to give up
        self._holding = None

    async def totals(self) -> Totals:
        totals = Totals()
        async with self._errors("totals") as client:
            query = self._pages(
                client,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues=_item(**{":p": "AGG"}),
                ConsistentRead=True,
            )
            async for item in query:
                plain = _plain(item)
                kind, *labels = json.loads(plain["sk"])
                if kind == "events":
                    totals.events[(labels[0], labels[1], labels[2])] = int(plain["n"])
                elif kind == "sessions":
                    totals.sessions[(labels[0], labels[1])] = int(plain["n"])
                elif kind == "windows":
                    totals.windows[(labels[0], labels[1])] = int(plain["n"])
                elif kind == "last_event":
                    totals.last_event[(labels[0], labels[1])] = _dt(int(plain["t"]))
                elif kind == "last_drill":
                    totals.last_drill[labels[0]] = _dt(int(plain["t"]))
                elif kind == "person_drill":
                    totals.person_last_drill[labels[0]] = _dt(int(plain["t"]))
                elif kind == "last_window":
                    totals.last_window_start[(labels[0], labels[1])] = _dt(int(plain["t"]))
        return totals

    async def first_seen(self, kind: FirstSeenKind, name: str, now: datetime) -> datetime:
        # Asked every lifecycle tick; read first: a read costs a fifth of a write.
        known = await self.first_seen_at(kind, name)
        if known is not None:
            return known
        async with self._errors("first_seen", write=True) as client:
            answer = await self._send(
                client,
                "update_item",
                Key=_item(pk=f"F#{kind}", sk=name),
                UpdateExpression="SET seen_at = if_not_exists(seen_at, :t)",
                ExpressionAttributeValues=_item(**{":t": _us(now)}),
                ReturnValues="ALL_NEW",
            )
        return _dt(int(_plain(answer["Attributes"])["seen_at"]))

    async def first_seen_at(self, kind: FirstSeenKind, name: str) -> datetime | None:
        async with self._errors("first_seen_at") as client:
            answer = await self._send(
                client, "get_item", Key=_item(pk=f"F#{kind}", sk=name), ConsistentRead=True
            )
        item = answer.get("Item")
        return None if item is None else _dt(int(_plain(item)["seen_at"]))

    async def forget_first_seen(self, kind: FirstSeenKind, keep: Collection[str]) -> int:
        keep = frozenset(keep)
        async with self._errors("forget_first_seen", write=True) as client:
            query = self._pages(
                client,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues=_item(**{":p": f"F#{kind}"}),
                ProjectionExpression="sk",
                ConsistentRead=True,
            )
            gone = [name async for item in query if (name := _plain(item)["sk"]) not in keep]
            for name in gone:
                await self._send(client, "delete_item", Key=_item(pk=f"F#{kind}", sk=name))
        return len(gone)

    # -- exercise windows -----------------------------------------------------------------

    async def decide_window(
        self, exercise: str, start: datetime, end: datetime, result: str, now: datetime
    ) -> bool:
        start_us = _us(start)
        item = _item(
            pk=f"W#{exercise}",
            sk=f"{start_us:020d}",
            end=_us(end),
            result=result,
            decided_at=_us(now),
        )
        put = {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        writes = [
            {"Put": put},
            self._add(_agg_target("windows", exercise, result), 1),
            self._extreme(_agg_target("last_window", exercise, result), start_us, "max"),
        ]
        async with self._errors("decide_window", write=True) as client:
            while True:
                try:
                    self.requests["transact_write_items"] += 1
                    await client.transact_write_items(TransactItems=writes)
                except ClientError as exc:
                    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                    if reasons[:1] == ["ConditionalCheckFailed"]:
                        return False
                    if len(writes) == 3 and reasons[2:] == ["ConditionalCheckFailed"]:
                        writes.pop()  # a later window of this result was decided first
                        continue
                    raise
                return True

    async def exercise_history(self, limit: int) -> list[WindowHistory]:
        history: list[WindowHistory] = []
        if limit <= 0:
            return history
        async with self._errors("exercise_history") as client:
            decided = self._pages(
                client,
                KeyConditionExpression="pk = :p AND begins_with(sk, :w)",
                ExpressionAttributeValues=_item(**{":p": "AGG", ":w": '["windows", '}),
                ProjectionExpression="sk",
                ConsistentRead=True,
            )
            exercises = {json.loads(_plain(item)["sk"])[1] async for item in decided}
            for exercise in sorted(exercises):
                history += await self._windows_of(client, exercise, limit)
        history.sort(key=lambda w: (-w.start.timestamp(), w.exercise))
        return history[:limit]

    async def _windows_of(self, client: Any, exercise: str, limit: int) -> list[WindowHistory]:
        """The ``limit`` newest decided windows of ``exercise``, newest first. Each window's
        drill items sort right after its own item, so read newest first they come before it."""
        windows: list[WindowHistory] = []
        drills: dict[str, dict[str, Any]] = {}  # person -> n, first, last of the next window
        query = self._pages(
            client,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues=_item(**{":p": f"W#{exercise}"}),
            ScanIndexForward=False,
            ConsistentRead=True,
        )
        async for item in query:
            plain = _plain(item)
            start, *rest = str(plain["sk"]).split("#", 2)
            if rest:
                what, person = rest
                value = int(plain["n"] if what == "n" else plain["t"])
                drills.setdefault(person, {})[what] = value
                continue
            windows.append(_window_history(exercise, int(start), plain, drills))
            drills = {}
            if len(windows) == limit:
                break
        return windows

    async def drill_events_in(self, exercise: str, start: datetime, end: datetime) -> int:
        low, high = _us(start), _us(end) - 1
        if high < low:
            return 0
        count = 0
        async with self._errors("drill_events_in") as client:
            params: dict[str, Any] = {
                "IndexName": "drills",
                "KeyConditionExpression": "g2pk = :p AND g2sk BETWEEN :low AND :high",
                "ExpressionAttributeValues": _item(
                    **{":p": f"D#{exercise}", ":low": low, ":high": high}
                ),
                "Select": "COUNT",
            }
            while True:
                page = await self._send(client, "query", **params)
                count += int(page["Count"])
                if "LastEvaluatedKey" not in page:
                    return count
                params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _window_history(
    exercise: str, start_us: int, window: Mapping[str, Any], drills: Mapping[str, Mapping[str, int]]
) -> WindowHistory:
    """A decided window from its item and its per-person drill items (person '' for drills no
    declared person was seen in)."""
    rows = [(d["first"], person, d["n"], d["last"]) for person, d in drills.items() if "n" in d]
    rows.sort()
    return WindowHistory(
        exercise=exercise,
        start=_dt(start_us),
        end=_dt(int(window["end"])),
        result=str(window["result"]),
        decided_at=_dt(int(window["decided_at"])),
        drill_events=sum(n for _, _, n, _ in rows),
        people={person: n for _, person, n, _ in rows if person},
        first_drill=_dt(min(first for first, _, _, _ in rows)) if rows else None,
        last_drill=_dt(max(last for _, _, _, last in rows)) if rows else None,
    )


def _event_item(verdict: Verdict, source: str, stored_us: int, expires: int) -> dict[str, Any]:
    """The stored fields (nothing of the raw record) and the index keys."""
    e = verdict.event
    event_us = _us(e.event_time)
    drill = verdict.classification == "drill" and verdict.exercise is not None
    return _event_key(e.dedup_key) | _item(
        event_id=e.event_id,
        dedup_key=e.dedup_key,
        event_time=event_us,
        principal=verdict.principal,
        classification=verdict.classification,
        exercise=verdict.exercise,
        outcome=verdict.outcome,
        event_name=e.event_name,
        session_name=e.session_name,
        source_ip=e.source_ip,
        account=e.account,
        region=e.region,
        source=source,
        stored_at=stored_us,
        copy_rank=verdict.copy_rank,
        expires_at=expires,
        g1pk="EVENTS",
        g1sk=f"{event_us:020d}#{stored_us:020d}#{e.dedup_key}",
        g2pk=f"D#{verdict.exercise}" if drill else None,
        g2sk=event_us if drill else None,
    )


def _decided(verdict: Verdict) -> tuple[Any, ...]:
    """What a verdict decided, as stored: a copy that decides the same adds no count."""
    return (verdict.principal, verdict.classification, verdict.outcome, verdict.exercise)


def _decided_item(plain: Mapping[str, Any]) -> tuple[Any, ...]:
    return (plain["principal"], plain["classification"], plain["outcome"], plain.get("exercise"))


def _wanted(verdict: Verdict, stored: _Stored | None) -> bool:
    """Whether ``verdict`` is written: nothing stored, or it outranks the stored copy."""
    return stored is None or verdict.copy_rank > stored.rank


def _counts(verdict: Verdict, stored: _Stored | None) -> bool:
    """Whether writing ``verdict`` counts it: new, or a deciding copy that decides otherwise
    (the replaced copy's counts stay: counters never decrease)."""
    return stored is None or _decided(verdict) != stored.decided


def _agg_target(*parts: str) -> tuple[str, str]:
    return "AGG", json.dumps(parts)


def _window_target(exercise: str, start_us: int, what: str, person: str) -> tuple[str, str]:
    """Per window and person: drill events (``n``), first and last drill time (``t``); beside
    the window's own item ``W#exercise``/start, which sorts right after them newest first."""
    return f"W#{exercise}", f"{start_us:020d}#{what}#{person}"


def _aggregates(verdict: Verdict) -> list[tuple[str, tuple[str, str], int]]:
    """(``add``/``max``/``min``, item, value) for each aggregate a counted verdict moves."""
    p, c = verdict.principal, verdict.classification
    t = _us(verdict.event.event_time)
    moves = [
        ("add", _agg_target("events", p, c, verdict.outcome), 1),
        ("max", _agg_target("last_event", p, c), t),
    ]
    if c == "drill":
        moves.append(("max", _agg_target("last_drill", p), t))
        if verdict.person is not None:
            moves.append(("max", _agg_target("person_drill", verdict.person), t))
        if verdict.window is not None:
            w, start, person = verdict.window.exercise, _us(verdict.window.start), verdict.person
            moves += [
                ("add", _window_target(w, start, "n", person or ""), 1),
                ("min", _window_target(w, start, "first", person or ""), t),
                ("max", _window_target(w, start, "last", person or ""), t),
            ]
    return moves


def _footprint(verdict: Verdict) -> set[tuple[str, ...]]:
    """The transaction items a new event needs besides its own put (shared within a chunk):
    its session (and that session's count, should it be new) and its aggregates."""
    needs: set[tuple[str, ...]] = {target for _, target, _ in _aggregates(verdict)}
    if verdict.session_key:
        p, c = verdict.principal, verdict.classification
        needs |= {("session", p, verdict.session_key), _agg_target("sessions", p, c)}
    return needs


def _chunks(items: list[tuple[Verdict, str]]) -> Iterator[list[tuple[Verdict, str]]]:
    """Consecutive runs whose transactions stay within :data:`MAX_TRANSACTION_ITEMS`."""
    chunk: list[tuple[Verdict, str]] = []
    shared: set[tuple[str, ...]] = set()
    for item in items:
        needs = _footprint(item[0])
        if chunk and len(chunk) + 1 + len(shared | needs) > MAX_TRANSACTION_ITEMS:
            yield chunk
            chunk, shared = [], set()
        chunk.append(item)
        shared |= needs
    if chunk:
        yield chunk


# -- config -------------------------------------------------------------------------------

SPEC = {
    "table": Key("str", required=True),
    "region": Key("str", required=True),
    "lease_period": Key("duration"),
}


def _parse(fields: Fields, report: Report) -> DynamoDbSettings | None:
    """``store: {dynamodb: {table: NAME, region: REGION}}``."""
    table = fields.text("table")
    if table is not None and not _valid_table_name(table):
        report.add(
            fields.at.key("table"),
            f"{table!r} is not a DynamoDB table name (3-255 of letters, digits, _ - .)",
        )
        table = None
    name = fields.text("region")
    where = region(name, fields.at.key("region"), report) if name is not None else None
    period = duration(fields, "lease_period", report)
    if table is None or where is None:
        return None
    return DynamoDbSettings(table, where, period or DEFAULT_LEASE_PERIOD)


def _valid_table_name(name: str) -> bool:
    return 3 <= len(name) <= 255 and all(c.isascii() and (c.isalnum() or c in "_-.") for c in name)


def _build(settings: DynamoDbSettings, config: Config, read_only: bool) -> DynamoDbStore:
    return DynamoDbStore(
        settings.table,
        settings.region,
        endpoint_url=config.endpoint_url,
        retention=config.retention,
        lease_period=settings.lease_period,
        read_only=read_only,
    )


KIND: StoreKind[DynamoDbSettings] = StoreKind(spec=SPEC, parse=_parse, build=_build)
