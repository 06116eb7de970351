"""What the benchmarks that run the real daemon share: the emulator (moto + LookupEvents), the
EventBridge -> SQS pipeline, and examples/config.yaml pointed at them.

The daemon runs as a subprocess through tests/harness.py, exactly as in the end-to-end tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
# Never real AWS: fake credentials, no instance metadata (as tests/conftest.py does).
for key, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ.setdefault(key, value)

from watcher.emulator.infra import Pipeline, create_pipeline  # noqa: E402
from watcher.emulator.server import Emulator, start_emulator  # noqa: E402
from watcher.rules import load_rules  # noqa: E402


@dataclass(frozen=True)
class Setup:
    emulator: Emulator
    pipeline: Pipeline
    config: Path


def typical_config(
    folder: Path, emulator: Emulator, pipeline: Pipeline, **sources: dict[str, Any]
) -> Path:
    """examples/config.yaml (rules/, both sources, inventory) pointed at the emulator;
    ``sources`` overrides keys of ``sources.eventbridge`` / ``sources.lookup``."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
    config.update(
        rules=str(ROOT / "rules"),
        state=str(folder / "state.db"),
        listen="127.0.0.1:0",
        endpoint_url=emulator.endpoint_url,
    )
    config["sources"]["eventbridge"]["queue_url"] = pipeline.queue_url
    for name, overrides in sources.items():
        config["sources"][name].update(overrides)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def emulated(folder: Path, **sources: dict[str, Any]) -> Iterator[Setup]:
    """A running emulator with the pipeline for rules/, and a typical config for it."""
    with start_emulator() as emulator:
        pipeline = create_pipeline(emulator.endpoint_url, load_rules(ROOT / "rules"))
        yield Setup(emulator, pipeline, typical_config(folder, emulator, pipeline, **sources))
