"""Located validation of YAML files, shared by ``config.py`` and ``rules.py``.

Stage one checks shape (mapping or list, known keys, value types, required keys) and hands back
only the values of the right type; stage two, in the callers, checks what values mean. Every
problem is collected with its file and path (``exercises[0].duration``), so a person sees all of
them at once, and nothing but :class:`~watcher.errors.ConfigError` ever leaves.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import yaml

from watcher.durations import parse_duration
from watcher.errors import ConfigError, Problem

Kind = Literal["str", "int", "number", "bool", "list", "mapping", "account", "duration", "time"]

_ACCOUNT = re.compile(r"\d{12}")
MAX_FILE_BYTES = 1024 * 1024  # one config or rule file; a person writes far less
MAX_DURATION = timedelta(days=36600)  # a hundred years: far beyond any sensible setting
FIRST_YEAR, LAST_YEAR = 2000, 2100  # the years a date in a rule (or a CloudTrail event) may have
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_IAM_GLOB = re.compile(r"[\w+=,.@*?\[\]!-]+", re.ASCII)


@dataclass(frozen=True, slots=True)
class At:
    """Where a value sits: file label and a path like ``principals[1].match.role_arn``."""

    file: str
    path: str = ""

    def key(self, key: str) -> At:
        return At(self.file, f"{self.path}.{key}" if self.path else key)

    def item(self, index: int) -> At:
        return At(self.file, f"{self.path}[{index}]")


class Report:
    """Collects problems; :meth:`raise_if_any` raises them together."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, at: At, reason: str) -> None:
        self.problems.append(Problem(at.file, at.path, reason))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


@dataclass(frozen=True, slots=True)
class Key:
    """One expected key of a mapping: the kind of value, and whether it must be there."""

    kind: Kind
    required: bool = False


class Fields:
    """The keys of a mapping that passed the shape check, with typed accessors."""

    def __init__(self, values: dict[str, object], given: set[str], at: At) -> None:
        self._values = values
        self._given = given
        self.at = at

    def has(self, key: str) -> bool:
        """Whether ``key`` holds a value of the right kind."""
        return key in self._values

    def given(self, key: str) -> bool:
        """Whether ``key`` holds a value at all (a wrong kind was reported already)."""
        return key in self._given

    def value(self, key: str) -> object:
        return self._values.get(key)

    def text(self, key: str) -> str | None:
        value = self._values.get(key)
        return value if isinstance(value, str) else None

    def integer(self, key: str) -> int | None:
        value = self._values.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def number(self, key: str) -> float | None:
        value = self._values.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None

    def flag(self, key: str, default: bool) -> bool:
        value = self._values.get(key)
        return value if isinstance(value, bool) else default

    def items(self, key: str) -> list[object]:
        value = self._values.get(key)
        return list(value) if isinstance(value, list) else []

    def mapping(self, key: str) -> dict[object, object] | None:
        value = self._values.get(key)
        return value if isinstance(value, dict) else None


