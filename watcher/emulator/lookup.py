"""A CloudTrail ``LookupEvents`` emulator, served by moto's server (moto has none).

:func:`install` adds a ``lookup_events`` action to moto's CloudTrail response class; moto's
server dispatches the action to it, so the production aiobotocore client, its paginator and its
error parsing talk to it over the real AWS JSON 1.1 protocol. Events come from a
:class:`LookupEventStore` that tests and the demo fill with CloudTrail records.

Emulated as AWS documents it: events per account (the record's ``recipientAccountId``) and
region (the record's ``awsRegion`` unless given), the caller's account and region from the
request as moto determines them; ``StartTime``/``EndTime`` inclusive; at most one lookup
attribute (``EventId``, ``EventName``, ``ReadOnly``, ``Username``, ``ResourceType``,
``ResourceName``, ``EventSource``, ``AccessKeyId``), values compared exactly; newest first;
``MaxResults`` 1..50, default 50; a ``NextToken`` valid only with the same parameters; the
item fields as :func:`watcher.emulator.records.lookup_item` builds them (``Username`` is the
user name, an assumed role's session name, "root"; for an ``AssumeRole`` call the caller's);
``ThrottlingException`` (HTTP 400, "Rate exceeded") when more than ``rate_per_second`` calls of an
account and region were accepted within the last second (throttled calls do not count); the
documented ``Invalid…Exception`` errors for bad parameters.

Test hooks: every call is logged with its time and outcome (:meth:`LookupEventStore.calls`);
:meth:`~LookupEventStore.inject` makes the next calls fail (a forced throttle, a 500);
``delivery_delay`` hides events for that many seconds after :meth:`~LookupEventStore.add`, as
LookupEvents lags behind the API calls in reality.

Left out: the 90-day retention (old events are never dropped), Insights events
(``EventCategory="insight"`` returns nothing), read-only/data events distinctions beyond the
``ReadOnly`` attribute, attribute value length limits, and tokens that expire. The store is
process-wide, like moto's own backends.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from watcher.emulator.records import lookup_item

ATTRIBUTE_KEYS = (
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
)
MAX_RESULTS = 50
DEFAULT_RATE = 2.0


@dataclass(frozen=True, slots=True)
class Fault:
    """An error answer: ``code`` is the AWS error code (``__type``), ``status`` the HTTP status."""

    code: str
    message: str
    status: int = 400


THROTTLED = Fault("ThrottlingException", "Rate exceeded")
INTERNAL_FAILURE = Fault("InternalFailure", "An internal error occurred", 500)


class LookupFault(Exception):
    """Raised by :meth:`LookupEventStore.lookup` to answer with an AWS error."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(f"{fault.code}: {fault.message}")
        self.fault = fault


@dataclass(frozen=True, slots=True)
class LookupCall:
    """One LookupEvents call: when (store clock), by whom, what it asked, what it answered."""

    at: float
    account: str
    region: str
    attribute: tuple[str, str] | None
    outcome: str  # "ok" or the error code
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Stored:
    seq: int
    account: str
    region: str
    time: datetime
    visible_at: float
    item: dict[str, Any]


def _invalid(code: str, message: str) -> LookupFault:
    return LookupFault(Fault(code, message))


