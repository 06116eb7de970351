"""deploy/docker/Dockerfile, checked statically (no container engine here).

Checks the stages, the non-root numeric user, the exec-form ENTRYPOINT, CMD and HEALTHCHECK,
the build context that Dockerfile.dockerignore lets through, and runs the HEALTHCHECK command
against a real HTTP server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "docker" / "Dockerfile.dockerignore"
LISTEN_PORT = 9783


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order; continuation lines joined, comment lines dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "dangling line continuation"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each build stage, each starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction; fails on the shell form."""
    value = json.loads(args)
    assert isinstance(value, list), args
    assert all(isinstance(item, str) for item in value), args
    return [str(item) for item in value]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out + r"\Z")


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def build() -> list[list[Instruction]]:
    return stages(parse_dockerfile(DOCKERFILE.read_text()))


def _final(build: list[list[Instruction]], keyword: str) -> list[Instruction]:
    return [i for i in build[-1] if i.keyword == keyword]


def test_multi_stage_with_venv_copied_from_builder(build: list[list[Instruction]]) -> None:
    assert len(build) >= 2
    builder_name = build[0][0].args.split()[-1]
    assert build[0][0].args.split()[-2].upper() == "AS"
    assert any(i.keyword == "RUN" and "pip install ." in i.args for i in build[0]), (
        "the builder installs the package"
    )
    copies = [i.args for i in _final(build, "COPY")]
    assert any(args.startswith(f"--from={builder_name} /opt/breakglass-watcher") for args in copies)
    assert not any(i.keyword == "RUN" and "pip" in i.args for i in build[-1])


def test_runs_as_a_numeric_non_root_user(build: list[list[Instruction]]) -> None:
    (user,) = _final(build, "USER")
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and int(uid) > 0, "runAsNonRoot can only verify a numeric uid"
    assert gid.isdigit() and int(gid) > 0
    assert build[-1].index(user) > max(
        build[-1].index(i) for i in build[-1] if i.keyword in {"RUN", "COPY"}
    ), "USER comes after every RUN and COPY"


def test_entrypoint_and_cmd_are_exec_form_and_run_the_console_script(
    build: list[list[Instruction]],
) -> None:
    (entrypoint,) = _final(build, "ENTRYPOINT")
    (cmd,) = _final(build, "CMD")
    argv = exec_form(entrypoint.args) + exec_form(cmd.args)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(argv[0]).name in scripts
    assert argv[1:] == ["run", "-c", "/etc/breakglass-watcher/config.yaml"]


def test_port_volume_and_healthcheck(build: list[list[Instruction]]) -> None:
    assert [i.args for i in _final(build, "EXPOSE")] == [str(LISTEN_PORT)]
    volumes = [path for i in _final(build, "VOLUME") for path in exec_form(i.args)]
    assert volumes == ["/var/lib/breakglass-watcher"]
    (healthcheck,) = _final(build, "HEALTHCHECK")
    options, _, command = healthcheck.args.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(command)
    assert argv[1] == "-c" and f"127.0.0.1:{LISTEN_PORT}/healthz" in argv[2]


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_follows_healthz(
    build: list[list[Instruction]],
    health_server: ThreadingHTTPServer,
    status: int,
    healthy: bool,
) -> None:
    (healthcheck,) = _final(build, "HEALTHCHECK")
    code = exec_form(healthcheck.args.partition("CMD ")[2])[2]
    # The only change: the image's fixed port becomes this test's free port.
    port = health_server.server_address[1]
    code = code.replace(f"127.0.0.1:{LISTEN_PORT}", f"127.0.0.1:{port}")
    _Health.status = status
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy


def test_healthcheck_fails_when_nothing_listens(
    build: list[list[Instruction]], closed_port: int
) -> None:
    (healthcheck,) = _final(build, "HEALTHCHECK")
    code = exec_form(healthcheck.args.partition("CMD ")[2])[2]
    code = code.replace(f"127.0.0.1:{LISTEN_PORT}", f"127.0.0.1:{closed_port}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert result.returncode != 0


def test_build_context_holds_exactly_what_pip_install_needs(
    build: list[list[Instruction]],
) -> None:
    patterns = ignore_patterns()
    sources = [
        source
        for i in build[0]
        if i.keyword == "COPY"
        for source in i.args.split()[:-1]
        if not source.startswith("--")
    ]
    assert sources
    # pyproject.toml's license-files: the build fails without it.
    assert "LICENSE" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not dockerignore_excludes(patterns, source), source
    package_files = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "watcher").rglob("*.py")
        if "__pycache__" not in p.parts
    ]
    assert package_files
    assert not [p for p in package_files if dockerignore_excludes(patterns, p)]
    for outside in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", "deploy/README.md"):
        assert dockerignore_excludes(patterns, outside), outside
    assert dockerignore_excludes(patterns, "watcher/__pycache__/cli.cpython-311.pyc")


def test_dockerignore_matcher_follows_last_match_and_parents() -> None:
    patterns = ["*", "!src/", "src/secret*", "**/*.log"]
    assert dockerignore_excludes(patterns, "other.txt")
    assert not dockerignore_excludes(patterns, "src/a/b.py")
    assert dockerignore_excludes(patterns, "src/secret.key")
    assert dockerignore_excludes(patterns, "src/a/debug.log")
