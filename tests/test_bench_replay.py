"""bench/replay.py runs at a tiny size, and the archive it generates is laid out as CloudTrail's."""

from __future__ import annotations

import gzip
import io
import json
import re
import runpy
import sys
from pathlib import Path
from typing import Any

import pytest

from watcher.cli import main
from watcher.emulator.archive import ACCOUNT, write_archive

BENCH = Path(__file__).resolve().parent.parent / "bench"
KEY = re.compile(
    r"AWSLogs/(\d{12})/CloudTrail/([a-z0-9-]+)/(\d{4})/(\d{2})/(\d{2})/"
    r"\1_CloudTrail_\2_\3\4\5T\d{4}Z_[0-9a-f]{16}\.json\.gz"
)


def _bench() -> dict[str, Any]:
    """bench/replay.py's globals (bench/ is no package)."""
    return runpy.run_path(str(BENCH / "replay.py"))


def test_the_archive_is_in_cloudtrails_layout(tmp_path: Path) -> None:
    archive = write_archive(tmp_path, 3000, per_file=500)
    files = sorted(tmp_path.rglob("*"))
    logs = [p for p in files if p.is_file()]
    assert len(logs) == archive.files == 6
    assert all(KEY.fullmatch(str(p.relative_to(tmp_path))) for p in logs), logs
    records = [r for p in logs for r in json.loads(gzip.decompress(p.read_bytes()))["Records"]]
    assert len(records) == archive.records
    assert all(next(iter(r)) == "eventVersion" for r in records)
    assert 0 < archive.break_glass < len(records) * 0.02


def test_strict_flag_prints_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_archive(tmp_path / "a", 2000, per_file=250)
    rules = tmp_path / "rules.yaml"
    rules.write_text(_bench()["rules_text"](2))
    outputs = []
    for extra in ([], ["--strict"]):
        args = ["--log-format", "text", "replay", "--rules", str(rules), *extra, str(tmp_path)]
        assert main(args) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert all(json.loads(line)["account"] == ACCOUNT for line in outputs[0].splitlines())
    assert len(outputs[0].splitlines()) > 0


@pytest.mark.slow
def test_the_benchmark_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    code = _bench()["main"](["--count", "3000", "--runs", "1", "--principals", "1", "1000"])
    assert code == 0
    text = out.getvalue()
    assert "replay and replay --strict print the same: True" in text
    assert re.search(r"^replay, 1000 principals +[\d.]+ ", text, re.MULTILINE)
