"""``/readyz`` over many sources: one failing account of many is tolerated, a broken
deployment is not, and a small deployment tolerates nothing."""

from __future__ import annotations

from watcher.readiness import source_checks
from watcher.sources.base import SourceLabels


def _pollers(n: int, stale: int) -> dict[SourceLabels, bool]:
    return {("lookup", f"{i:012d}", "us-east-1"): i >= stale for i in range(n)}


def test_a_small_deployment_checks_each_source() -> None:
    checks = source_checks(_pollers(3, 1))
    assert checks == {
        "lookup:000000000000:us-east-1": False,
        "lookup:000000000001:us-east-1": True,
        "lookup:000000000002:us-east-1": True,
    }


def test_one_failing_account_of_many_keeps_the_kind_ready() -> None:
    assert all(source_checks(_pollers(1200, 1)).values())
    assert all(source_checks(_pollers(1200, 120)).values())


def test_a_broken_deployment_is_not_ready() -> None:
    assert source_checks(_pollers(1200, 121)) == {"lookup:1079/1200 fresh": False}
    assert not any(source_checks(_pollers(1200, 1200)).values())


def test_kinds_are_judged_apart() -> None:
    fresh = _pollers(20, 0) | {("eventbridge", "000000000000", "us-east-1"): False}
    checks = source_checks(fresh)
    assert checks["lookup:20/20 fresh"] and not checks["eventbridge:000000000000:us-east-1"]
