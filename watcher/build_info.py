"""The exporter's own series, as every Prometheus exporter has them: ``process_*`` (CPU, memory,
open files, start time), ``python_info`` and ``breakglass_build_info``."""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector

from watcher import __version__


def register_process_metrics(registry: CollectorRegistry) -> None:
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    info = Gauge(
        "breakglass_build_info",
        "1, labelled with the watcher's version and the Python it runs on.",
        ["version", "python_version"],
        registry=registry,
    )
    info.labels(__version__, platform.python_version()).set(1)
