"""The per-source series (``source``, ``account``, ``region``), kept as ready samples.

An organization is thousands of account-regions with 8 series each (up, last success,
staleness bound, errors by 5 kinds): most of a scrape's samples. prometheus_client's metrics
build every sample again at each collection (about 3 µs each, 35 ms at 300 accounts x 4
regions); here each series keeps its last ``Sample`` and a change replaces just that one, so a
collection only lists them (and ``exposition.py`` sees unchanged samples as the same objects).
Names, types, help and labels are those of the metrics table in docs/design.md. Like the
daemon's other counters, the errors counter has no ``_created`` series.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

if TYPE_CHECKING:  # not at run time: sources/ pulls in aiohttp and botocore, which
    # the commands that only read files (replay, validate, calendar) never need
    from watcher.sources.base import SourceLabels


_NAMES = ("source", "account", "region")


class _Family:
    """The samples of one metric family by label values, in the order they were first set."""

    def __init__(self, name: str, kind: str, documentation: str, extra: str | None = None) -> None:
        self.name = name
        self.kind = kind
        self.documentation = documentation
        self.sample_name = f"{name}_total" if kind == "counter" else name
        self._names = (*_NAMES, extra) if extra else _NAMES
        self.samples: dict[tuple[str, ...], Sample] = {}

    def set(self, labels: tuple[str, ...], value: float) -> None:
        sample = self.samples.get(labels)
        tags = sample.labels if sample else dict(zip(self._names, labels, strict=True))
        self.samples[labels] = Sample(self.sample_name, tags, float(value))

    def add(self, labels: tuple[str, ...], amount: float) -> None:
        sample = self.samples.get(labels)
        self.set(labels, (sample.value if sample else 0.0) + amount)

    def get(self, labels: tuple[str, ...]) -> float | None:
        sample = self.samples.get(labels)
        return None if sample is None else sample.value

    def remove(self, labels: tuple[str, ...]) -> None:
        self.samples.pop(labels, None)

    def metric(self) -> Metric:
        family = Metric(self.name, self.documentation, self.kind)
        family.samples = list(self.samples.values())
        return family


class SourceSeries(Collector):
    """``breakglass_source_up``, ``_last_success_timestamp_seconds``, ``_stale_after_seconds``
    and ``_errors_total``."""

    def __init__(self, registry: CollectorRegistry, error_kinds: tuple[str, ...]) -> None:
        self.error_kinds = error_kinds
        self.up = _Family("breakglass_source_up", "gauge", "1 if the source's last poll succeeded.")
        self.last_success = _Family(
            "breakglass_source_last_success_timestamp_seconds",
            "gauge",
            "Time of the source's last successful poll.",
        )
        self.stale_after = _Family(
            "breakglass_source_stale_after_seconds",
            "gauge",
            "How old the source's last success may be before it counts as stale.",
        )
        self.errors = _Family(
            "breakglass_source_errors", "counter", "Source errors by kind.", extra="kind"
        )
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        for family in (self.up, self.last_success, self.stale_after, self.errors):
            yield family.metric()

    def add_source(self, labels: SourceLabels) -> None:
        """Expose a new source: down until it succeeds, every error kind at 0."""
        self.up.set(labels, 0)
        for kind in self.error_kinds:
            if self.errors.get((*labels, kind)) is None:
                self.errors.set((*labels, kind), 0)

    def remove_source(self, labels: SourceLabels) -> None:
        self.up.remove(labels)
        self.last_success.remove(labels)
        for kind in self.error_kinds:
            self.errors.remove((*labels, kind))