def describe(value: object) -> str:
    """A short, human name for what YAML produced (for "expected X, got Y")."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({_short(value)!r})"
    if isinstance(value, datetime):
        return f"a date and time ({value.isoformat()})"
    if isinstance(value, date):
        return f"a date ({value.isoformat()})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping (key: value)"
    return type(value).__name__


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_EXPECTED: dict[Kind, str] = {
    "str": "text",
    "int": "a whole number",
    "number": "a number",
    "bool": "true or false",
    "list": "a list",
    "mapping": "a mapping (key: value)",
    "account": 'a 12-digit account id in quotes, like "123456789012"',
    "duration": "a duration like 4h or 30m",
    "time": "a date and time with an offset, like 2026-05-04T14:00:00+02:00",
}


def _is_number(value: object) -> bool:
    """A finite int or float (YAML's ``.nan`` and ``.inf`` are no setting anyone means)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


_ACCEPTS: dict[Kind, Callable[[object], bool]] = {
    "str": lambda v: isinstance(v, str),
    "account": lambda v: isinstance(v, str),
    "duration": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "mapping": lambda v: isinstance(v, dict),
    "time": lambda v: isinstance(v, datetime | date | str),  # YAML makes timestamps datetimes
}


def _kind_problem(kind: Kind, value: object) -> str | None:
    """Why ``value`` is not of ``kind``, or None when it is."""
    if _ACCEPTS[kind](value):
        return None
    if kind == "account" and isinstance(value, int) and not isinstance(value, bool):
        digits = str(value)
        example = f'"{digits}"' if len(digits) == 12 else '"123456789012"'
        return (
            f"account ids must be quoted text, like {example}: YAML reads an unquoted "
            "number and drops leading zeros (or reads it as octal)"
        )
    if kind in ("int", "number") and isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if kind == "duration" and _is_number(value):
        return f"{value} has no unit; write a duration like {value}s, {value}m or {value}h"
    return f"expected {_EXPECTED[kind]}, got {describe(value)}"


def check_mapping(
    node: object, spec: Mapping[str, Key], at: At, report: Report, *, what: str = "a mapping"
) -> Fields | None:
    """Shape-check a mapping against ``spec``; None (and a problem) when it is no mapping.

    Unknown keys, missing required keys and values of the wrong kind are reported; the returned
    :class:`Fields` hold the keys whose values have the right kind. An empty value (YAML null)
    counts as absent.
    """
    if not isinstance(node, dict):
        report.add(at, f"expected {what}, got {describe(node)}")
        return None
    values: dict[str, object] = {}
    given: set[str] = set()
    for key, value in node.items():
        if not isinstance(key, str):
            report.add(at, f"key {key!r} is not text; keys are names like {next(iter(spec))}")
            continue
        if key not in spec:
            report.add(at.key(key), _unknown_key(key, spec))
            continue
        if value is None:
            continue
        given.add(key)
        problem = _kind_problem(spec[key].kind, value)
        if problem is None:
            values[key] = value
        else:
            report.add(at.key(key), problem)
    for key, expected in spec.items():
        if expected.required and node.get(key) is None:
            report.add(at.key(key), "is required" + (" (it is empty)" if key in node else ""))
    return Fields(values, given, at)


def _unknown_key(key: str, spec: Mapping[str, Key]) -> str:
    close = difflib.get_close_matches(key, list(spec), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "expected one of " + ", ".join(spec)
    return f"unknown key; {hint}"


def text_items(values: list[object], at: At, report: Report) -> Iterator[tuple[At, str]]:
    """The text items of a list with their locations; other items are reported."""
    for index, value in enumerate(values):
        if isinstance(value, str):
            yield at.item(index), value
        else:
            report.add(at.item(index), f"expected text, got {describe(value)}")


def account_id(value: str, at: At, report: Report) -> str | None:
    """``value`` if it is a 12-digit AWS account id, else None and a problem."""
    if _ACCOUNT.fullmatch(value):
        return value
    report.add(at, f"{_short(value)!r} is not a 12-digit AWS account id")
    return None


def iam_glob(pattern: str, at: At, report: Report, what: str) -> bool:
    """Whether ``pattern`` is a glob that can match ``what`` (IAM and STS names share a charset)."""
    if _IAM_GLOB.fullmatch(pattern):
        backwards = _backwards_range(pattern)
        if backwards is None:
            return True
        report.add(
            at,
            f"{_short(pattern)!r} can never match {what}: the range [{backwards}] runs "
            "backwards (write the lower character first)",
        )
        return False
    report.add(
        at,
        f"{_short(pattern)!r} can never match {what}: use letters, digits, +=,.@_- and the "
        "glob characters * ? [ ]",
    )
    return False


def _backwards_range(pattern: str) -> str | None:
    """The first reversed range (``z-a``) in a glob's ``[...]`` sets, or None.

    ``fnmatch`` silently drops such a range, so ``[z-a]`` matches nothing: a mistake in the file
    that would quietly turn a condition or a discovery pattern off.
    """
    i = 0
    while i < len(pattern):
        if pattern[i] != "[":
            i += 1
            continue
        j = i + 1
        if j < len(pattern) and pattern[j] == "!":
            j += 1
        if j < len(pattern) and pattern[j] == "]":
            j += 1
        close = pattern.find("]", j)
        if close < 0:
            return None  # an unclosed "[" is a literal character
        body = pattern[i + 1 : close].removeprefix("!")
        k = 0
        while k + 2 < len(body):
            if body[k + 1] == "-":
                if body[k] > body[k + 2]:
                    return body[k : k + 3]
                k += 3
            else:
                k += 1
        i = close + 1
    return None


def duration(
    fields: Fields, key: str, report: Report, *, allow_zero: bool = False
) -> timedelta | None:
    """The duration at ``key`` if present and valid; problems are reported."""
    text = fields.text(key)
    if text is None:
        return None
    try:
        value = parse_duration(text, allow_zero=allow_zero)
    except ValueError as exc:
        report.add(fields.at.key(key), str(exc))
        return None
    if value > MAX_DURATION:
        report.add(fields.at.key(key), f"{text!r} is longer than 100 years")
        return None
    return value


def read_file(path: Path, label: str) -> bytes:
    """The bytes of a config or rule file: a regular file of at most ``MAX_FILE_BYTES``.

    The size is checked before and while reading, so neither a huge file nor one that grows
    (or a FIFO, a device) can block or exhaust the daemon.
    """
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise ConfigError([Problem(label, "", "is not a regular file")])
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([Problem(label, "", f"cannot read: {exc.strerror or exc}")]) from None
    except ValueError as exc:  # a path with a NUL byte
        raise ConfigError([Problem(label, "", f"cannot read: {exc}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            [Problem(label, "", f"is larger than {MAX_FILE_BYTES // 1024} KiB; split it up")]
        )
    return data


def region(value: str, at: At, report: Report) -> str | None:
    """``value`` if it is spelled like an AWS region name, else None and a problem."""
    if _REGION.fullmatch(value):
        return value
    report.add(at, f"{_short(value)!r} is not an AWS region name like us-east-1")
    return None


def bounded(fields: Fields, key: str, low: int, high: int, report: Report) -> int | None:
    """The whole number at ``key`` if present and within ``[low, high]``; problems reported."""
    value = fields.integer(key)
    if value is not None and not low <= value <= high:
        report.add(fields.at.key(key), f"{value} is out of range: {low} to {high}")
        return None
    return value


def http_url(fields: Fields, key: str, report: Report) -> str | None:
    """The http(s) URL at ``key`` if present and well formed; problems reported."""
    text = fields.text(key)
    if text is None:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        report.add(fields.at.key(key), f"{text!r} is not an http(s) URL")
        return None
    return text


# libyaml's parser where PyYAML was built with it: three times faster on a large file.
if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {first})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Located errors for values a tag's constructor cannot build.

        PyYAML's constructors let Python's own exceptions out for input like ``!!int abc``,
        ``!!timestamp nope``, ``2026-02-30T10:00:00Z`` or an offset of 24 hours or more.
        """
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as exc:
            tag = node.tag.removeprefix("tag:yaml.org,2002:")
            value = node.value if isinstance(node, yaml.ScalarNode) else ""
            shown = f" {_short(str(value))!r}" if value else ""
            detail = f": {exc}" if isinstance(exc, ValueError) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read{shown} as {tag}{detail}", node.start_mark
            ) from None


def read_yaml(data: bytes, label: str) -> object:
    """Parse one YAML document; syntax problems raise ConfigError with file, line and column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(label, "", f"not UTF-8 text (byte {exc.start})")]) from None
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(label, "", _yaml_reason(exc))]) from None
    except RecursionError:
        raise ConfigError([Problem(label, "", "YAML nested too deeply")]) from None


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    reason = f"invalid YAML: {where}{problem}"
    context = getattr(exc, "context", None) or ""
    if "alias" in context or "anchor" in context:
        reason += ' (quote values that start with * or &, like schedule: "*/15 * * * *")'
    return reason
