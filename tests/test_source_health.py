"""Source health metrics that alerts rely on: the IAM inventory reports every readable account
up, and each source exports the bound after which its last success is stale (so the hourly
inventory does not look stale each hour)."""

from __future__ import annotations

from pathlib import Path

from harness import ACCOUNT, write_config

from watcher.daemon import Daemon
from watcher.emulator.server import Emulator
from watcher.metrics import WatcherMetrics

#: A configured account that holds no break-glass principal.
EMPTY_ACCOUNT = "210987654321"
RULES = f"""
principals:
  - name: bg-user
    match: {{user_name: break-glass-admin}}
    account: "{ACCOUNT}"
"""


def _up(metrics: WatcherMetrics, source: str, account: str, region: str) -> float | None:
    labels = {"source": source, "account": account, "region": region}
    return metrics.registry.get_sample_value("breakglass_source_up", labels)


async def test_inventory_marks_every_readable_account_up_and_each_source_has_a_stale_bound(
    emulator: Emulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, endpoint_url=emulator.endpoint_url, queue_url=None, rules=RULES)
    text = config.read_text()
    text = text.replace(
        f'accounts: [{{id: "{ACCOUNT}"}}]',
        f'accounts: [{{id: "{ACCOUNT}"}}, {{id: "{EMPTY_ACCOUNT}"}}]',
    ).replace("inventory: {enabled: false}", "inventory: {enabled: true, interval: 1h}")
    config.write_text(text)
    daemon = Daemon.load(config)
    assert _up(daemon.metrics, "iam", EMPTY_ACCOUNT, "global") == 0.0
    for watched in daemon.watching.accounts:
        await daemon._inventory(watched)
    for account in (ACCOUNT, EMPTY_ACCOUNT):
        assert _up(daemon.metrics, "iam", account, "global") == 1.0, account

    def bound(source: str, account: str, region: str) -> float | None:
        labels = {"source": source, "account": account, "region": region}
        return daemon.registry.get_sample_value("breakglass_source_stale_after_seconds", labels)

    assert bound("iam", EMPTY_ACCOUNT, "global") == 2 * 3600 + 60
    lookup = next(s for s in daemon.sources if s.labels[0] == "lookup")
    assert bound(*lookup.labels) == lookup.staleness.total_seconds()
