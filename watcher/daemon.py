"""The daemon: one asyncio loop, each long-lived job a task of one task group.

Start: load config and rules (refuse to start on errors), open the store, rebuild the metrics
from it, serve HTTP, then run the sources, the exercise lifecycle, the inventory and pruning.
SIGTERM/SIGINT: sources finish the batch in hand (stored before any SQS delete), then exit 0.
SIGHUP: reload config and rules; a broken reload keeps the last good ones.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from watcher.aws import AwsClients
from watcher.classify import Classifier
from watcher.config import load_config
from watcher.credentials import access_key_ages, check_credentials
from watcher.errors import ConfigError, StoreError
from watcher.http import HttpServer, Readiness
from watcher.inventory import discover
from watcher.lifecycle import Lifecycle
from watcher.metrics import WatcherMetrics
from watcher.model import Principal, Rules, TrailEvent
from watcher.rules import load_rules
from watcher.settings import Config
from watcher.sources.lookup import LookupPoller
from watcher.sources.sqs import SqsSource
from watcher.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
LIFECYCLE_INTERVAL = 5.0
PRUNE_INTERVAL = 3600.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """The watcher's running state. ``run`` returns the process exit code."""

    def __init__(self, config_path: Path, *, clock: Clock = utc_now) -> None:
        self.config_path = config_path
        self.clock = clock
        self.registry = CollectorRegistry()
        self.metrics = WatcherMetrics(self.registry)
        self.stop = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._last_success: dict[tuple[str, str, str], datetime] = {}
        # What failed at its last store access ("sink" or a periodic job): /readyz's store
        # check. Each clears on its own next success, so a job whose writes happen to be
        # no-ops cannot hide a failing sink, and a sink that sees no event cannot keep a
        # recovered job failing.
        self._store_failures: set[str] = set()
        self._discovered: tuple[Principal, ...] = ()

    # -- start and stop -------------------------------------------------------------------

    async def run(self) -> int:
        self.config = load_config(self.config_path)
        self._set_rules(load_rules(self.config.rules_path))
        self.store = SqliteStore(self.config.state_path)
        await self.store.open()
        try:
            self.metrics.restore(await self.store.totals())
            self.metrics.config_reloaded(True)
            http = HttpServer(
                self.registry, readiness=self.readiness, recent_events=self.store.recent_events
            )
            host, port = self.config.listen
            self.port = await http.start(host, port)
            log.info("listening", extra={"address": f"http://{host}:{self.port}"})
            try:
                self._install_signal_handlers()
                await self._run_tasks()
            finally:
                await http.stop()
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
            tasks.create_task(self._run_sources())
            tasks.create_task(self._every(LIFECYCLE_INTERVAL, self._lifecycle_tick))
            tasks.create_task(self._every(PRUNE_INTERVAL, self._prune))
            if self.config.inventory.enabled:
                tasks.create_task(
                    self._every(self.config.inventory.interval.total_seconds(), self._inventory)
                )
            tasks.create_task(self._reloads())

    async def _every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` now and every ``seconds`` until stopped; a failure is logged, not fatal."""
        while not self.stop.is_set():
            try:
                await job()
            except StoreError as exc:
                self._store_failures.add(job.__name__)
                log.error("state store failed", extra={"error": str(exc)})
            except Exception:
                log.exception("periodic job failed", extra={"job": job.__name__})
            else:
                self._store_failures.discard(job.__name__)
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), seconds)

    # -- rules and reloads ----------------------------------------------------------------

    def _set_rules(self, rules: Rules) -> None:
        self.rules = rules
        watched = Rules(
            principals=rules.principals + self._undeclared(rules),
            exercises=rules.exercises,
            digest=rules.digest,
        )
        self.classifier = Classifier(watched)
        self.metrics.init_labels(watched, self._source_labels())

    def _undeclared(self, rules: Rules) -> tuple[Principal, ...]:
        declared = {p.name for p in rules.principals}
        return tuple(p for p in self._discovered if p.name not in declared)

    @property
    def watched_principals(self) -> tuple[Principal, ...]:
        return self.classifier.rules.principals

    async def _reloads(self) -> None:
        while not self.stop.is_set():
            waiter = asyncio.ensure_future(self._reload_requested.wait())
            stopper = asyncio.ensure_future(self.stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()

    def reload(self) -> bool:
        """Reload config and rules; on any error keep the last good ones."""
        try:
            config = load_config(self.config_path)
            rules = load_rules(config.rules_path)
        except ConfigError as exc:
            self.metrics.config_reloaded(False)
            log.error(
                "reload failed; keeping the last good config and rules",
                extra={"problems": [str(p) for p in exc.problems]},
            )
            return False
        sources_changed = _source_settings(config) != _source_settings(self.config)
        self.config = config
        self._set_rules(rules)
        self.metrics.config_reloaded(True)
        if sources_changed:
            self._restart_sources.set()
        log.info("reloaded", extra={"rules_digest": rules.digest})
        return True

    # -- sources --------------------------------------------------------------------------

    def _source_labels(self) -> list[tuple[str, str, str]]:
        config = getattr(self, "config", None)
        if config is None:
            return []
        labels: list[tuple[str, str, str]] = []
        if config.eventbridge is not None:
            labels.append(
                (
                    "eventbridge",
                    _queue_account(config.eventbridge.queue_url),
                    config.eventbridge.region,
                )
            )
        if config.lookup is not None:
            labels += [("lookup", a.id, r) for a in config.accounts for r in a.regions]
        if config.inventory.enabled:
            labels += [("iam", a.id, "global") for a in config.accounts]
        return labels

    async def _run_sources(self) -> None:
        """Run every source until stop; restart them all when a reload changed their settings."""
        while not self.stop.is_set():
            self._restart_sources = asyncio.Event()
            stop_sources = asyncio.Event()
            clients = AwsClients(self.config.endpoint_url)
            async with asyncio.TaskGroup() as tasks:
                for source in self._sources(clients):
                    tasks.create_task(source.run(stop_sources))
                waiter = asyncio.ensure_future(self._restart_sources.wait())
                stopper = asyncio.ensure_future(self.stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                stop_sources.set()

    def _sources(self, clients: AwsClients) -> list[SqsSource | LookupPoller]:
        config = self.config
        sources: list[SqsSource | LookupPoller] = []
        if config.eventbridge is not None:
            sources.append(SqsSource(clients, config.eventbridge, self.sink, self))
        if config.lookup is not None:
            for account in config.accounts:
                for region in account.regions:
                    sources.append(
                        LookupPoller(
                            clients,
                            account,
                            region,
                            config.lookup,
                            principals=lambda: self.watched_principals,
                            sink=self.sink,
                            observer=self,
                            checkpoints=self.store,
                            clock=self.clock,
                        )
                    )
        return sources

    async def sink(
        self, events: Sequence[TrailEvent], source: str, checkpoints: Mapping[str, str]
    ) -> None:
        """Classify, store, then count: returns only once the batch is durably stored."""
        now = self.clock()
        verdicts = []
        for event in events:
            try:
                verdict = self.classifier.classify(event)
            except Exception as exc:  # one record must never fail the batch it came in
                self.malformed(source, f"event {event.event_id}", f"cannot classify: {exc}")
                continue
            if verdict is not None:
                verdicts.append(verdict)
        if not verdicts and not checkpoints:
            return  # no break-glass event: nothing to store (most SQS batches)
        try:
            result = await self.store.commit([(v, source) for v in verdicts], checkpoints, now=now)
        except StoreError as exc:
            self._store_failures.add("sink")
            log.error("could not store events; nothing acknowledged", extra={"error": str(exc)})
            raise
        self._store_failures.discard("sink")
        self.metrics.observe(result, source, now)
        for verdict in result.verdicts:
            log.info(
                "break-glass event",
                extra={
                    "principal": verdict.principal,
                    "classification": verdict.classification,
                    "outcome": verdict.outcome,
                    "exercise": verdict.exercise,
                    "event_name": verdict.event.event_name,
                    "event_id": verdict.event.event_id,
                    "source": source,
                },
            )

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
        await lifecycle.tick(self.rules, now)
        for principal in self.watched_principals:
            first = await self.store.first_seen("principal", principal.name, now)
            self.metrics.set_drill_due(principal, first)

    async def _inventory(self) -> None:
        result = await discover(
            AwsClients(self.config.endpoint_url), self.config, self.rules, keep=self._discovered
        )
        self._discovered = result.discovered
        self._set_rules(self.rules)
        now = self.clock()
        failed_accounts = {e.account for e in result.errors}
        for error in result.errors:
            self.metrics.source_error("iam", error.account, "global", error.kind)
            log.warning(
                "IAM inventory failed", extra={"account": error.account, "error": error.message}
            )
        for account in {p.account for p in result.principals} - failed_accounts:
            self.metrics.source_success("iam", account, "global", now)
        for account in {a.id for a in self.config.accounts} - failed_accounts:
            self.metrics.inventory_unwatched(account, result.truncated.get(account, 0))
        max_age = self.config.inventory.max_access_key_age
        for principal in result.principals:
            facts = result.facts.get(principal.name)
            if facts is None:
                continue  # its account could not be read: a failed source, not a failed check
            checks = check_credentials(principal, facts, max_key_age=max_age, now=now)
            self.metrics.set_credential_checks(principal.name, {c.check: c.ok for c in checks})
            self.metrics.set_access_key_ages(principal.name, access_key_ages(facts, now))

    async def _prune(self) -> None:
        removed = await self.store.prune(self.clock() - self.config.retention)
        if removed:
            log.info("pruned stored events", extra={"removed": removed})

    # -- readiness ------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        now = self.clock()
        checks = {"rules": True, "store": not self._store_failures}
        for source, account, region in self._source_labels():
            if source == "iam":
                continue
            last = self._last_success.get((source, account, region))
            checks[f"{source}:{account}:{region}"] = (
                last is not None and now - last <= self._staleness(source)
            )
        return Readiness(checks)

    def _staleness(self, source: str) -> timedelta:
        if source == "lookup" and self.config.lookup is not None:
            return 3 * self.config.lookup.interval + timedelta(minutes=1)
        return timedelta(minutes=2)


def _source_settings(config: Config) -> tuple[object, ...]:
    return (config.endpoint_url, config.accounts, config.eventbridge, config.lookup)


def _queue_account(queue_url: str) -> str:
    parts = queue_url.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-2].isdigit() else "unknown"


def run_daemon(config_path: Path) -> int:
    """Entry point of ``breakglass-watcher run``."""
    return asyncio.run(Daemon(config_path).run())
