"""Log formatting: JSON lines or text, extras included, credential-shaped values scrubbed."""

from __future__ import annotations

import json
import logging

import pytest

from watcher.logs import JsonFormatter, TextFormatter, redact

TOKEN = "IQoJb3JpZ2luX2VjEAAaCXVzLWVhc3QtMSJHMEUCIQ+abc/def=="
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
# What AWS answers to a bad signature: the canonical request, session token included.
SIGNATURE_ERROR = (
    "An error occurred (SignatureDoesNotMatch) when calling the ReceiveMessage operation: "
    "The Canonical String for this request should have been\n'POST\n/\n\n"
    f"host:sqs.us-east-1.amazonaws.com\nx-amz-date:20261126T120000Z\nx-amz-security-token:{TOKEN}\n'"
)


def record(message: str, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord(
        "watcher.sources.sqs", logging.ERROR, __file__, 1, message, None, None
    )
    entry.__dict__.update(extra)
    return entry


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_credentials_in_messages_and_extras_are_scrubbed(formatter: logging.Formatter) -> None:
    line = formatter.format(
        record(
            f"receive failed: {SIGNATURE_ERROR}",
            error=SIGNATURE_ERROR,
            response={"credentials": {"secretAccessKey": SECRET, "sessionToken": TOKEN}},
        )
    )
    assert TOKEN not in line and SECRET not in line
    assert TOKEN[:16] not in line and SECRET[:16] not in line
    assert "x-amz-security-token:[REDACTED]" in line
    assert "SignatureDoesNotMatch" in line  # the useful part stays


def test_json_lines_keep_their_fields() -> None:
    line = JsonFormatter().format(record("break-glass event", principal="bg", outcome="success"))
    entry = json.loads(line)
    assert entry["message"] == "break-glass event"
    assert entry["principal"] == "bg" and entry["level"] == "error"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aws_secret_access_key = abc/DEF+1", "aws_secret_access_key = [REDACTED]"),
        ('{"SessionToken": "tok"}', '{"SessionToken": "[REDACTED]"}'),
        ("password: hunter2, user: x", "password: [REDACTED], user: x"),
        ("session break-glass-exercise-1 is a drill", "session break-glass-exercise-1 is a drill"),
        ("accessKeyId=ASIAEXAMPLE", "accessKeyId=ASIAEXAMPLE"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
