"""Every Prometheus metric of docs/design.md "Metrics", in one injectable registry.

Label values come only from the rules, the config and the code (principal and exercise names,
source/account/region of configured sources, fixed enums), never from raw event data.

Counters rebuilt from the store must equal the store's aggregates, also across reloads that drop
a principal and add it back. So the persisted aggregates are mirrored here (``_Mirrored*``): the
mirror holds every known total, exposed label sets are brought up to it, and nothing ever goes
down. Timestamp gauges whose value is unknown are left absent rather than 0, so an alert like
``time() - x > …`` cannot fire on a value that only means "never".

``breakglass_events_malformed_total{source}`` counts input records the source could not read,
whatever account/region they came from. ``breakglass_inventory_unwatched_principals{account}``
counts the IAM matches the discovery bound left unwatched, set by each inventory run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import product
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from watcher.credentials import drill_due_at
from watcher.model import CLASSIFICATIONS, OUTCOMES, Principal, Rules
from watcher.source_metrics import SourceSeries
from watcher.store.base import CommitResult, Totals

if TYPE_CHECKING:  # not at run time: sources/ pulls in aiohttp and botocore, which
    # the commands that only read files (replay, validate, calendar) never need
    from watcher.sources.base import SourceLabels

Key = tuple[str, ...]
"""(source, account, region) of one configured source."""

WINDOW_RESULTS = ("detected", "missed")
#: ``other`` is what ``sources/retry.py`` and ``inventory.py`` report for an error they cannot
#: place.
ERROR_KINDS = ("throttled", "network", "auth", "malformed", "other")
#: The ``source`` label of the IAM inventory: the one source that delivers no CloudTrail events.
INVENTORY_SOURCE = "iam"
#: Seconds: LookupEvents is minutes late, a stalled source hours.
DELAY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


class _MirroredCounter:
    """A labelled counter showing, for every exposed label set, a total kept here."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.totals: dict[Key, int] = {}
        self._shown: dict[Key, int] = {}

    def add(self, key: Key, n: int = 1) -> None:
        self.totals[key] = self.totals.get(key, 0) + n

    def restore(self, totals: Iterable[tuple[Key, int]]) -> None:
        for key, n in totals:
            self.totals[key] = max(n, self.totals.get(key, 0))

    def show(self, keys: Iterable[Key]) -> None:
        """Expose exactly ``keys`` (0 if no total yet), each at its total."""
        wanted = dict.fromkeys(keys)  # a set that keeps the exposition in rule order
        for gone in self._shown.keys() - wanted.keys():
            self.counter.remove(*gone)
            del self._shown[gone]
        for key in wanted:
            child = self.counter.labels(*key)  # creates it at 0 if new
            shown, total = self._shown.get(key, 0), self.totals.get(key, 0)
            if total > shown:
                child.inc(total - shown)
            self._shown[key] = max(total, shown)

    def refresh(self, keys: Iterable[Key]) -> None:
        """Bring only ``keys`` up to their totals (those exposed; a commit's keys)."""
        for key in keys:
            shown = self._shown.get(key)
            total = self.totals.get(key, 0)
            if shown is not None and total > shown:
                self.counter.labels(*key).inc(total - shown)
                self._shown[key] = total


class _MirroredGauge:
    """A labelled timestamp gauge showing the newest value known for each exposed label set."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self.values: dict[Key, float] = {}
        self._allowed: set[Key] = set()

    def newest(self, key: Key, value: float) -> None:
        self.values[key] = max(value, self.values.get(key, value))

    def show(self, keys: Iterable[Key]) -> None:
        """Expose the keys among ``keys`` that have a value; drop every other label set."""
        allowed = dict.fromkeys(keys)
        self._allowed = set(allowed)
        wanted = [k for k in allowed if k in self.values]
        self.gauge.clear()
        for key in wanted:
            self.gauge.labels(*key).set(self.values[key])

    def refresh(self, keys: Iterable[Key]) -> None:
        """Expose the newest values of only ``keys`` (among those ``show`` allowed)."""
        for key in keys:
            if key in self._allowed and key in self.values:
                self.gauge.labels(*key).set(self.values[key])


def drop_created_series() -> None:
    """No ``*_created`` series for metrics made after this call: they double the series count
    and nothing reads them.

    prometheus_client's switch is process-wide, so each process entry point (the CLI, the
    benchmarks, the test suite) calls this once before it builds metrics.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library


