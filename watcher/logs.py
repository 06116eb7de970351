"""Logging: JSON lines (default) or plain text on stderr.

Never pass credentials to a log call. As a second line of defence every formatted line is
scrubbed of credential-shaped values: AWS error messages can echo them (a
``SignatureDoesNotMatch`` message carries the canonical request, session token included).
Scrubbing goes by name (``SessionToken=…``) and by shape, wherever the value sits (XML, a
``b'…'`` repr, prose): access key ids are masked (``ASIA…WXYZ``), 40-character secret keys and
session tokens are replaced. Text logs escape control characters, so a crafted ``eventID``
cannot forge a log line (JSON lines escape them by construction).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from watcher.keys import KEY_ID, mask_key_id

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


_SECRET = re.compile(
    r"(?i)((?:x-amz-security-token|secret_?access_?key|session_?token|password)"
    r"\\?[\"']?\s*[:=]\s*\\?[\"']?)[^\s\"'\\&,;]+"
)


# A secret access key: 40 base64 characters, mixed case (a hex digest is one case only).
_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
# A session token: hundreds of base64 characters; nothing else the watcher logs is that long.
_SESSION_TOKEN = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{100,}={0,2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _secret_key(found: re.Match[str]) -> str:
    value = found.group(0)
    mixed = value.lower() != value and value.upper() != value
    return "[REDACTED]" if mixed else value


def redact(text: str) -> str:
    """``text`` with credential-named values and credential-shaped values scrubbed."""
    text = _SECRET.sub(r"\1[REDACTED]", text)
    text = _SESSION_TOKEN.sub("[REDACTED]", text)
    text = _SECRET_KEY.sub(_secret_key, text)
    return KEY_ID.sub(lambda found: mask_key_id(found.group(0)), text)


def escape_controls(text: str) -> str:
    """Control characters (newline included) as visible escapes: one record, one line."""
    return _CONTROL.sub(lambda found: repr(found.group(0))[1:-1], text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extras = " ".join(f"{k}={escape_controls(str(v))}" for k, v in _extras(record).items())
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            # Indented: no line of a traceback can pass for a log line of its own.
            trace = self.formatException(record.exc_info)
            line += "".join(f"\n    {escape_controls(t)}" for t in trace.splitlines())
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


class RepeatFilter(logging.Filter):
    """Lets one of a run of identical warnings or errors through per ``window`` seconds.

    Identical means same logger, level, message, extra fields and exception text: an accept
    loop out of file descriptors logs the same error thousands of times a second. The next line
    let through says how many were held back (``repeated``). Info lines always pass.
    """

    def __init__(
        self, window: float = 60.0, clock: Callable[[], float] = time.monotonic, keys: int = 1000
    ) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._keys = keys
        self._seen: dict[tuple[object, ...], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        key = (
            record.name,
            record.levelno,
            record.getMessage(),
            repr(exc),
            repr(sorted(_extras(record).items(), key=lambda kv: kv[0])),
        )
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._window:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if len(self._seen) >= self._keys:
            self._seen.clear()  # a flood of distinct lines: forget, never grow without bound
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.repeated = last[1]
        return True


def setup_logging(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "aiobotocore", "urllib3", "aiohttp.access", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
