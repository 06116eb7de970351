"""The EventBridge → SQS source: long-poll, parse, store, then delete.

Order is what keeps events safe: a message is deleted only after the sink has stored every
record in it. A crash, a cancellation or a failed delete after storing only means the message
comes back, and the store's dedup absorbs it. A message with any record we cannot read is never
deleted: the queue's redrive policy moves it to the dead-letter queue after ``maxReceiveCount``
receives, where a person can look at it. Its readable records are still stored, and it is
counted as malformed once, at its first receive.

With ``dead_letter_queue_url`` set, a second reader takes the dead-letter queue as a second
chance (source ``eventbridge-dlq``): a crash loop or a store outage spends receives until the
queue parks events there, and this reader stores and deletes every message it can read now.
One it still cannot read stays (for a person, with the DLQ alarm) and is counted once a run.

Its problems are logged once per message id (not at every redelivery), at most
``_DETAIL_PROBLEMS`` of them, each cut to ``_DETAIL_CHARS``: a hostile body cannot turn into
more log than a few hundred bytes a message.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse, urlsplit

from watcher.aws import AwsClients
from watcher.errors import StoreError
from watcher.events import Malformed, parse_body
from watcher.model import TrailEvent
from watcher.settings import Config
from watcher.sources.base import (
    EventSink,
    Source,
    SourceContext,
    SourceKind,
    SourceLabels,
    SourceObserver,
)
from watcher.sources.retry import RETRYABLE, Backoff, classify_code, classify_error
from watcher.validation import Fields, Key, Report, bounded, http_url, region
from watcher.waits import wait_any

log = logging.getLogger(__name__)

#: The ``source`` label of this source.
NAME = "eventbridge"
#: The ``source`` label of the dead-letter queue's second-chance reader.
DLQ_NAME = "eventbridge-dlq"
# Seconds the HTTP read may take beyond the long poll itself.
_READ_MARGIN = 10
_DETAIL_PROBLEMS = 3  # problems of one message written to the log
_DETAIL_CHARS = 200  # characters of each
_REPORTED_IDS = 10_000  # message ids remembered as logged


def summarise(problems: list[str]) -> str:
    """A bounded one-line summary of a message's problems."""
    shown = [p if len(p) <= _DETAIL_CHARS else p[: _DETAIL_CHARS - 1] + "…" for p in problems]
    text = "; ".join(shown[:_DETAIL_PROBLEMS])
    more = len(problems) - _DETAIL_PROBLEMS
    return f"{text}; and {more} more" if more > 0 else text


# A long poll returns within ``wait_seconds`` (<= 20 s) even on an empty queue.
_STALENESS = timedelta(minutes=2)

_SQS_HOST = re.compile(
    r"sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|([a-z0-9-]+)\.queue\.amazonaws\.com"
)
_SPEC = {
    "enabled": Key("bool"),
    "queue_url": Key("str"),
    "region": Key("str"),
    "wait_seconds": Key("int"),
    "max_messages": Key("int"),
    "dead_letter_queue_url": Key("str"),
}


@dataclass(frozen=True, slots=True)
class EventBridgeSettings:
    """``sources.eventbridge``: the queue an EventBridge rule sends CloudTrail records to."""

    queue_url: str
    region: str
    wait_seconds: int = 20
    max_messages: int = 10
    dead_letter_queue_url: str | None = None


def queue_account(queue_url: str) -> str:
    """The account in a queue URL (``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``)."""
    parts = [p for p in urlparse(queue_url).path.split("/") if p]
    return parts[-2] if len(parts) >= 2 else "unknown"


def _queue_region(url: str | None) -> str | None:
    """The region in an AWS queue URL's host name (emulators' URLs have none)."""
    host = urlsplit(url).hostname if url else None
    found = _SQS_HOST.fullmatch(host or "")
    return (found.group(1) or found.group(2)) if found else None


def parse_settings(
    fields: Fields, regions: tuple[str, ...], report: Report
) -> EventBridgeSettings | None:
    """Validate ``sources.eventbridge``; None when disabled or invalid (problems reported)."""
    queue_url = http_url(fields, "queue_url", report)
    name = fields.text("region")
    own_region = region(name, fields.at.key("region"), report) if name is not None else None
    url_region = _queue_region(queue_url)
    if own_region is not None and url_region is not None and own_region != url_region:
        report.add(
            fields.at.key("region"), f"{own_region!r} differs from the queue URL's {url_region!r}"
        )
    dead_letters = http_url(fields, "dead_letter_queue_url", report)
    wait = bounded(fields, "wait_seconds", 1, 20, report)
    batch = bounded(fields, "max_messages", 1, 10, report)
    if not fields.flag("enabled", True):
        return None
    if queue_url is None:
        if not fields.has("queue_url"):
            report.add(fields.at.key("queue_url"), "is required while eventbridge is enabled")
        return None
    return EventBridgeSettings(
        queue_url=queue_url,
        region=own_region or url_region or regions[0],
        wait_seconds=20 if wait is None else wait,
        max_messages=10 if batch is None else batch,
        dead_letter_queue_url=dead_letters,
    )