def _timestamp(value: Any, name: str) -> datetime:
    """A request timestamp: the AWS JSON protocol sends epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    raise _invalid("InvalidTimeRangeException", f"{name} is not a timestamp")


def _attribute(params: dict[str, Any]) -> tuple[str, str] | None:
    attributes = params.get("LookupAttributes") or []
    if not isinstance(attributes, list) or len(attributes) > 1:
        raise _invalid(
            "InvalidLookupAttributesException", "You can specify at most one lookup attribute."
        )
    if not attributes:
        return None
    key = attributes[0].get("AttributeKey")
    value = attributes[0].get("AttributeValue")
    if key not in ATTRIBUTE_KEYS or not isinstance(value, str) or not value:
        raise _invalid(
            "InvalidLookupAttributesException", f"Invalid lookup attribute {key!r}={value!r}."
        )
    return key, value


def _matches(item: dict[str, Any], attribute: tuple[str, str] | None) -> bool:
    if attribute is None:
        return True
    key, value = attribute
    if key in ("ResourceType", "ResourceName"):
        return any(r.get(key) == value for r in item.get("Resources", []))
    return item.get(key) == value


def _encode_token(digest: str, last: _Stored) -> str:
    raw = json.dumps({"q": digest, "t": last.time.timestamp(), "s": last.seq})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_token(token: str, digest: str) -> tuple[float, int]:
    try:
        cursor = json.loads(base64.urlsafe_b64decode(token.encode()))
        if cursor["q"] == digest:
            return float(cursor["t"]), int(cursor["s"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise _invalid(
        "InvalidNextTokenException", "A token must be used with the parameters it was issued for."
    )


def _wire_item(item: dict[str, Any]) -> dict[str, Any]:
    """The item as it travels: ``EventTime`` in epoch seconds (AWS JSON protocol)."""
    return {**item, "EventTime": item["EventTime"].timestamp()}


@dataclass(frozen=True, slots=True)
class _Request:
    attribute: tuple[str, str] | None
    start: datetime | None
    end: datetime | None
    limit: int
    category: str | None
    token: str | None

    @classmethod
    def parse(cls, params: dict[str, Any]) -> _Request:
        attribute = _attribute(params)
        start = _timestamp(params["StartTime"], "StartTime") if "StartTime" in params else None
        end = _timestamp(params["EndTime"], "EndTime") if "EndTime" in params else None
        if start and end and start > end:
            raise _invalid("InvalidTimeRangeException", "StartTime must not be after EndTime.")
        limit = params.get("MaxResults", MAX_RESULTS)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_RESULTS:
            raise _invalid("InvalidMaxResultsException", "MaxResults must be from 1 to 50.")
        category = params.get("EventCategory")
        if category not in (None, "insight"):
            raise _invalid("InvalidEventCategoryException", f"Unknown category {category!r}.")
        return cls(attribute, start, end, limit, category, params.get("NextToken") or None)

    def digest(self, account: str, region: str) -> str:
        """What a NextToken is bound to: every parameter but the token and the page size."""
        bound = [account, region, self.attribute, self.start, self.end, self.category]
        return hashlib.sha256(json.dumps(bound, default=str).encode()).hexdigest()[:16]


class LookupEventStore:
    """The events LookupEvents answers from, its rate limiter, call log and fault hooks.

    Thread-safe: moto's server answers requests on several threads.
    """

    def __init__(
        self,
        rate_per_second: float = DEFAULT_RATE,
        delivery_delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._defaults = (rate_per_second, delivery_delay)
        self.rate_per_second = rate_per_second
        self.delivery_delay = delivery_delay
        self._clock = clock
        self._lock = threading.Lock()
        self._events: list[_Stored] = []
        self._seq = 0
        self._calls: list[LookupCall] = []
        self._accepted: dict[tuple[str, str], deque[float]] = {}
        self._faults: deque[Fault] = deque()
        self._standing_fault: Fault | None = None

    def add(self, record: dict[str, Any], region: str | None = None) -> None:
        """Record a CloudTrail record as LookupEvents will show it (after ``delivery_delay``)."""
        identity = record.get("userIdentity") or {}
        account = str(record.get("recipientAccountId") or identity.get("accountId") or "")
        item = lookup_item(record)
        with self._lock:
            self._seq += 1
            self._events.append(
                _Stored(
                    seq=self._seq,
                    account=account,
                    region=region or str(record["awsRegion"]),
                    time=item["EventTime"],
                    visible_at=self._clock() + self.delivery_delay,
                    item=item,
                )
            )

    def inject(self, fault: Fault, times: int | None = 1) -> None:
        """Answer the next ``times`` calls with ``fault``; ``None``: every call until cleared."""
        with self._lock:
            if times is None:
                self._standing_fault = fault
            else:
                self._faults.extend([fault] * times)

    def force_throttles(self, n: int) -> None:
        """The next ``n`` calls are throttled, whatever the rate."""
        self.inject(THROTTLED, n)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._standing_fault = None

    def calls(self, account: str | None = None, region: str | None = None) -> list[LookupCall]:
        """The calls so far, oldest first, optionally of one account and/or region."""
        with self._lock:
            return [
                c
                for c in self._calls
                if (account is None or c.account == account)
                and (region is None or c.region == region)
            ]

    def clear(self) -> None:
        """Forget events, calls and faults; restore the constructor's rate and delay."""
        with self._lock:
            self._events.clear()
            self._calls.clear()
            self._accepted.clear()
            self._faults.clear()
            self._standing_fault = None
            self.rate_per_second, self.delivery_delay = self._defaults

    def lookup(self, account: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        """Answer one LookupEvents request (the parsed JSON body); raises LookupFault."""
        with self._lock:
            now = self._clock()
            request: _Request | None = None
            try:
                request = _Request.parse(params)
                self._admit(account, region, now)
                answer = self._answer(account, region, request, now)
            except LookupFault as exc:
                self._log(now, account, region, request, exc.fault.code)
                raise
            self._log(now, account, region, request, "ok")
            return answer

    def _log(
        self, now: float, account: str, region: str, request: _Request | None, outcome: str
    ) -> None:
        attribute, start, end = (
            (request.attribute, request.start, request.end) if request else (None, None, None)
        )
        self._calls.append(LookupCall(now, account, region, attribute, outcome, start, end))

    def _admit(self, account: str, region: str, now: float) -> None:
        fault = self._faults.popleft() if self._faults else self._standing_fault
        if fault is not None:
            raise LookupFault(fault)
        window = self._accepted.setdefault((account, region), deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) + 1 > self.rate_per_second:
            raise LookupFault(THROTTLED)
        window.append(now)

    def _answer(self, account: str, region: str, request: _Request, now: float) -> dict[str, Any]:
        digest = request.digest(account, region)
        cursor = _decode_token(request.token, digest) if request.token else None
        if request.category == "insight":
            return {"Events": []}
        start, end = request.start, request.end
        chosen = sorted(
            (
                e
                for e in self._events
                if e.account == account
                and e.region == region
                and e.visible_at <= now
                and (start is None or e.time >= start)
                and (end is None or e.time <= end)
                and _matches(e.item, request.attribute)
                and (cursor is None or (e.time.timestamp(), e.seq) < cursor)
            ),
            key=lambda e: (e.time, e.seq),
            reverse=True,
        )
        page = chosen[: request.limit]
        answer: dict[str, Any] = {"Events": [_wire_item(e.item) for e in page]}
        if len(chosen) > request.limit:
            answer["NextToken"] = _encode_token(digest, page[-1])
        return answer


_installed: LookupEventStore | None = None
_install_lock = threading.Lock()


def install() -> LookupEventStore:
    """Serve LookupEvents from moto's server in this process; returns the process's store.

    Idempotent: moto's backends are process-wide, and so is the one store.
    """
    global _installed
    with _install_lock:
        if _installed is not None:
            return _installed
        from moto.cloudtrail.responses import CloudTrailResponse
        from moto.core.exceptions import JsonRESTError

        store = LookupEventStore()

        def lookup_events(self: Any) -> str:
            try:
                params = json.loads(self.body) if self.body else {}
                answer = store.lookup(self.current_account, self.region, params)
            except LookupFault as exc:
                error = JsonRESTError(exc.fault.code, exc.fault.message)
                error.code = exc.fault.status
                raise error from exc
            return json.dumps(answer)

        CloudTrailResponse.lookup_events = lookup_events  # type: ignore[attr-defined]
        _installed = store
        return store
