"""``/readyz``'s source checks: a broken deployment fails them, one failing account does not.

Sources of one kind (``lookup``, ``eventbridge``, …) are judged together: the kind is ready
while at most one in ``TOLERATED_SHARE`` of its sources is stale (rounded down). A broken
deployment (credentials, network, endpoint, permissions) fails every source of a kind, and a
small deployment tolerates no failure at all: below ``TOLERATED_SHARE`` sources each is its own
check, as before. Which accounts fail is in ``breakglass_source_up`` and
``breakglass_source_errors_total``, per source, account and region.
"""

from __future__ import annotations

from collections.abc import Mapping

from watcher.sources.base import SourceLabels

TOLERATED_SHARE = 10  # one stale source in ten of a kind is tolerated


def source_checks(fresh: Mapping[SourceLabels, bool]) -> dict[str, bool]:
    """Readiness checks from each running source's freshness."""
    kinds: dict[str, list[tuple[SourceLabels, bool]]] = {}
    for labels, ok in fresh.items():
        kinds.setdefault(labels[0], []).append((labels, ok))
    checks: dict[str, bool] = {}
    for kind, sources in kinds.items():
        tolerated = len(sources) // TOLERATED_SHARE
        if tolerated == 0:
            checks.update({":".join(labels): ok for labels, ok in sources})
        else:
            stale = sum(1 for _, ok in sources if not ok)
            checks[f"{kind}:{len(sources) - stale}/{len(sources)} fresh"] = stale <= tolerated
    return checks
