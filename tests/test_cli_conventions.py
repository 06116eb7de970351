"""Exporter and CLI conventions: process and platform series, build info, ``--version``, global
options after the subcommand, and the config path from the environment."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
from harness import write_config

from watcher import __version__
from watcher.cli import CONFIG_ENV, _config_from_env, _parser, main
from watcher.daemon import Daemon

RULES = """
principals:
  - name: bg-user
    match: {user_name: break-glass-admin}
    account: "123456789012"
"""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--version"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.strip() == f"breakglass-watcher {__version__}"


@pytest.mark.parametrize(
    ("argv", "log_format", "log_level"),
    [
        (["--log-format", "text", "validate", "--rules", "r"], "text", None),
        (
            ["validate", "--rules", "r", "--log-format", "text", "--log-level", "DEBUG"],
            "text",
            "DEBUG",
        ),
        (
            ["--log-format", "text", "validate", "--rules", "r", "--log-format", "json"],
            "json",
            None,
        ),
        (["validate", "--rules", "r"], "json", None),
    ],
)
def test_global_options_before_or_after_the_subcommand(
    argv: list[str], log_format: str, log_level: str | None
) -> None:
    args = _parser().parse_args(argv)
    assert (args.log_format, args.log_level) == (log_format, log_level)


def test_the_config_path_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    with pytest.raises(SystemExit):
        _parser().parse_args(["audit"])  # -c is required without the variable
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "config.yaml"))
    for argv in (["audit"], ["run"], ["validate"], ["render", "eventbridge-patterns"]):
        args = _parser().parse_args(argv)
        _config_from_env(args)
        assert args.config == tmp_path / "config.yaml", argv
    explicit = _parser().parse_args(["audit", "-c", "other.yaml"])
    _config_from_env(explicit)
    assert explicit.config == Path("other.yaml")
    rules_only = _parser().parse_args(["validate", "--rules", "rules"])
    _config_from_env(rules_only)
    assert rules_only.config is None


def test_validate_reads_the_config_named_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, endpoint_url="http://127.0.0.1:1", queue_url=None, rules=RULES)
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert main(["validate", "--log-format", "text"]) == 0
    assert "ok: 1 principals" in capsys.readouterr().out


def test_the_daemon_exports_process_platform_and_build_series(tmp_path: Path) -> None:
    config = write_config(tmp_path, endpoint_url="http://127.0.0.1:1", queue_url=None, rules=RULES)
    value = Daemon.load(config).registry.get_sample_value
    assert (
        value(
            "breakglass_build_info",
            {"version": __version__, "python_version": platform.python_version()},
        )
        == 1.0
    )
    start = value("process_start_time_seconds")
    assert start is not None and start > 0
    families = {f.name for f in Daemon.load(config).registry.collect()}
    assert {"python_info", "process_resident_memory_bytes", "process_open_fds"} <= families


def test_replay_starts_without_the_aws_client_stack(tmp_path: Path) -> None:
    """An incident responder's first command: replay's start-up once doubled its time on an
    archive (0.45 s of 1.9 s) when the CLI's metrics import reached aiobotocore."""
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "log.json").write_text('{"Records": []}')
    probe = (
        "import sys\n"
        "from watcher.cli import main\n"
        f"code = main(['replay', '--jobs', '1', '--rules', {str(tmp_path / 'rules.yaml')!r},"
        f" {str(tmp_path / 'log.json')!r}])\n"
        "loaded = sorted({'aiobotocore', 'botocore', 'aiohttp', 'boto3'} & set(sys.modules))\n"
        "print(code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr
