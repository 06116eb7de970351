"""The canary's pure parts: its config, its principals, its session names, its patterns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.canary import canary_principals, sent_at, session_name, with_canaries
from watcher.config import load_config
from watcher.errors import ConfigError
from watcher.model import Rules, TrailEvent
from watcher.render import eventbridge_pattern_json
from watcher.settings import Account, CanarySettings

A, B = "111122223333", "444455556666"
ACCOUNTS = [Account(A, ("us-east-1",)), Account(B, ("eu-west-1",))]


def _config(tmp_path: Path, canary: str) -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(
        f'rules: rules\naccounts: [{{id: "{A}"}}, {{id: "{B}"}}]\n'
        f"sources: {{lookup: {{}}}}\n{canary}\n"
    )
    return path


def test_config_defaults_off_and_on_when_given(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path, "")).canary == CanarySettings()
    canary = load_config(_config(tmp_path, f'canary: {{interval: 5m, accounts: ["{B}"]}}')).canary
    assert canary == CanarySettings(True, timedelta(minutes=5), "breakglass-watcher-canary", (B,))


def test_config_errors_are_located(tmp_path: Path) -> None:
    bad = 'canary: {accounts: ["999999999999"], role_name: "no/slash", intervall: 1m}'
    with pytest.raises(ConfigError) as raised:
        load_config(_config(tmp_path, bad))
    text = str(raised.value)
    assert "canary.accounts[0]: account 999999999999 is not in accounts" in text
    assert "canary.role_name: 'no/slash' is not an IAM role name" in text
    assert "canary.intervall: unknown key" in text


def test_principals_cover_the_chosen_accounts_only() -> None:
    assert canary_principals(CanarySettings(), ACCOUNTS) == ()
    chosen = canary_principals(CanarySettings(enabled=True, accounts=(B,)), ACCOUNTS)
    assert [(p.name, p.kind, p.account, p.iam_names) for p in chosen] == [
        ("canary-" + B, "role", B, ("breakglass-watcher-canary",))
    ]


def _event(session: str | None) -> TrailEvent:
    at = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    return TrailEvent(
        "e1",
        at,
        A,
        "us-east-1",
        "AssumeRole",
        "sts.amazonaws.com",
        {},
        raw={},
        session_name=session,
    )


def test_the_send_time_travels_in_the_session_name() -> None:
    sent = datetime(2026, 12, 2, 5, 59, 30, tzinfo=UTC)
    assert session_name(sent) == "canary-1796191170"
    assert sent_at(_event(session_name(sent))) == sent
    for other in (None, "canary-x", "alice", "canary-1796191170-extra"):
        assert sent_at(_event(other)) is None


def test_the_rendered_pattern_matches_the_canary_role() -> None:
    rules = with_canaries(Rules((), ()), CanarySettings(enabled=True), ACCOUNTS)
    pattern = eventbridge_pattern_json(rules)
    # Matched by role name in every account, like any role declared by name.
    assert '"/breakglass-watcher-canary"' in pattern
