"""The canary's metrics (``watcher/canary.py``), in the watcher's registry.

Label values are configured accounts and source names only. ``last_seen`` starts, for every
source and canary account, at the time the watcher began expecting canaries there (start, or the
reload that chose the account): so ``time() - last_seen`` also alerts on a canary that never
arrives, without firing on "never" right after a start.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Gauge, Histogram

from watcher.metrics import DELAY_BUCKETS


class CanaryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Gauge(
            "breakglass_canary_sent_timestamp_seconds",
            "When the last canary call succeeded in the account.",
            ["account"],
            registry=registry,
        )
        self.last_seen = Gauge(
            "breakglass_canary_last_seen_timestamp_seconds",
            "When the source last delivered a canary record of the account (before the first: "
            "when the watcher began expecting one).",
            ["source", "account"],
            registry=registry,
        )
        self.delay = Histogram(
            "breakglass_canary_delay_seconds",
            "Canary send time to classified.",
            ["source"],
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.interval = Gauge(
            "breakglass_canary_interval_seconds",
            "How often a canary is sent (absent: canary off).",
            registry=registry,
        )
        self._accounts: frozenset[str] = frozenset()
        self._pairs: set[tuple[str, str]] = set()

    def init(
        self,
        accounts: Iterable[str],
        interval: timedelta | None,
        sources: Iterable[str],
        now: datetime,
    ) -> None:
        """Expose the canary of ``accounts`` (none: canary off) from ``sources``; drop the
        accounts and sources gone; a new pair starts waiting ``now``."""
        accounts = frozenset(accounts)
        pairs = {(s, a) for s in sources for a in accounts}
        for pair in self._pairs - pairs:
            self.last_seen.remove(*pair)
        for account in self._accounts - accounts:
            self.sent.remove_by_labels({"account": account})
        for source, account in pairs - self._pairs:
            self.last_seen.labels(source, account).set(now.timestamp())
        self._accounts, self._pairs = accounts, pairs
        self.interval.set(0 if interval is None or not accounts else interval.total_seconds())
        for source in {s for s, _ in pairs}:
            self.delay.labels(source)

    def sent_at(self, account: str, at: datetime) -> None:
        self.sent.labels(account).set(at.timestamp())

    def seen(self, source: str, account: str, sent: datetime | None, now: datetime) -> None:
        """A canary record of ``account`` classified now; ``sent`` from its session name."""
        if (source, account) not in self._pairs:
            return  # a canary of an account no longer chosen: no label set for it
        self.last_seen.labels(source, account).set(now.timestamp())
        if sent is not None:
            self.delay.labels(source).observe(max(0.0, (now - sent).total_seconds()))