def build(settings: EventBridgeSettings, config: Config, context: SourceContext) -> list[Source]:
    """One reader of the queue, and one of its dead-letter queue when that is configured."""
    sources: list[Source] = [SqsSource(context.clients, settings, context.sink, context.observer)]
    if settings.dead_letter_queue_url is not None:
        second = replace(settings, queue_url=settings.dead_letter_queue_url)
        sources.append(
            SqsSource(context.clients, second, context.sink, context.observer, name=DLQ_NAME)
        )
    return sources


KIND: SourceKind[EventBridgeSettings] = SourceKind(spec=_SPEC, parse=parse_settings, build=build)


class SqsSource:
    """Reads CloudTrail records that an EventBridge rule sends to one SQS queue."""

    staleness = _STALENESS

    def __init__(
        self,
        clients: AwsClients,
        settings: EventBridgeSettings,
        sink: EventSink,
        observer: SourceObserver,
        *,
        backoff: Backoff | None = None,
        name: str = NAME,
    ) -> None:
        self._clients = clients
        self.name = name
        self.settings = settings
        self._sink = sink
        self._observer = observer
        self._backoff = backoff or Backoff()
        self.labels: SourceLabels = (name, queue_account(settings.queue_url), settings.region)
        self._reported: OrderedDict[str, None] = OrderedDict()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; the batch in hand is finished first."""
        client = self._clients.client(
            "sqs", self.settings.region, read_timeout=self.settings.wait_seconds + _READ_MARGIN
        )
        async with client as sqs:
            while not stop.is_set():
                try:
                    messages = await self._receive(sqs, stop)
                except RETRYABLE as exc:
                    self._failed("receive", exc)
                    if await wait_any(stop, seconds=self._backoff.next_delay()):
                        return
                    continue
                if messages is None:
                    return
                self._observer.success(*self.labels)
                if messages and not await self._process(sqs, messages):
                    if await wait_any(stop, seconds=self._backoff.next_delay()):
                        return
                    continue
                self._backoff.reset()

    async def _receive(self, sqs: Any, stop: asyncio.Event) -> list[dict[str, Any]] | None:
        """One long poll; None when ``stop`` came first (the poll is abandoned: anything it
        would have returned becomes visible again after the visibility timeout)."""
        receive = asyncio.ensure_future(
            sqs.receive_message(
                QueueUrl=self.settings.queue_url,
                WaitTimeSeconds=self.settings.wait_seconds,
                MaxNumberOfMessages=self.settings.max_messages,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        )
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({receive, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not receive.done():
                receive.cancel()
                with suppress(asyncio.CancelledError):
                    await receive
        if receive.cancelled():
            return None
        messages: list[dict[str, Any]] = receive.result().get("Messages", [])
        return messages

    async def _process(self, sqs: Any, messages: list[dict[str, Any]]) -> bool:
        """Store the batch, then delete the fully read messages; False if storing failed."""
        events: list[TrailEvent] = []
        done: list[dict[str, Any]] = []
        for message in messages:
            where = f"sqs message {message.get('MessageId', '?')}"
            records = parse_body(message.get("Body", ""), where)
            bad = [r for r in records if isinstance(r, Malformed)]
            events.extend(r for r in records if isinstance(r, TrailEvent))
            if not bad:
                done.append(message)
                continue
            reason = summarise([b.reason for b in bad])
            receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
            first_report = self._first_report(str(message.get("MessageId", "?")))
            if first_report:
                log.warning(
                    "malformed message left in the dead-letter queue"
                    if self.name == DLQ_NAME
                    else "malformed message left for the dead-letter queue",
                    extra={
                        "where": where,
                        "reason": reason,
                        "problems": len(bad),
                        "receive_count": receives,
                    },
                )
            # Count a message once, not at each redelivery; in the dead-letter queue (where it
            # arrives with its receives spent) once a run.
            if receives == "1" if self.name == NAME else first_report:
                self._observer.malformed(self.name, where, reason)
        if events:
            try:
                await self._sink(events, self.name, {})
            except StoreError as exc:
                log.error(
                    "sink failed; the batch is left in the queue",
                    extra={"error": str(exc), "messages": len(messages)},
                )
                return False
        if done:
            await self._delete(sqs, done)
        return True

    def _first_report(self, message_id: str) -> bool:
        """Whether this message's problems have not been logged yet (by this process)."""
        if message_id in self._reported:
            return False
        self._reported[message_id] = None
        if len(self._reported) > _REPORTED_IDS:
            self._reported.popitem(last=False)
        return True

    async def _delete(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ]
        try:
            answer = await sqs.delete_message_batch(
                QueueUrl=self.settings.queue_url, Entries=entries
            )
        except RETRYABLE as exc:
            self._failed("delete (the messages will be redelivered)", exc)
            return
        for failure in answer.get("Failed", []):
            code = str(failure.get("Code", ""))
            log.warning(
                "could not delete a stored message; it will be redelivered",
                extra={"code": code, "reason": failure.get("Message", "")},
            )
            self._observer.error(*self.labels, classify_code(code))

    def _failed(self, what: str, exc: BaseException) -> None:
        kind = classify_error(exc)
        log.warning(
            f"sqs {what} failed",
            extra={"kind": kind, "error": str(exc), "queue": self.settings.queue_url},
        )
        self._observer.error(*self.labels, kind)
