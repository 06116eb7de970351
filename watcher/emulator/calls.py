"""Every AWS call made to the emulator, as ``service:Action`` (tests, demo).

Relies on moto's documented recorder, not on its internals: ``POST /moto-api/recorder/
start-recording`` / ``stop-recording`` / ``reset-recording`` and ``GET /moto-api/recorder/
download-recording`` (one JSON object a line: ``method``, ``url``, ``headers``, ``body``, with
``body_encoded`` when the body is base64). The recording file is ``MOTO_RECORDER_FILEPATH``,
which :func:`watcher.emulator.server.start_emulator` points into a temporary folder.

The service and region come from the SigV4 credential scope of the ``Authorization`` header (how
AWS itself routes a signed request); the action from ``X-Amz-Target`` (JSON protocols) or the
``Action`` form field (query protocols: IAM, STS). So this reads only what every AWS request
carries. A call without a signature (moto's own API, unsigned test requests) is skipped.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from watcher.emulator.records import assume_role_record, iam_user_identity

_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
#: SigV4 signing names that differ from the IAM action prefix.
_IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
#: API actions authorised by another action's permission (SQS batch calls: "the permission for
#: the batch action is that of the single action", per the SQS API reference).
_AUTHORISED_AS = {
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


@dataclass(frozen=True, slots=True)
class Call:
    """One signed AWS request: ``action`` is the IAM action that authorises it."""

    action: str
    region: str
    access_key: str
    params: dict[str, str]


def parse_entry(entry: dict[str, Any]) -> Call | None:
    """The call a recorder line shows (None: no signed AWS request)."""
    headers = {str(k).lower(): str(v) for k, v in (entry.get("headers") or {}).items()}
    scope = _SCOPE.search(headers.get("authorization", ""))
    if scope is None:
        return None
    access_key, region, service = scope.groups()
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    target = headers.get("x-amz-target")
    params: dict[str, str] = {}
    if target:
        name = target.rsplit(".", 1)[-1]
        try:
            document = json.loads(body) if body else {}
        except json.JSONDecodeError:
            document = {}
        if isinstance(document, dict):
            params = {str(k): str(v) for k, v in document.items()}
    else:
        query = parse_qs(urlsplit(str(entry.get("url", ""))).query)
        form = parse_qs(str(body))
        params = {k: v[0] for k, v in {**query, **form}.items()}
        name = params.get("Action", "")
    if not name:
        return None
    action = f"{_IAM_PREFIX.get(service, service)}:{name}"
    return Call(_AUTHORISED_AS.get(action, action), region, access_key, params)


class CallRecorder:
    """Switches moto's recorder of the server at ``endpoint_url`` and reads it back."""

    def __init__(self, endpoint_url: str) -> None:
        self._base = f"{endpoint_url}/moto-api/recorder"

    def _post(self, what: str) -> None:
        request = urllib.request.Request(f"{self._base}/{what}", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def start(self) -> None:
        """Empty the recording and record from now on."""
        self._post("reset-recording")
        self._post("start-recording")

    def stop(self) -> None:
        self._post("stop-recording")

    def entries(self) -> list[dict[str, Any]]:
        """Every request recorded so far, in order, as moto wrote it (``method``, ``url``, …):
        what a REST API (S3) says in its URL and method rather than an ``Action``."""
        with urllib.request.urlopen(f"{self._base}/download-recording", timeout=10) as answer:
            text = answer.read().decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def calls(self) -> list[Call]:
        """Every signed call recorded so far, in order."""
        return [call for entry in self.entries() if (call := parse_entry(entry)) is not None]


def assume_role_records(calls: Sequence[Call], event_time: datetime) -> list[dict[str, Any]]:
    """The CloudTrail records of the recorded ``sts:AssumeRole`` calls (moto writes none).

    The caller is shown as an IAM user of the role's account holding the call's access key;
    the role, session name and region are the call's own.
    """
    records = []
    for call in calls:
        role_arn = call.params.get("RoleArn", "")
        if call.action != "sts:AssumeRole" or ":iam::" not in role_arn:
            continue
        account = role_arn.split(":")[4]
        records.append(
            assume_role_record(
                caller=iam_user_identity(account, "breakglass-watcher", call.access_key),
                role_arn=role_arn,
                session_name=call.params.get("RoleSessionName", ""),
                event_time=event_time,
                account=account,
                region=call.region,
            )
        )
    return records
