"""The cached ``/metrics`` rendering: byte for byte prometheus_client's, in both formats, after
every kind of change."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from watcher.exposition import CachedExposition

TEXT = ""
CHANGED = [("1", 'quote " and \\ and \n'), ("3", "eu-west-1")]
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.up = Gauge("up", "Up.", ["account", "region"], registry=self.registry)
        self.errors = Counter("errors", "Errors.", ["account", "kind"], registry=self.registry)
        self.delay = Histogram("delay_seconds", "Delay.", buckets=(1, 5), registry=self.registry)
        self.up.labels("1", 'quote " and \\ and \n').set(1)
        self.up.labels("2", "us-east-1").set(1)
        self.up.labels("3", "eu-west-1").set(1)
        self.errors.labels("1", "auth").inc()
        self.delay.observe(2)


def _expected(metrics: Metrics, accept: str) -> bytes:
    if accept == OPENMETRICS:
        text: bytes = openmetrics_latest(metrics.registry)  # type: ignore[no-untyped-call]
        return text
    return generate_latest(metrics.registry)


def _set_up(metrics: Metrics, labels: list[tuple[str, str]], value: float) -> None:
    for account, region in labels:
        metrics.up.labels(account, region).set(value)


CHANGES: dict[str, Callable[[Metrics], None]] = {
    "a value": lambda m: m.up.labels("1", 'quote " and \\ and \n').set(0),
    "two values of three": lambda m: _set_up(m, CHANGED, 0.5),
    "a new label set": lambda m: m.up.labels("2", "eu-west-1").set(1),
    "a label set removed": lambda m: m.errors.remove("1", "auth"),
    "a histogram observed": lambda m: m.delay.observe(7),
    "a family unregistered": lambda m: m.registry.unregister(m.delay),
    "a family registered": lambda m: Gauge("late", "Late.", registry=m.registry).set(3),
    "nothing": lambda m: None,
}


@pytest.mark.parametrize("accept", [TEXT, OPENMETRICS], ids=["text", "openmetrics"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_scrape_equals_prometheus_clients_own(accept: str, change: str) -> None:
    metrics = Metrics()
    exposition = CachedExposition(metrics.registry)
    first, content_type = exposition.render(accept)
    assert first == _expected(metrics, accept)
    assert content_type.startswith("application/openmetrics-text" if accept else "text/plain")
    CHANGES[change](metrics)
    assert exposition.render(accept)[0] == _expected(metrics, accept)


def test_switching_format_renders_the_new_one() -> None:
    metrics = Metrics()
    exposition = CachedExposition(metrics.registry)
    exposition.render(TEXT)
    assert exposition.render(OPENMETRICS)[0] == _expected(metrics, OPENMETRICS)
    metrics.up.labels("3", "us-east-1").set(1)
    assert exposition.render(TEXT)[0] == _expected(metrics, TEXT)


def test_only_changed_samples_are_formatted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = Metrics()
    exposition = CachedExposition(metrics.registry)
    exposition.render(TEXT)
    formatted: list[tuple[str, dict[str, str]]] = []
    real = generate_latest

    def counting(registry: CollectorRegistry, *args: object, **kwargs: object) -> bytes:
        formatted.extend((s.name, s.labels) for f in registry.collect() for s in f.samples)
        return real(registry)

    # Records the samples formatted; the output is still prometheus_client's.
    monkeypatch.setattr(
        "watcher.exposition.choose_encoder", lambda accept: (counting, choose_encoder(accept)[1])
    )
    metrics.errors.labels("1", "auth").inc()
    metrics.up.labels("3", "eu-west-1").set(0)
    assert exposition.render(TEXT)[0] == _expected(metrics, TEXT)
    assert formatted == [
        ("up", {"account": "3", "region": "eu-west-1"}),
        ("errors_total", {"account": "1", "kind": "auth"}),
    ]