class WatcherMetrics:
    """The watcher's metrics in ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        pc = ["principal", "classification"]
        self.events = _MirroredCounter(
            Counter(
                "breakglass_events_total",
                "Classified break-glass events.",
                [*pc, "outcome"],
                registry=r,
            )
        )
        self.sessions = _MirroredCounter(
            Counter(
                "breakglass_sessions_total",
                "Distinct break-glass sessions, under the classification of their first event.",
                pc,
                registry=r,
            )
        )
        self.last_event = _MirroredGauge(
            Gauge(
                "breakglass_last_event_timestamp_seconds",
                "Event time of the newest event.",
                pc,
                registry=r,
            )
        )
        self.last_drill = _MirroredGauge(
            Gauge(
                "breakglass_principal_last_drill_timestamp_seconds",
                "Event time of the newest drill event.",
                ["principal"],
                registry=r,
            )
        )
        self.windows = _MirroredCounter(
            Counter(
                "breakglass_exercise_windows_total",
                "Closed exercise windows by result.",
                ["exercise", "result"],
                registry=r,
            )
        )
        self.window_open = Gauge(
            "breakglass_exercise_window_open",
            "1 while a window of the exercise is open.",
            ["exercise"],
            registry=r,
        )
        self.next_window_start = Gauge(
            "breakglass_exercise_next_window_start_timestamp_seconds",
            "Start of the exercise's next window.",
            ["exercise"],
            registry=r,
        )
        self.drill_due = Gauge(
            "breakglass_principal_drill_due_timestamp_seconds",
            "Last drill (or first watched) plus max_days_between_drills.",
            ["principal"],
            registry=r,
        )
        self.principal_info = Gauge(
            "breakglass_principal_info",
            "1 per watched principal.",
            ["principal", "kind", "origin"],
            registry=r,
        )
        self.credential_check = Gauge(
            "breakglass_credential_check",
            "1 ok, 0 failing.",
            ["principal", "check"],
            registry=r,
        )
        self.access_key_age = Gauge(
            "breakglass_access_key_age_seconds",
            "Age of each access key.",
            ["principal", "key"],
            registry=r,
        )
        self.source_series = SourceSeries(r, ERROR_KINDS)
        self.malformed_events = Counter(
            "breakglass_events_malformed_total",
            "Input records a source could not read.",
            ["source"],
            registry=r,
        )
        self.detection_delay = Histogram(
            "breakglass_detection_delay_seconds",
            "Event time to classified.",
            ["source"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.unwatched_gauge = Gauge(
            "breakglass_inventory_unwatched_principals",
            "IAM users and roles matching discovery that the per-account bound left unwatched.",
            ["account"],
            registry=r,
        )
        self.rules_info = Gauge(
            "breakglass_rules_info",
            "1, labelled with the loaded rules' digest.",
            ["digest"],
            registry=r,
        )
        self.leader = Gauge(
            "breakglass_leader",
            "1 while this replica holds the leader lease (LookupEvents, inventory, windows).",
            ["replica"],
            registry=r,
        )
        self.reload_success = Gauge(
            "breakglass_config_last_reload_success",
            "1 if the last config/rules (re)load succeeded.",
            registry=r,
        )
        self._principals: dict[str, Principal] = {}
        self._first_watched: dict[str, datetime] = {}
        self._exercises: tuple[str, ...] = ()
        self._sources: frozenset[SourceLabels] = frozenset()

    # -- label sets -----------------------------------------------------------------------

    def init_labels(self, rules: Rules, sources: Sequence[SourceLabels]) -> None:
        """Expose every label set of ``rules`` and ``sources`` (counters at their totals, else 0)
        and drop those of principals, exercises and sources no longer there."""
        gone = set(self._principals) - {p.name for p in rules.principals}
        self._principals = {p.name: p for p in rules.principals}
        for metric in (self.drill_due, self.credential_check, self.access_key_age):
            for name in gone:
                metric.remove_by_labels({"principal": name})
        self.principal_info.clear()
        for p in rules.principals:
            self.principal_info.labels(p.name, p.kind, p.origin).set(1)
            self._update_drill_due(p.name)  # max_days_between_drills may have changed

        exercises = tuple(e.name for e in rules.exercises)
        for name in set(self._exercises) - set(exercises):
            self.window_open.remove(name)
            self.next_window_start.remove(name)
        for name in exercises:
            if name not in self._exercises:
                self.window_open.labels(name).set(0)
        self._exercises = exercises
        self._show()

        self._init_sources(frozenset(sources))
        self.rules_info.clear()
        self.rules_info.labels(rules.digest).set(1)

    def _init_sources(self, sources: frozenset[SourceLabels]) -> None:
        for labels in self._sources - sources:
            self.source_series.remove_source(labels)
        for labels in sources - self._sources:
            self.source_series.add_source(labels)
        names = {s for s, _, _ in sources} - {INVENTORY_SOURCE}
        for name in ({s for s, _, _ in self._sources} - {INVENTORY_SOURCE}) - names:
            self.malformed_events.remove(name)
            self.detection_delay.remove(name)
        for name in names:
            self.malformed_events.labels(name)
            self.detection_delay.labels(name)
        self._sources = sources

    def _show(self) -> None:
        """Bring every mirrored metric's exposed label sets up to date."""
        principals = list(self._principals)
        self.events.show(product(principals, CLASSIFICATIONS, OUTCOMES))
        self.sessions.show(product(principals, CLASSIFICATIONS))
        self.last_event.show(product(principals, CLASSIFICATIONS))
        self.last_drill.show((p,) for p in principals)
        self.windows.show(product(self._exercises, WINDOW_RESULTS))

    # -- events ---------------------------------------------------------------------------

    def restore(self, totals: Totals) -> None:
        """Take the store's aggregates at start: a restart changes no metric."""
        self.events.restore(totals.events.items())
        self.sessions.restore(totals.sessions.items())
        self.windows.restore(totals.windows.items())
        for key, t in totals.last_event.items():
            self.last_event.newest(key, t.timestamp())
        for principal, t in totals.last_drill.items():
            self.last_drill.newest((principal,), t.timestamp())
        for name in self._principals:
            self._update_drill_due(name)
        self._show()

    def observe(self, result: CommitResult, source: str, now: datetime) -> None:
        """Count what one commit newly stored; ``source`` labels the detection delay. Only the
        label sets the commit touched are updated (a commit is one or a few principals')."""
        for v in result.verdicts:
            t = v.event.event_time.timestamp()
            self.events.add((v.principal, v.classification, v.outcome))
            self.last_event.newest((v.principal, v.classification), t)
            if v.classification == "drill":
                self.last_drill.newest((v.principal,), t)
                self._update_drill_due(v.principal)
            delay = (now - v.event.event_time).total_seconds()
            self.detection_delay.labels(source).observe(max(0.0, delay))
        for principal, classification in result.new_sessions:
            self.sessions.add((principal, classification))
        self.events.refresh((v.principal, v.classification, v.outcome) for v in result.verdicts)
        self.last_event.refresh((v.principal, v.classification) for v in result.verdicts)
        self.last_drill.refresh((v.principal,) for v in result.verdicts)
        self.sessions.refresh(result.new_sessions)

    def set_drill_due(self, principal: Principal, first_watched: datetime) -> None:
        """Set the principal's drill due time, kept current as drills arrive.

        Due = last drill (or ``first_watched`` if none yet) + ``max_days_between_drills``.
        """
        self._first_watched[principal.name] = first_watched
        self._update_drill_due(principal.name)

    def _update_drill_due(self, name: str) -> None:
        principal = self._principals.get(name)
        first_watched = self._first_watched.get(name)
        if principal is None or first_watched is None:
            return
        last = self.last_drill.values.get((name,))
        last_drill = None if last is None else datetime.fromtimestamp(last, UTC)
        due = drill_due_at(principal, last_drill, first_watched)
        self.drill_due.labels(name).set(due.timestamp())

    # -- exercise windows -----------------------------------------------------------------

    def set_window_state(self, exercise: str, *, open_: bool, next_start: datetime | None) -> None:
        """Whether a window is open now, and when the next starts (None: no next window)."""
        self.window_open.labels(exercise).set(1 if open_ else 0)
        if next_start is None:
            self.next_window_start.remove(exercise)
        else:
            self.next_window_start.labels(exercise).set(next_start.timestamp())

    def window_decided(self, exercise: str, result: str) -> None:
        self.windows.add((exercise, result))
        self._show()

    # -- credentials ----------------------------------------------------------------------

    def set_credential_checks(self, principal: str, checks: Mapping[str, bool]) -> None:
        """Replace the principal's check results (check names as in docs/design.md "Metrics")."""
        self.credential_check.remove_by_labels({"principal": principal})
        if principal in self._principals:
            for check, ok in checks.items():
                self.credential_check.labels(principal, check).set(1 if ok else 0)

    def set_access_key_ages(self, principal: str, ages: Mapping[str, float]) -> None:
        """Replace the principal's key ages: key label → age in seconds."""
        self.access_key_age.remove_by_labels({"principal": principal})
        if principal in self._principals:
            for key, age in ages.items():
                self.access_key_age.labels(principal, key).set(age)

    # -- sources and config ---------------------------------------------------------------

    def source_success(self, source: str, account: str, region: str, now: datetime) -> None:
        self.source_series.up.set((source, account, region), 1)
        self.source_series.last_success.set((source, account, region), now.timestamp())

    def set_stale_after(self, bounds: Mapping[SourceLabels, float]) -> None:
        """Expose exactly these sources' staleness bounds, in seconds."""
        stale_after = self.source_series.stale_after
        stale_after.samples.clear()
        for labels, seconds in bounds.items():
            stale_after.set(labels, seconds)

    def source_error(
        self, source: str, account: str, region: str, kind: str, *, poll_failed: bool = False
    ) -> None:
        """Count an error; only a failed poll marks the source down.

        Unless the caller says the poll failed, two kinds are not failed polls: a ``malformed``
        record, and ``throttled`` (both event sources retry a throttled call until it succeeds;
        a poll that stays throttled shows as stale instead).
        """
        self.source_series.errors.add((source, account, region, kind), 1)
        if poll_failed or kind not in ("malformed", "throttled"):
            self.source_series.up.set((source, account, region), 0)

    def malformed(self, source: str) -> None:
        self.malformed_events.labels(source).inc()

    def set_leader(self, replica: str, leading: bool) -> None:
        self.leader.labels(replica).set(1 if leading else 0)

    def inventory_unwatched(self, account: str, count: int) -> None:
        """Matching IAM principals the discovery bound left out in ``account`` (0: none)."""
        self.unwatched_gauge.labels(account).set(count)

    def config_reloaded(self, ok: bool) -> None:
        self.reload_success.set(1 if ok else 0)
