"""The daemon: one asyncio loop, each long-lived job a task of one task group.

A :class:`Daemon` is built from a loaded config and rules (``Daemon.load`` reads them from the
config file), then run. ``run`` opens the store, rebuilds the metrics from it, serves HTTP (and
sets ``listening``), then runs the sources, the exercise lifecycle, the inventory and pruning.
SIGTERM/SIGINT: sources finish the batch in hand (stored before any SQS delete), then exit 0.
SIGHUP: reload config and rules; a broken reload keeps the last good ones.
Errors follow ``sources/retry.py``'s policy: store and AWS failures are retried and counted;
anything else is a bug, logged with its traceback, and the daemon exits 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from watcher.accounts import ORGANIZATION_SOURCE, carry_over, needs_resolving, resolve
from watcher.aws import AwsClients
from watcher.build_info import register_process_metrics
from watcher.calendar import DEFAULT_MONTHS, calendar_span, render_calendar
from watcher.canary import canary_accounts, canary_principals, sent_at
from watcher.canary import send as send_canary
from watcher.canary_metrics import CanaryMetrics
from watcher.classify import Classifier
from watcher.clock import Clock, iso_z, utc_now
from watcher.config import load_config
from watcher.credentials import access_key_ages, check_credentials
from watcher.errors import ConfigError, StoreError
from watcher.exercises import history, read_records
from watcher.http import HttpServer, Readiness
from watcher.inventory import ACCOUNTS_AT_ONCE, AccountError, inventory_account
from watcher.inventory_schedule import InventorySchedule
from watcher.leadership import Leadership, replica_id
from watcher.lifecycle import Lifecycle
from watcher.metrics import INVENTORY_SOURCE, WatcherMetrics
from watcher.model import Principal, Rules, TrailEvent, Verdict
from watcher.org_principals import expand
from watcher.people import attribute
from watcher.pipeline import PipelineReport, check_config
from watcher.pipeline_metrics import PipelineMetrics
from watcher.programme_metrics import ProgrammeMetrics
from watcher.readiness import source_checks
from watcher.rules import load_rules
from watcher.scheduling import PollScheduler
from watcher.settings import Account, Config, Organization
from watcher.sources.base import Source, SourceContext, SourceLabels
from watcher.sources.registry import SOURCE_KINDS
from watcher.sources.retry import RETRYABLE, RateBudgets, classify_error
from watcher.store.base import Lease, Store
from watcher.store.registry import build_store
from watcher.waits import wait_any

log = logging.getLogger(__name__)

StoreFactory = Callable[[Config], Store]
LIFECYCLE_INTERVAL = 5.0
PRUNE_INTERVAL = 3600.0
#: How often every replica reads the organisation-wide totals from the store into its metrics.
TOTALS_INTERVAL = 10.0
# Rebuilding the rules and their series after a discovery costs ~60 ms at 300 accounts x 4
# regions: when many accounts discover principals at once (the first inventory of an
# organization), they are watched together, at most this many seconds apart.
REBUILD_EVERY = 5.0


class Daemon:
    """The watcher's running state. ``run`` returns the process exit code."""

    def __init__(
        self,
        config: Config,
        rules: Rules,
        *,
        store_factory: StoreFactory = build_store,
        clock: Clock = utc_now,
    ) -> None:
        self.config = config
        self.clock = clock
        self.registry = CollectorRegistry()
        register_process_metrics(self.registry)
        self.metrics = WatcherMetrics(self.registry)
        self.programme_metrics = ProgrammeMetrics(self.registry)
        self.canary_metrics = CanaryMetrics(self.registry)
        self.pipeline_metrics = PipelineMetrics(self.registry)
        self._failing_checks: dict[tuple[str, str, str, str], str] = {}
        self._canaries: frozenset[str] = frozenset()
        self.store = store_factory(config)
        self.stop = asyncio.Event()
        self.listening = asyncio.Event()
        """Set once HTTP listens; ``port`` is then the port bound."""
        self.port: int | None = None
        self._reload_requested = asyncio.Event()
        self._restart_sources = asyncio.Event()
        self._budgets = RateBudgets()
        self._scheduler = PollScheduler()
        self._inventories = InventorySchedule(PollScheduler(ACCOUNTS_AT_ONCE))
        self._last_success: dict[SourceLabels, datetime] = {}
        # What failed at its last store access ("sink" or a periodic job): /readyz's store
        # check. Each clears on its own next success, so a job whose writes happen to be
        # no-ops cannot hide a failing sink, and a sink that sees no event cannot keep a
        # recovered job failing.
        self._store_failures: set[str] = set()
        self._discovered: tuple[Principal, ...] = ()
        self._unread_accounts: list[str] = []
        self._rebuild_every = REBUILD_EVERY
        self._rebuilt_at = float("-inf")
        self._rebuild: asyncio.TimerHandle | None = None
        self._leader_only: set[int] = set()
        # Held while a store write and its count in the metrics happen, and while the metrics
        # take the store's totals: a totals read between a write and its count would count
        # it twice (once in the totals, once added).
        self._counting = asyncio.Lock()
        self._record_problems: set[str] = set()
        # The accounts watched: the config's, then resolved (organization, regions: all).
        self._accounts: tuple[Account, ...] = config.accounts
        self._resolve_requested = asyncio.Event()
        self._accounts_resolved = False
        self._aws: AwsClients | None = None
        self._retired_aws: list[AwsClients] = []  # replaced (endpoint changed), not yet closed
        self._running_sources: dict[Hashable, Source] = {}
        self.sources: list[Source] = self._build_sources()
        self.leadership = Leadership(self.store, replica_id(), clock, self._leading_changed)
        self._set_rules(rules)

    @classmethod
    def load(
        cls, config_path: Path, *, store_factory: StoreFactory = build_store, clock: Clock = utc_now
    ) -> Daemon:
        """A daemon from the config file at ``config_path`` and its rules (ConfigError if bad)."""
        config = load_config(config_path)
        rules = load_rules(config.rules_path)
        return cls(config, rules, store_factory=store_factory, clock=clock)

    # -- start and stop -------------------------------------------------------------------

    async def run(self) -> int:
        await self.store.open()
        try:
            totals = await self.store.totals()
            self.metrics.restore(totals)
            self.programme_metrics.restore(totals)
            self.metrics.config_reloaded(True)
            http = HttpServer(
                self.registry,
                readiness=self.readiness,
                recent_events=self.store.recent_events,
                calendar=self.calendar_ics,
                exercises=self.exercise_history,
            )
            host, port = self.config.listen
            self.port = await http.start(host, port)
            log.info("listening", extra={"address": f"http://{host}:{self.port}"})
            self.listening.set()
            try:
                self._install_signal_handlers()
                await self._run_tasks()
            except Exception:
                log.exception("stopping on an unexpected error (a bug: please report it)")
                return 1
            finally:
                await http.stop()
                await self._close_clients(retired_only=False)
        finally:
            await self.store.close()
        log.info("stopped")
        return 0

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)

    async def _run_tasks(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._run_sources(leader=False, stop=self.stop))
            tasks.create_task(self.leadership.run(self.stop))
            tasks.create_task(self._while_leading())
            tasks.create_task(self._every(TOTALS_INTERVAL, self._refresh_shared))
            tasks.create_task(self._every(PRUNE_INTERVAL, self._prune))
            tasks.create_task(self._reloads())
            tasks.create_task(self._resolving())

    async def _while_leading(self) -> None:
        """Each time this replica leads: the leader's jobs, until it follows again."""
        while not self.stop.is_set():
            await wait_any(self.leadership.leading, self.stop)
            if self.stop.is_set():
                return
            step_down = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._run_sources(leader=True, stop=step_down))
                tasks.create_task(self._every(LIFECYCLE_INTERVAL, self._lifecycle_tick, step_down))
                if self.config.inventory.enabled:
                    interval = self.config.inventory.interval.total_seconds()
                    tasks.create_task(
                        self._inventories.run(
                            lambda: self._accounts, interval, self._inventory, step_down
                        )
                    )
                tasks.create_task(self._canary_loop(step_down))
                tasks.create_task(self._checks_loop(step_down))
                await wait_any(self.leadership.following, self.stop)
                step_down.set()

    def _leading_changed(self, leading: bool) -> None:
        self.metrics.set_leader(self.leadership.replica, leading)

    async def _every(
        self,
        seconds: float,
        job: Callable[[], Awaitable[None]],
        stop: asyncio.Event | None = None,
    ) -> None:
        """Run ``job`` now and every ``seconds`` until ``stop`` (the daemon's by default);
        store and AWS failures are logged and retried at the next run, anything else
        propagates."""
        stop = stop or self.stop
        while not stop.is_set():
            try:
                await job()
            except StoreError as exc:
                self._store_failures.add(job.__name__)
                log.error("state store failed", extra={"error": str(exc)})
            except RETRYABLE as exc:
                log.warning("periodic job failed", extra={"job": job.__name__, "error": str(exc)})
            else:
                self._store_failures.discard(job.__name__)
            await wait_any(stop, self.stop, seconds=seconds)

    # -- rules and reloads ----------------------------------------------------------------

    def _set_rules(self, rules: Rules) -> None:
        self._loaded_rules = loaded = rules
        # account: any principals, one per watched account (org_principals.py).
        rules = expand(loaded, [a.id for a in self._accounts])
        self.rules = rules
        self._note_unread_accounts(rules)
        undeclared = self._undeclared(rules)
        watched = Rules(
            principals=rules.principals + undeclared,
            exercises=rules.exercises,
            digest=rules.digest,
            people=rules.people,
        )
        # The canary roles are watched like break-glass roles but never become one's metrics.
        canaries = canary_principals(self.config.canary, self._accounts)
        self._canaries = frozenset(p.name for p in canaries)
        self._polled = watched.principals + canaries
        # Classified with the account: any principals as written: identify.py names a record
        # NAME@ACCOUNT for its own account, as the expansion does, so a use in an account not
        # listed yet (before the organization's first listing, or after an account joined
        # and before the next refresh) is still that account's use, never dropped unread.
        self.classifier = Classifier(
            replace(loaded, principals=loaded.principals + undeclared + canaries)
        )
        self.metrics.init_labels(watched, self._source_labels())
        self.canary_metrics.init(
            (p.account for p in canaries),
            self.config.canary.interval,
            sorted({s.labels[0] for s in self.sources}),
            self.clock(),
        )
        self.metrics.set_stale_after(self._stale_after())
        self.programme_metrics.init(rules)

    def _note_unread_accounts(self, rules: Rules) -> None:
        """Log (once per change) the accounts of declared principals that the inventory does
        not read, as they are not watched: their credentials are never checked."""
        watched = {a.id for a in self._accounts}
        unread = sorted({p.account for p in rules.principals if p.account not in watched})
        if unread and unread != self._unread_accounts and self.config.inventory.enabled:
            log.warning(
                "principals of accounts not in accounts: their IAM credentials are not checked",
                extra={"accounts": unread},
            )
        self._unread_accounts = unread

    def _undeclared(self, rules: Rules) -> tuple[Principal, ...]:
        """The discovered principals no rule declares, of the accounts still watched."""
        declared = {p.name for p in rules.principals}
        watched = {a.id for a in self._accounts}
        return tuple(p for p in self._discovered if p.name not in declared and p.account in watched)

    @property
    def watched_principals(self) -> tuple[Principal, ...]:
        """The break-glass principals (declared and discovered)."""
        return tuple(p for p in self._polled if p.name not in self._canaries)

    @property
    def polled_principals(self) -> tuple[Principal, ...]:
        """What the sources look up: the break-glass principals and the canary roles."""
        return self._polled

    async def _reloads(self) -> None:
        while not self.stop.is_set():
            await wait_any(self._reload_requested, self.stop)
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                await self.reload()

    async def reload(self) -> bool:
        """Reload config and rules from the config file; on any error keep the last good ones.

        Files are read and parsed in a worker thread (a rule file may take seconds), so the
        loop keeps serving meanwhile. No exception of a reload ends the daemon.
        """
        path = self.config.source_file
        if path is None:
            log.error("reload ignored: this daemon was not built from a config file")
            return False
        try:
            config, rules = await asyncio.to_thread(_load_files, path)
        except ConfigError as exc:
            return self._refuse(
                "reload failed; keeping the last good config and rules",
                [str(p) for p in exc.problems],
            )
        except Exception as exc:  # a loader bug must not end the daemon: report, keep going
            log.exception("reload failed unexpectedly (a bug: please report it)")
            return self._refuse(
                "reload failed; keeping the last good config and rules", [repr(exc)]
            )
        fixed = _restart_required(self.config, config)
        if fixed:
            return self._refuse(
                "reload refused: restart required; keeping the last good config and rules",
                [f"{key} changed; it takes effect only at a restart" for key in fixed],
            )
        sources_changed = _source_settings(config) != _source_settings(self.config)
        accounts_changed = _account_settings(config) != _account_settings(self.config)
        self.config = config
        if accounts_changed:
            self._accounts = carry_over(config.accounts, {a.id: a for a in self._accounts})
            self._resolve_requested.set()
            self._inventories.changed()
        if sources_changed or accounts_changed:
            self.sources = self._build_sources()
            self._restart_sources.set()
        self._set_rules(rules)
        self.metrics.config_reloaded(True)
        log.info("reloaded", extra={"rules_digest": rules.digest})
        return True

    def _refuse(self, message: str, problems: list[str]) -> bool:
        self.metrics.config_reloaded(False)
        log.error(message, extra={"problems": problems})
        return False

    @property
    def _clients(self) -> AwsClients:
        """One client factory (and so one cached session per role) while the endpoint stays."""
        if self._aws is None or self._aws.endpoint_url != self.config.endpoint_url:
            if self._aws is not None:
                self._retired_aws.append(self._aws)
            self._aws = AwsClients(self.config.endpoint_url)
        return self._aws

    async def _close_clients(self, *, retired_only: bool) -> None:
        """Close the pooled clients of replaced factories (and, stopping, the current one's);
        a client still leased is closed when its lease ends."""
        closing = self._retired_aws + ([] if retired_only or self._aws is None else [self._aws])
        self._retired_aws = []
        for clients in closing:
            await clients.close()

    # -- accounts -------------------------------------------------------------------------

    @property
    def watching(self) -> Config:
        """The config with the accounts watched now (see ``accounts.py``)."""
        return replace(self.config, accounts=self._accounts)

    async def _resolving(self) -> None:
        """Resolve the accounts now, every ``organization.refresh`` and after a reload."""
        while not self.stop.is_set():
            self._resolve_requested.clear()
            if needs_resolving(self.config):
                await self._resolve_accounts()
            # regions: all of listed accounts is read again as often as an organization's.
            refresh = (self.config.organization or Organization(role_name="")).refresh
            await wait_any(self._resolve_requested, self.stop, seconds=refresh.total_seconds())

    async def _resolve_accounts(self) -> None:
        result = await resolve(self._clients, self.config, {a.id: a for a in self._accounts})
        self._accounts_resolved = not any(p.source == ORGANIZATION_SOURCE for p in result.problems)
        for problem in result.problems:
            self.metrics.source_error(problem.source, problem.account, "global", problem.kind)
            log.warning(
                "cannot resolve accounts",
                extra={
                    "source": problem.source,
                    "account": problem.account,
                    "error": problem.message,
                },
            )
        if result.accounts == self._accounts:
            return
        added = sorted({a.id for a in result.accounts} - {a.id for a in self._accounts})
        dropped = sorted({a.id for a in self._accounts} - {a.id for a in result.accounts})
        log.info("watched accounts changed", extra={"added": added, "dropped": dropped})
        self._accounts = result.accounts
        self._inventories.changed()
        self.sources = self._build_sources()
        self._set_rules(self._loaded_rules)
        self._restart_sources.set()

    # -- sources --------------------------------------------------------------------------

    def _build_sources(self) -> list[Source]:
        """The running sources the config asks for (see ``sources/registry.py``).

        A source built from the same settings, endpoint and account as a running one is that
        running one: a change of the accounts or a reload restarts only what changed. (A
        restarted SQS reader would leave the messages of its cut-short long poll invisible
        for the queue's visibility timeout; a restarted poller reads its window again.) A
        source the kind builds without any account (the queue reader) depends on no account.
        """
        context = SourceContext(
            clients=self._clients,
            sink=self.sink,
            observer=self,
            checkpoints=self.store,
            principals=lambda: self.polled_principals,
            clock=self.clock,
            budgets=self._budgets,
            scheduler=self._scheduler,
        )
        accounts = {a.id: a for a in self._accounts}
        no_accounts = replace(self.watching, accounts=())
        sources: list[Source] = []
        running: dict[Hashable, Source] = {}
        self._leader_only = set()
        for key, settings in self.config.sources.items():
            kind = SOURCE_KINDS[key]
            shared = {s.labels for s in kind.build(settings, no_accounts, context)}
            for source in kind.build(settings, self.watching, context):
                account = None if source.labels in shared else accounts.get(source.labels[1])
                same = (key, settings, self.config.endpoint_url, source.labels, account)
                try:
                    source = self._running_sources.get(same, source)
                    running[same] = source
                except TypeError:  # settings that cannot be compared: always a new source
                    pass
                sources.append(source)
                if kind.leader_only:
                    self._leader_only.add(id(source))
        self._running_sources = running
        return sources

    def _source_labels(self) -> list[SourceLabels]:
        labels = [source.labels for source in self.sources]
        if self.config.inventory.enabled:
            labels += [(INVENTORY_SOURCE, a.id, "global") for a in self._accounts]
        return labels

    def _stale_after(self) -> dict[SourceLabels, float]:
        """Each source's staleness bound; the inventory's is two runs plus a minute."""
        bounds = {s.labels: s.staleness.total_seconds() for s in self.sources}
        if self.config.inventory.enabled:
            inventory = 2 * self.config.inventory.interval + timedelta(minutes=1)
            for a in self._accounts:
                bounds[(INVENTORY_SOURCE, a.id, "global")] = inventory.total_seconds()
        return bounds

    async def _run_sources(self, *, leader: bool, stop: asyncio.Event) -> None:
        """Run the sources that run everywhere, or (``leader``) those that run on the leader
        only, until ``stop`` or the daemon stops; when they are rebuilt (accounts, reload),
        stop those no longer there and start the new ones."""
        running: dict[int, asyncio.Event] = {}
        async with asyncio.TaskGroup() as tasks:
            while not stop.is_set() and not self.stop.is_set():
                self._restart_sources.clear()
                wanted = {id(s): s for s in self.sources if (id(s) in self._leader_only) == leader}
                for gone in running.keys() - wanted.keys():
                    running.pop(gone).set()
                # The stopped sources' old endpoint (a reload changed it): a client still
                # leased closes when its call ends (watcher/client_pool.py).
                await self._close_clients(retired_only=True)
                for key, source in wanted.items():
                    if key not in running:
                        running[key] = asyncio.Event()
                        tasks.create_task(source.run(running[key]))
                await wait_any(self._restart_sources, stop)
            for source_stop in running.values():
                source_stop.set()

    async def sink(
        self, events: Sequence[TrailEvent], source: str, checkpoints: Mapping[str, str]
    ) -> None:
        """Classify, store, count, then save ``checkpoints``: returns only once all is durably
        stored. The checkpoints follow the events, so a crash between re-reads them."""
        now = self.clock()
        verdicts = []
        for event in events:
            try:
                verdict = self.classifier.classify(event)
            except Exception as exc:  # one record must never fail the batch it came in
                self.malformed(source, f"event {event.event_id}", f"cannot classify: {exc}")
                continue
            if verdict is None:
                continue
            if verdict.principal in self._canaries:
                self._canary_seen(verdict, source, now)
            else:
                verdicts.append(self._attributed(verdict))
        if not verdicts and not checkpoints:
            return  # no break-glass event: nothing to store (most SQS batches)
        async with self._counting:
            try:
                result = await self.store.commit([(v, source) for v in verdicts], now=now)
            except StoreError as exc:
                self._sink_failed(exc)
                raise
            # Counted before the checkpoints are saved: if that fails, the events stay stored
            # and counted, and the source's retry finds them de-duplicated.
            self.metrics.observe(result, source, now)
        for verdict in result.verdicts:
            if verdict.person is not None:
                self.programme_metrics.drilled(verdict.person, verdict.event.event_time)
            log.info(
                "break-glass event",
                extra={
                    "principal": verdict.principal,
                    "classification": verdict.classification,
                    "outcome": verdict.outcome,
                    "exercise": verdict.exercise,
                    "person": verdict.person,
                    "event_name": verdict.event.event_name,
                    "event_id": verdict.event.event_id,
                    "source": source,
                },
            )
        if checkpoints:
            try:
                await self.store.set_checkpoints(checkpoints, fence=self._fence())
            except StoreError as exc:
                self._sink_failed(exc)
                raise
        self._store_failures.discard("sink")

    def _fence(self) -> Lease:
        """The lease that checkpoints (the leader's jobs' positions) are written under."""
        lease = self.leadership.lease
        if lease is None:
            raise StoreError("checkpoint not saved: this replica no longer leads")
        return lease

    def _sink_failed(self, exc: StoreError) -> None:
        self._store_failures.add("sink")
        log.error("could not store events; nothing acknowledged", extra={"error": str(exc)})

    def _canary_seen(self, verdict: Verdict, source: str, now: datetime) -> None:
        """A canary record: proof the path works, never a break-glass use (not stored)."""
        sent = sent_at(verdict.event)
        self.canary_metrics.seen(source, verdict.event.account, sent, now)
        log.info(
            "canary seen",
            extra={
                "account": verdict.event.account,
                "source": source,
                "event_id": verdict.event.event_id,
                "sent": None if sent is None else iso_z(sent),
            },
        )

    def _attributed(self, verdict: Verdict) -> Verdict:
        """A drill verdict with the declared person its event shows (``people.py``)."""
        if verdict.classification != "drill" or not self.rules.people:
            return verdict
        person = attribute(verdict.event, verdict.principal, self.rules.people)
        return verdict if person is None else replace(verdict, person=person)

    # SourceObserver
    def success(self, source: str, account: str, region: str) -> None:
        now = self.clock()
        self._last_success[(source, account, region)] = now
        self.metrics.source_success(source, account, region, now)

    def error(self, source: str, account: str, region: str, kind: str) -> None:
        self.metrics.source_error(source, account, region, kind)

    def malformed(self, source: str, where: str, reason: str) -> None:
        self.metrics.malformed(source)
        log.warning("malformed event", extra={"source": source, "where": where, "reason": reason})

    # -- periodic jobs --------------------------------------------------------------------

    async def _lifecycle_tick(self) -> None:
        lifecycle = Lifecycle(self.store, self.metrics, self.config.detection_grace)
        now = self.clock()
        async with self._counting:
            decided = await lifecycle.tick(self.rules, now, fence=self._fence())
            for window, result in decided:
                self.programme_metrics.window_decided(window, result)
        for principal in self.watched_principals:
            first = await self.store.first_seen("principal", principal.name, now)
            self.metrics.set_drill_due(principal, first)
        await self.store.forget_first_seen("person", [p.name for p in self.rules.people])
        for person in self.rules.people:
            listed = await self.store.first_seen("person", person.name, now)
            self.programme_metrics.listed_since(person.name, listed)

    async def _refresh_shared(self) -> None:
        """Every replica: the organisation-wide totals and schedule from the shared store, so
        whichever replica is scraped shows the same numbers."""
        async with self._counting:
            totals = await self.store.totals()
            self.metrics.restore(totals)
        # Newest-time gauges only move forward, so these need no lock.
        self.programme_metrics.restore(totals)
        now = self.clock()
        Lifecycle.show_schedule(self.metrics, self.rules, now)
        for principal in self.watched_principals:
            first = await self.store.first_seen_at("principal", principal.name)
            if first is not None:
                self.metrics.set_drill_due(principal, first)
        for person in self.rules.people:
            listed = await self.store.first_seen_at("person", person.name)
            if listed is not None:
                self.programme_metrics.listed_since(person.name, listed)

    async def _inventory(self, account: Account) -> None:
        """One account's IAM inventory (``inventory_schedule.py`` says when): its discovered
        principals replaced, its credential checks shown; a failed read changes neither."""
        mine = [p for p in self._discovered if p.account == account.id]
        result = await inventory_account(
            self._clients,
            account,
            self.config.inventory,
            [p for p in self.rules.principals if p.account == account.id],
            keep=mine,
            # Read when the scan is done, with no wait before the result is applied below: a
            # concurrent account's new discovery cannot take the same name meanwhile.
            taken=lambda: {p.name for p in (*self.rules.principals, *self._discovered)},
            on_throttle=self._inventory_throttled,
        )
        if isinstance(result, AccountError):
            self.metrics.source_error(
                INVENTORY_SOURCE, account.id, "global", result.kind, poll_failed=True
            )
            log.warning(
                "IAM inventory failed", extra={"account": account.id, "error": result.message}
            )
            return
        others = tuple(p for p in self._discovered if p.account != account.id)
        if set(result.discovered) != set(mine):
            self._discovered = others + result.discovered
            self._discoveries_changed()
        now = self.clock()
        self.metrics.source_success(INVENTORY_SOURCE, account.id, "global", now)
        self.metrics.inventory_unwatched(account.id, result.truncated)
        max_age = self.config.inventory.max_access_key_age
        for principal in result.principals:
            facts = result.facts[principal.name]  # every principal of a read account has them
            checks = check_credentials(principal, facts, max_key_age=max_age, now=now)
            self.metrics.set_credential_checks(principal.name, {c.check: c.ok for c in checks})
            self.metrics.set_access_key_ages(principal.name, access_key_ages(facts, now))

    def _discoveries_changed(self) -> None:
        """Watch the discovered principals: now, or if the rules were rebuilt for a discovery
        less than ``REBUILD_EVERY`` ago, once that much time has passed (one rebuild for all the
        accounts that discovered something meanwhile)."""
        if self._rebuild is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._rebuilt_at + self._rebuild_every - loop.time()
        if wait > 0:
            self._rebuild = loop.call_later(wait, self._rebuild_for_discoveries)
        else:
            self._rebuild_for_discoveries()

    def _rebuild_for_discoveries(self) -> None:
        self._rebuild = None
        self._rebuilt_at = asyncio.get_running_loop().time()
        self._set_rules(self._loaded_rules)

    def _inventory_throttled(self, account: str) -> None:
        """A throttled IAM call, retried: counted, the source not marked down."""
        self.metrics.source_error(INVENTORY_SOURCE, account, "global", "throttled")

    async def _canary_loop(self, stop: asyncio.Event) -> None:
        """Send the canary now and every ``canary.interval`` (read again after a reload), while
        this replica leads: every replica recognises canaries, one sends them."""
        while not stop.is_set() and not self.stop.is_set():
            await self._send_canaries()
            await wait_any(stop, self.stop, seconds=self.config.canary.interval.total_seconds())

    async def _send_canaries(self) -> None:
        """One canary call per chosen account; a failing account does not stop the others."""
        settings = self.config.canary
        for account in canary_accounts(settings, self._accounts):
            now = self.clock()
            try:
                await send_canary(self._clients, account, settings.role_name, now)
            except RETRYABLE as exc:
                log.warning(
                    "canary call failed",
                    extra={"account": account.id, "kind": classify_error(exc), "error": str(exc)},
                )
                continue
            self.canary_metrics.sent_at(account.id, now)
            log.info("canary sent", extra={"account": account.id, "sent": iso_z(now)})

    async def _checks_loop(self, stop: asyncio.Event) -> None:
        """Run the drift checks now and every ``checks.interval`` (read again after a reload),
        while this replica leads."""
        while not stop.is_set() and not self.stop.is_set():
            if self.config.checks.enabled:
                await self.check_pipeline()
            await wait_any(stop, self.stop, seconds=self.config.checks.interval.total_seconds())

    async def check_pipeline(self) -> PipelineReport:
        """One run of the drift checks: metrics replaced; a check that starts failing (or
        fails for a new reason) is logged once, and so is its recovery."""
        report = await check_config(self.watching, self.clock())
        self.pipeline_metrics.show(report)
        failing = {
            (c.check, c.account, c.region, c.resource): c.reason for c in report.checks if not c.ok
        }
        for key, reason in failing.items():
            if self._failing_checks.get(key) != reason:
                log.warning(
                    "pipeline check failing",
                    extra={
                        "check": key[0],
                        "account": key[1],
                        "region": key[2],
                        "resource": key[3],
                        "reason": reason,
                    },
                )
        for key in self._failing_checks.keys() - failing.keys():
            log.info(
                "pipeline check ok again",
                extra={"check": key[0], "account": key[1], "region": key[2], "resource": key[3]},
            )
        self._failing_checks = failing
        return report

    async def _prune(self) -> None:
        removed = await self.store.prune(self.clock() - self.config.retention)
        if removed:
            log.info("pruned stored events", extra={"removed": removed})

    def calendar_ics(self) -> bytes:
        """``/calendar.ics``: the exercise windows of the next twelve months."""
        now = self.clock()
        after, until = calendar_span(now, DEFAULT_MONTHS)
        path = self.config.source_file
        hint = str(path) if path is not None else "CONFIG"
        return render_calendar(self.rules, after, until, stamp=now, config_hint=hint)

    async def exercise_history(self, limit: int) -> list[dict[str, Any]]:
        """``/api/exercises``: decided windows, newest first, with people and drill records."""
        windows = await self.store.exercise_history(limit)
        records, problems = await asyncio.to_thread(read_records, self.config.records_path)
        for problem in problems:
            if problem not in self._record_problems:  # once each, not on every request
                self._record_problems.add(problem)
                log.warning("exercise record skipped", extra={"problem": problem})
        return history(windows, records)

    # -- readiness ------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        """Rules loaded, store working, and the running sources successful recently
        (``readiness.py``: a few failing accounts of many do not make it unready)."""
        now = self.clock()
        checks = {"rules": True, "store": not self._store_failures}
        if self.config.organization is not None:
            # Unready until the organization was listed once: no sources is no watching.
            checks["organization"] = self._accounts_resolved or bool(self._accounts)
        fresh = {}
        leading = self.leadership.leading.is_set()
        for source in self.sources:
            if id(source) in self._leader_only and not leading:
                continue  # the leader runs it
            last = self._last_success.get(source.labels)
            fresh[source.labels] = last is not None and now - last <= source.staleness
        return Readiness(checks | source_checks(fresh))


def _load_files(path: Path) -> tuple[Config, Rules]:
    config = load_config(path)
    return config, load_rules(config.rules_path)


def _restart_required(running: Config, loaded: Config) -> list[str]:
    """The settings a reload changes that the running daemon cannot apply: the state store
    (file or backend), the listen address, and whether and how often the inventory runs (its
    task is started once)."""
    fixed = {
        "state": (running.state_path, loaded.state_path),
        "store": (running.store, loaded.store),
        "listen": (running.listen, loaded.listen),
        "inventory.enabled": (running.inventory.enabled, loaded.inventory.enabled),
        "inventory.interval": (running.inventory.interval, loaded.inventory.interval),
    }
    return [key for key, (was, now) in fixed.items() if was != now]


def _source_settings(config: Config) -> tuple[object, ...]:
    """What the running sources were built from: a change restarts them."""
    return (config.endpoint_url, config.sources)


def _account_settings(config: Config) -> tuple[object, ...]:
    """What the watched accounts are resolved from: a change resolves them again."""
    return (config.endpoint_url, config.accounts, config.organization)


def run_daemon(config_path: Path) -> int:
    """Entry point of ``breakglass-watcher run``."""
    return asyncio.run(Daemon.load(config_path).run())
