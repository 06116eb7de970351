"""`audit` on the shipped example rules against moto: the report a person acts on."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from watcher.demo.scenario import USER_NAME, set_up_demo
from watcher.emulator.server import Emulator

REPO_RULES = Path(__file__).resolve().parent.parent / "rules"


def audit(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher", "audit", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow  # the CLI as a subprocess
def test_audit_of_the_shipped_example(emulator: Emulator, tmp_path: Path) -> None:
    set_up_demo(emulator.endpoint_url, tmp_path, now=datetime.now(UTC))  # the demo's IAM set-up
    config = tmp_path / "audit.yaml"
    config.write_text(
        f"rules: {REPO_RULES}\n"
        f"endpoint_url: {emulator.endpoint_url}\n"
        'accounts: [{id: "123456789012"}]\n'
        "sources: {lookup: {}}\n"
    )
    healthy = audit(config)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "2 principals, 0 failing checks" in healthy.stdout
    for line in ("OK    login_profile", "OK    mfa_device", "OK    trust_policy"):
        assert line in healthy.stdout

    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=emulator.endpoint_url)
    (key,) = iam.list_access_keys(UserName=USER_NAME)["AccessKeyMetadata"]
    iam.update_access_key(UserName=USER_NAME, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    iam.delete_login_profile(UserName=USER_NAME)
    broken = audit(config)
    assert broken.returncode == 1
    assert f"access key AKIA…{key['AccessKeyId'][-4:]} inactive" in broken.stdout
    assert "FAIL  login_profile" in broken.stdout
