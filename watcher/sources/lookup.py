"""The CloudTrail LookupEvents poller: one per account and region.

LookupEvents takes one lookup attribute per call and allows about two calls per second per
account and region, so each poll asks only about the watched principals:

- ``Username`` = each IAM user principal's name: the user's own calls, including its
  ``ConsoleLogin`` (a failed one carries the user name too) and the console sessions of roles it
  switches into (their session name is the user's name).
- ``ResourceName`` = the ARN of each role principal of this account: the role is a resource of
  every ``AssumeRole*`` call into it, whoever calls and whether it succeeds. (``Username`` would
  name the caller.) The copy logged in a caller's other account is found by the ``AssumeRole``
  sweep there, so a poll's lookups do not grow with the number of accounts watched.
- ``AccessKeyId`` = each temporary key those assume calls issued: what each session did. A key
  is looked up until 12 hours (the longest role session) after its assume call; after a restart
  the first poll reads the assume calls of the last 12 hours to find the keys again.
- ``EventName=ConsoleLogin``, kept only when it identifies a principal: root sign-ins, and
  failed sign-ins whatever ``Username`` LookupEvents gives them.
- Sweeps by ``EventName``, kept only when they identify a principal, for what no attribute
  finds: ``SwitchRole`` (a console switch into a watched role of this account: its ``Username``
  is the switching user's name, unknown beforehand, and it names no resource); ``AssumeRole``
  (a *denied* call has ``requestParameters: null`` and no resources: the role is only in
  ``errorMessage``; recorded in the caller's account, so every account sweeps when any role is
  watched); ``AssumeRoleWithSAML`` and ``AssumeRoleWithWebIdentity`` (their denied calls, in
  the role's account); ``AssumeRoot`` (when a root is watched).
- ``Username`` = the session name of each console session of a watched role (from its
  ``SwitchRole``): the console session signs with keys no assume response lists, and
  LookupEvents gives an assumed role's events the session name as ``Username``. Looked up for
  12 hours, kept only when they identify a principal. Keys issued by ``GetFederationToken`` of a
  watched user and by ``AssumeRoot`` are followed like role session keys.
- The followed sessions (keys, console session names) are shared by the pollers of all regions
  of an account (``Sessions``): the global STS endpoint and console sign-in log in us-east-1,
  while the session's calls are logged in each region they went to. A poller reads a session
  it has not read before from the session's start, later ones from its window start.
- ``Username=root`` when the account's root is watched: the AWS API reference's own example of
  a lookup (``NextToken``: "an AttributeKey of 'Username' with a value of 'root'") shows that
  root's events carry the user name "root".

Names and ARNs are looked up as the principal's ``arn`` spells them when it has one (IAM keeps
the case it was created with), else as the rules wrote them.

Each poll reads ``[checkpoint - overlap, now]`` (first poll: ``[now - lookback, now]``) with the
same ``StartTime``/``EndTime`` on every page, so ``NextToken`` paging is stable; events reach
LookupEvents minutes late and several events share a timestamp, so the overlap re-reads and the
store's dedup absorbs the repeats. The checkpoint moves to the poll's ``EndTime`` only in the
same sink call that stores the poll's events, and never past CloudTrail's own clock (the
``Date`` of its answers): if the local clock jumps ahead, a checkpoint taken from it would skip
everything between the real time and the jumped one once the clock is set right. A local clock
more than ``CLOCK_TOLERANCE`` ahead is logged and counted (error kind ``other``), and the next
window starts from CloudTrail's time, so it widens by the jump. A token bucket keeps the call
rate; a ``ThrottlingException`` waits (backoff with jitter) and asks for the same page again, never
skipping one; any other error ends the poll (events already read are stored, the checkpoint
stays) and the next poll comes after a backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from watcher.aws import AwsClients
from watcher.clock import Clock, utc_now
from watcher.durations import format_duration
from watcher.errors import StoreError
from watcher.events import ASSUME_EVENTS, ASSUME_ROOT, Malformed, issued_access_key, iter_document
from watcher.identify import PrincipalIndex, identify, match
from watcher.model import Principal, TrailEvent
from watcher.scheduling import PollScheduler
from watcher.settings import Account, Config
from watcher.sources.base import (
    CheckpointReader,
    EventSink,
    Source,
    SourceContext,
    SourceKind,
    SourceLabels,
    SourceObserver,
)
from watcher.sources.retry import (
    RETRYABLE,
    Backoff,
    TokenBucket,
    classify_error,
)
from watcher.validation import Fields, Key, Report, duration
from watcher.waits import wait_any

log = logging.getLogger(__name__)

#: The ``source`` label of this source.
NAME = "lookup"
SESSION_MAX = timedelta(hours=12)
CLOCK_TOLERANCE = timedelta(minutes=5)  # what AWS request signing tolerates too
FEDERATION = "GetFederationToken"
PAGE_SIZE = 50
RATE_LIMIT = 2.0  # LookupEvents calls per second AWS allows per account and region
CLOUDTRAIL_HISTORY = timedelta(days=90)  # how far back LookupEvents can read
RETENTION_OVERLAPS = 10  # stored event ids must outlive this many overlaps at least

_SPEC = {
    "enabled": Key("bool"),
    "interval": Key("duration"),
    "overlap": Key("duration"),
    "lookback": Key("duration"),
    "rate_per_second": Key("number"),
}

Attribute = tuple[str, str]


class _Stopped(Exception):
    """The stop event came during a poll."""


def _name_as_spelled(principal: Principal) -> list[str]:
    if principal.arn:
        return [principal.arn.rsplit("/", 1)[-1]]
    return list(principal.iam_names)


def _role_arns(principal: Principal) -> list[str]:
    if principal.arn:
        return [principal.arn]
    return [f"arn:aws:iam::{principal.account}:role/{name}" for name in principal.iam_names]


def sweeps(principals: Sequence[Principal], account: str) -> list[Attribute]:
    """The ``EventName`` lookups of ``account``, kept only for events that identify."""
    roles_here = any(p.kind == "role" and p.account == account for p in principals)
    any_role = any(p.kind == "role" for p in principals)
    names = ["ConsoleLogin"]
    if roles_here:
        names += ["SwitchRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity"]
    if any_role:
        names.append("AssumeRole")  # denied calls are recorded in the caller's account
    if any(p.kind == "root" for p in principals):
        names.append(ASSUME_ROOT)
    return [("EventName", name) for name in sorted(names)]


def opened_key(event: TrailEvent, index: PrincipalIndex) -> str | None:
    """The temporary key a watched principal's session was opened with: an assume call into a
    watched role, ``AssumeRoot`` of a watched root, ``GetFederationToken`` of a watched user."""
    if event.error_code or event.event_name not in (*ASSUME_EVENTS, ASSUME_ROOT, FEDERATION):
        return None
    found = match(event, index)
    # An assume call opens a session of the role (or root) it asks for; GetFederationToken one
    # of the acting user.
    if found is None or found.requested is not (event.event_name != FEDERATION):
        return None
    return issued_access_key(event)


@dataclass(frozen=True, slots=True)
class LookupSettings:
    """``sources.lookup``: how often and how far back each account and region is polled."""

    interval: timedelta = timedelta(minutes=1)
    overlap: timedelta = timedelta(minutes=20)
    lookback: timedelta = timedelta(hours=1)
    rate_per_second: float = 1.5


def parse_settings(
    fields: Fields, regions: tuple[str, ...], report: Report
) -> LookupSettings | None:
    """Validate ``sources.lookup``; None when disabled or invalid (problems reported)."""
    defaults = LookupSettings()
    interval = duration(fields, "interval", report) or defaults.interval
    overlap = duration(fields, "overlap", report) or defaults.overlap
    lookback = duration(fields, "lookback", report) or defaults.lookback
    if lookback > CLOUDTRAIL_HISTORY:
        report.add(
            fields.at.key("lookback"),
            f"{format_duration(lookback)} is longer than the 90d LookupEvents can read back",
        )
    rate = fields.number("rate_per_second")
    if rate is not None and rate <= 0:
        report.add(fields.at.key("rate_per_second"), f"{rate:g} must be more than 0")
    elif rate is not None and rate > RATE_LIMIT:
        where = fields.at.key("rate_per_second")
        log.warning(
            "%s: %s: %g is above the %g calls/s AWS allows LookupEvents per account and "
            "region; expect throttling",
            where.file,
            where.path,
            rate,
            RATE_LIMIT,
        )
    if not fields.flag("enabled", True):
        return None
    return LookupSettings(
        interval=interval,
        overlap=overlap,
        lookback=lookback,
        rate_per_second=defaults.rate_per_second if rate is None else rate,
    )


def retention_floor(settings: LookupSettings) -> tuple[timedelta, str]:
    """Seen event ids must outlive every re-read, or a restart counts old events again."""
    floor = max(settings.overlap * RETENTION_OVERLAPS, settings.lookback)
    why = (
        f"seen event ids must outlive every re-read, so keep them longer than "
        f"{RETENTION_OVERLAPS} x sources.lookup.overlap and longer than its lookback"
    )
    return floor, why


def build(settings: LookupSettings, config: Config, context: SourceContext) -> list[Source]:
    """One poller per account and region, each under the budget of its account and region;
    an account's pollers share the sessions they follow (an assume call logged in one region
    opens a session whose calls are logged in others)."""
    pollers: list[Source] = []
    for account in config.accounts:
        sessions = Sessions()
        pollers += [
            LookupPoller(
                context.clients,
                account,
                region,
                settings,
                principals=context.principals,
                sink=context.sink,
                observer=context.observer,
                checkpoints=context.checkpoints,
                clock=context.clock,
                bucket=context.budgets.bucket((NAME, account.id, region), settings.rate_per_second),
                sessions=sessions,
                scheduler=context.scheduler,
            )
            for region in account.regions
        ]
    return pollers


# Leader only: with several replicas, one polls, so the account-region rate stays one's.
KIND: SourceKind[LookupSettings] = SourceKind(
    spec=_SPEC,
    parse=parse_settings,
    build=build,
    retention_floor=retention_floor,
    leader_only=True,
)


def console_session(event: TrailEvent, index: PrincipalIndex) -> str | None:
    """The session name of a console session a ``SwitchRole`` into a watched role opened."""
    if event.event_name != "SwitchRole" or event.error_code or event.session_name is None:
        return None
    found = match(event, index)
    return event.session_name if found is not None and found.principal.kind == "role" else None


@dataclass
class Sessions:
    """Sessions of watched principals being followed, shared by one account's pollers:
    temporary key or console session name -> (opened, latest time it may be used)."""

    keys: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    consoles: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)

    @staticmethod
    def add(table: dict[str, tuple[datetime, datetime]], name: str, opened: datetime) -> None:
        until = opened + SESSION_MAX
        before = table.get(name)
        table[name] = (min(opened, before[0]), max(until, before[1])) if before else (opened, until)

    def forget_before(self, start: datetime) -> None:
        for table in (self.keys, self.consoles):
            for name in [n for n, (_, until) in table.items() if until < start]:
                del table[name]


class LookupPoller:
    """Polls LookupEvents of one account and region for the watched principals' events."""

    def __init__(
        self,
        clients: AwsClients,
        account: Account,
        region: str,
        settings: LookupSettings,
        principals: Callable[[], Sequence[Principal]],
        sink: EventSink,
        observer: SourceObserver,
        checkpoints: CheckpointReader,
        clock: Clock = utc_now,
        *,
        backoff: Backoff | None = None,
        throttle_backoff: Backoff | None = None,
        bucket: TokenBucket | None = None,
        sessions: Sessions | None = None,
        scheduler: PollScheduler | None = None,
    ) -> None:
        self._clients = clients
        self.account = account
        self.region = region
        self.settings = settings
        self._principals = principals
        self._sink = sink
        self._observer = observer
        self._checkpoints = checkpoints
        self._clock = clock
        self._backoff = backoff or Backoff(base=5, cap=settings.interval.total_seconds())
        self._throttle_backoff = throttle_backoff or Backoff(base=0.5, cap=20)
        self._bucket = bucket or TokenBucket(settings.rate_per_second)
        # Consecutive calls reach CloudTrail at least this far apart, whatever delayed one
        # of them after its token: its limit counts arrivals (TokenBucket.hold).
        self._arrival_gap = 1 / max(RATE_LIMIT, settings.rate_per_second)
        self.labels: SourceLabels = (NAME, account.id, region)
        # Polls come every interval (longer after failures, up to one more interval of backoff).
        self.staleness = 3 * settings.interval + timedelta(minutes=1)
        self.checkpoint_key = f"lookup:{account.id}:{region}"
        self._sessions = sessions or Sessions()
        self._scheduler = scheduler
        self._read: set[tuple[str, str]] = set()  # sessions this poller has read from their start
        self._keys_recovered = False  # assume calls of the last SESSION_MAX read once
        # Malformed items already counted (digest -> event time): each poll re-reads the
        # overlap, and an item is counted (and logged) once, not at every re-read.
        self._malformed: dict[str, datetime] = {}
        self._service_now: datetime | None = None  # CloudTrail's clock, earliest this poll

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``settings.interval`` until ``stop`` is set; with a scheduler at most its
        concurrency of polls run at once and each wait has a little jitter."""
        interval = self.settings.interval.total_seconds()
        scheduler = self._scheduler
        while not stop.is_set():
            if scheduler is None:
                done = await self._leased_poll(stop)
            else:
                async with scheduler.slot():
                    done = await self._leased_poll(stop)
            if done:
                self._backoff.reset()
                delay = interval if scheduler is None else scheduler.next_wait(interval)
            else:
                delay = self._backoff.next_delay()
            if await wait_any(stop, seconds=delay):
                return

    async def _leased_poll(self, stop: asyncio.Event) -> bool:
        """One poll with a client leased from the pool for its duration (between polls the
        client may serve, or be closed for, other account-regions)."""
        async with self._clients.lease("cloudtrail", self.region, self.account) as cloudtrail:
            return await self._poll(cloudtrail, stop)

    async def _poll(self, cloudtrail: Any, stop: asyncio.Event) -> bool:
        """One poll; True when everything was read and stored with the new checkpoint."""
        end = self._clock()
        try:
            start = await self._window_start(end)
        except StoreError as exc:
            log.error("cannot read the lookup checkpoint", extra={"error": str(exc)})
            return False
        principals = list(self._principals())
        index = PrincipalIndex(principals)
        found: dict[str, TrailEvent] = {}
        complete = False
        self._service_now = None
        try:
            await self._read_all(cloudtrail, principals, index, start, end, found, stop)
            complete = True
        except _Stopped:
            pass
        except RETRYABLE as exc:
            kind = classify_error(exc)
            log.warning(
                "lookup poll failed",
                extra={
                    "kind": kind,
                    "error": str(exc),
                    "account": self.account.id,
                    "region": self.region,
                },
            )
            self._observer.error(*self.labels, kind)
        covered = end if self._service_now is None else min(end, self._service_now)
        if complete and end - covered > CLOCK_TOLERANCE:
            log.warning(
                "local clock is ahead of CloudTrail's; the checkpoint follows CloudTrail's",
                extra={
                    "ahead_seconds": round((end - covered).total_seconds()),
                    "account": self.account.id,
                    "region": self.region,
                },
            )
            self._observer.error(*self.labels, "other")
        checkpoints = {self.checkpoint_key: covered.isoformat()} if complete else {}
        if found or checkpoints:
            try:
                await self._sink(list(found.values()), NAME, checkpoints)
            except StoreError as exc:
                log.error("sink failed; the poll will be repeated", extra={"error": str(exc)})
                return False
        if complete:
            self._observer.success(*self.labels)
        return complete

    async def _window_start(self, end: datetime) -> datetime:
        saved = await self._checkpoints.checkpoint(self.checkpoint_key)
        if saved is None:
            return end - self.settings.lookback
        start = datetime.fromisoformat(saved) - self.settings.overlap
        return min(start, end - self.settings.overlap)

    def _lookups(
        self, principals: Sequence[Principal]
    ) -> tuple[list[Attribute], list[Attribute], list[Attribute]]:
        """(user and root lookups, role lookups, sweeps kept when they identify) for this
        account."""
        here = self.account.id
        users = [
            ("Username", name)
            for p in principals
            if p.kind == "user" and p.account == here
            for name in _name_as_spelled(p)
        ]
        if any(p.kind == "root" and p.account == here for p in principals):
            users.append(("Username", "root"))
        # Roles of this account: a caller in another account has its copy of the assume call
        # found there by the AssumeRole sweep, so the lookups stay per account however many
        # accounts watch the same role (account: any).
        roles = [
            ("ResourceName", arn)
            for p in principals
            if p.kind == "role" and p.account == here
            for arn in _role_arns(p)
        ]
        return sorted(set(users)), sorted(set(roles)), sweeps(principals, here)

    async def _read_all(
        self,
        cloudtrail: Any,
        principals: Sequence[Principal],
        index: PrincipalIndex,
        start: datetime,
        end: datetime,
        found: dict[str, TrailEvent],
        stop: asyncio.Event,
    ) -> None:
        users, roles, sweep = self._lookups(principals)
        self._malformed = {k: t for k, t in self._malformed.items() if t >= start}
        for attribute in users:
            for event in await self._lookup(cloudtrail, attribute, start, end, stop):
                found.setdefault(event.event_id, event)
        # Assume calls first: they name the session keys to look up next.
        keys_from = start if self._keys_recovered else min(start, end - SESSION_MAX)
        for attribute in roles:
            for event in await self._lookup(cloudtrail, attribute, keys_from, end, stop):
                found.setdefault(event.event_id, event)
        self._keys_recovered = True
        for attribute in sweep:
            for event in await self._lookup(cloudtrail, attribute, start, end, stop):
                if identify(event, index) is not None:
                    found.setdefault(event.event_id, event)
        for event in list(found.values()):
            self._follow(event, index)
        sessions = self._sessions
        sessions.forget_before(start)
        followed = [("AccessKeyId", k, o) for k, (o, _) in sessions.keys.items()] + [
            ("Username", n, o) for n, (o, _) in sessions.consoles.items()
        ]
        for kind, name, opened in sorted(followed):
            # A session new to this poller (perhaps opened in another region) from its start.
            since = start if (kind, name) in self._read else max(opened, end - SESSION_MAX)
            for event in await self._lookup(cloudtrail, (kind, name), min(since, start), end, stop):
                if kind == "AccessKeyId" or identify(event, index) is not None:
                    found.setdefault(event.event_id, event)
            self._read.add((kind, name))
        self._read &= {(kind, name) for kind, name, _ in followed}

    def _follow(self, event: TrailEvent, index: PrincipalIndex) -> None:
        """Remember the session ``event`` opens: its issued key, or its console session name."""
        key = opened_key(event, index)
        if key is not None:
            self._sessions.add(self._sessions.keys, key, event.event_time)
        name = console_session(event, index)
        if name is not None:
            self._sessions.add(self._sessions.consoles, name, event.event_time)

    async def _lookup(
        self,
        cloudtrail: Any,
        attribute: Attribute,
        start: datetime,
        end: datetime,
        stop: asyncio.Event,
    ) -> list[TrailEvent]:
        """Every page of one lookup; throttled pages are asked for again after a backoff."""
        where = f"lookup {self.account.id} {self.region} {attribute[0]}={attribute[1]}"
        params: dict[str, Any] = {
            "LookupAttributes": [{"AttributeKey": attribute[0], "AttributeValue": attribute[1]}],
            "StartTime": start,
            "EndTime": end,
            "MaxResults": PAGE_SIZE,
        }
        events: list[TrailEvent] = []
        token: str | None = None
        while True:
            if stop.is_set():
                raise _Stopped
            await self._bucket.acquire()
            if stop.is_set():  # stopped while waiting: a restarted poller may hold the budget
                raise _Stopped
            try:
                page = await cloudtrail.lookup_events(
                    **params, **({"NextToken": token} if token else {})
                )
            except RETRYABLE as exc:
                self._bucket.hold(self._arrival_gap)
                if classify_error(exc) != "throttled":
                    raise
                self._observer.error(*self.labels, "throttled")
                if await wait_any(stop, seconds=self._throttle_backoff.next_delay()):
                    raise _Stopped from exc
                continue
            self._bucket.hold(self._arrival_gap)
            self._throttle_backoff.reset()
            self._note_service_time(page)
            items = page.get("Events", [])
            # One result per item, in order.
            for raw, item in zip(items, iter_document({"Events": items}, where), strict=True):
                if isinstance(item, Malformed):
                    if self._first_sighting(raw):
                        self._observer.malformed(NAME, item.where, item.reason)
                elif isinstance(item, TrailEvent):  # not a Skipped (Insights) item
                    events.append(item)
            token = page.get("NextToken")
            if not token:
                return events

    def _note_service_time(self, page: Mapping[str, Any]) -> None:
        """Keep the earliest ``Date`` CloudTrail answered with in this poll."""
        headers = page.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        try:
            said = parsedate_to_datetime(str(headers["date"]))
        except (KeyError, TypeError, ValueError):
            return  # no Date header: the local clock alone decides, as before
        if said.tzinfo is None:
            return
        said = said.astimezone(UTC)
        if self._service_now is None or said < self._service_now:
            self._service_now = said

    def _first_sighting(self, raw: Any) -> bool:
        """Whether a malformed item is seen for the first time (by its record's text)."""
        payload = raw.get("CloudTrailEvent") if isinstance(raw, dict) else raw
        text = payload if isinstance(payload, str) else repr(payload)
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        if key in self._malformed:
            return False
        when = raw.get("EventTime") if isinstance(raw, dict) else None
        self._malformed[key] = when if isinstance(when, datetime) else self._clock()
        return True
