"""deploy/systemd: the unit's hardening, ``systemd-analyze verify`` and its offline exposure score.

systemd-analyze runs when the machine has it (these checks need no running systemd); the unit
parse and the example config checks always run.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from watcher.config import load_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "breakglass-watcher.service"
EXAMPLE_CONFIG = ROOT / "deploy" / "systemd" / "config.yaml"
# systemd-analyze security's scale is 0-100 internally (shown as 0.0-10.0); 20 is "2.0 OK".
MAX_EXPOSURE = 20

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """Sections of a unit file, each a list of (key, value): keys may repeat."""
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit[section] if k == key]


def single(unit: Unit, section: str, key: str) -> str:
    (value,) = values(unit, section, key)
    return value


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


HARDENING = {
    "DynamicUser": "yes",
    "StateDirectory": "breakglass-watcher",
    "ConfigurationDirectory": "breakglass-watcher",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "MemoryDenyWriteExecute": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "UMask": "0077",
}


@pytest.mark.parametrize(("key", "expected"), HARDENING.items())
def test_hardening(unit: Unit, key: str, expected: str) -> None:
    assert single(unit, "Service", key) == expected


def test_system_call_filter_allows_only_the_service_set(unit: Unit) -> None:
    filters = values(unit, "Service", "SystemCallFilter")
    assert filters[0] == "@system-service"
    assert all(f.startswith("~") for f in filters[1:]), "later lines may only take away"


def test_lifecycle(unit: Unit) -> None:
    argv = shlex.split(single(unit, "Service", "ExecStart"))
    assert PurePosixPath(argv[0]).name == "breakglass-watcher"
    assert argv[1:] == ["run", "-c", "/etc/breakglass-watcher/config.yaml"]
    assert single(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert single(unit, "Service", "Restart") == "always"
    assert single(unit, "Unit", "StartLimitIntervalSec") == "0"
    assert single(unit, "Service", "MemoryMax") == "256M"
    assert single(unit, "Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in single(unit, "Unit", "After")


def test_example_config_fits_the_unit_directories(unit: Unit, tmp_path: Path) -> None:
    argv = shlex.split(single(unit, "Service", "ExecStart"))
    config_dir = PurePosixPath(argv[-1]).parent
    assert config_dir == PurePosixPath("/etc") / single(unit, "Service", "ConfigurationDirectory")
    document = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    state_dir = PurePosixPath("/var/lib") / single(unit, "Service", "StateDirectory")
    assert PurePosixPath(document["state"]).parent == state_dir
    # Relative rules are resolved against the config's folder: lay the example out as installed.
    shutil.copy(EXAMPLE_CONFIG, tmp_path / "config.yaml")
    shutil.copytree(ROOT / "deploy" / "kubernetes" / "rules", tmp_path / document["rules"])
    config = load_config(tmp_path / "config.yaml")
    assert config.rules_path == tmp_path / "rules"
    assert set(config.sources) == {"eventbridge", "lookup"}


def _analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not installed")
    return path


def _installable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's console script (verify checks it exists)."""
    script = Path(sys.executable).parent / "breakglass-watcher"
    assert script.exists(), "pip install -e . provides the console script"
    text = UNIT.read_text().replace(
        "/opt/breakglass-watcher/bin/breakglass-watcher", str(script), 1
    )
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [_analyze(), "verify", str(_installable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 on unknown keys or bad values too, and only warns: any output is a finding.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_systemd_analyze_security_exposure_is_low(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            _analyze(),
            "security",
            "--offline=yes",
            f"--threshold={MAX_EXPOSURE}",
            "--no-pager",
            str(_installable_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert result.returncode == 0, f"exposure {match.group(1)} above {MAX_EXPOSURE / 10}"
