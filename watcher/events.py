"""CloudTrail records from every input shape, normalised into ``TrailEvent``.

Shapes: CloudTrail log files (``{"Records": [...]}``, optionally gzipped), EventBridge envelopes
(the record in ``detail``), LookupEvents responses (``{"Events": [...]}``, each item's record a
JSON string in ``CloudTrailEvent``) and single items, bare records, a JSON array of any of these,
and JSON lines of all of them. A record that cannot be read becomes a located ``Malformed`` and
never stops the records beside it. What CloudTrail writes beside management events (Insights
records, log-file digest files) becomes a ``Skipped``: valid, but nothing to classify.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson

from watcher.errors import MalformedEventError, WatcherError
from watcher.model import TrailEvent
from watcher.validation import FIRST_YEAR, LAST_YEAR

ASSUME_EVENTS = frozenset({"AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity"})
STS_SOURCE = "sts.amazonaws.com"
ASSUME_ROOT = "AssumeRoot"  # a privileged root session in a member account (Organizations)
# Sign-in steps whose outcome is ``responseElements.<eventName>`` ("Success"/"Failure").
_SIGN_IN_RESULTS = ("ConsoleLogin", "SwitchRole", "CheckMfa")
# CloudTrail added ``eventID`` in eventVersion 1.01; records of 1.0 have none.
_EARLY_VERSIONS = frozenset({"1.0", "1.00"})


@dataclass(frozen=True, slots=True)
class Malformed:
    """An input record (or document) we could not read, and where it was."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A valid input item that is no management event (an Insights record, a digest file)."""

    where: str
    reason: str


Item = TrailEvent | Malformed | Skipped


class FileReadError(WatcherError):
    """A replay input file could not be opened or read (records yielded before stay valid)."""


class _Bad(Exception):
    """Why one record is malformed; located by whoever catches it."""


def _text(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise _Bad(f"{key} is missing or not a non-empty string")
    return value


def _optional_text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Bad(f"{key} is not a string")
    return value


def _optional_object(record: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"{key} is not an object")
    return value


def parse_event_time(value: object) -> datetime:
    """``eventTime`` (ISO 8601 with ``Z`` or an offset) as an aware UTC datetime.

    Only the years ``FIRST_YEAR``..``LAST_YEAR`` are accepted: CloudTrail began in 2013, and a
    time near year 1 or 9999 is no record AWS wrote, but it would overflow every window
    computation made from it.
    """
    if type(value) is not str:
        raise _Bad("eventTime is missing or not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f"eventTime {value[:40]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise _Bad(f"eventTime {value[:40]!r} has no UTC offset")
    if FIRST_YEAR <= parsed.year <= LAST_YEAR and parsed.tzinfo is not UTC:  # "Z": the usual
        parsed = parsed.astimezone(UTC)
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise _Bad(
            f"eventTime {value[:40]!r} is outside the years {FIRST_YEAR}-{LAST_YEAR}: "
            "no record AWS can produce"
        )
    return parsed


def _mfa_authenticated(identity: Mapping[str, Any]) -> bool:
    context = identity.get("sessionContext")
    if not isinstance(context, dict):
        return False
    attributes = context.get("attributes")
    return isinstance(attributes, dict) and attributes.get("mfaAuthenticated") == "true"


def assumed_role_session(arn: object) -> str | None:
    """The session name, last part of ``arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION``."""
    if not isinstance(arn, str) or ":assumed-role/" not in arn:
        return None
    parts = arn.split("/")
    return parts[-1] if len(parts) >= 3 and parts[-1] else None


def issued_access_key(event: TrailEvent) -> str | None:
    """The temporary access key an assume call issued (``responseElements.credentials
    .accessKeyId``): the key the new session's own calls carry. None when the call issued none
    (it failed, or it is no assume call) or the response is not shaped as expected.
    """
    response = event.raw.get("responseElements")
    credentials = response.get("credentials") if isinstance(response, dict) else None
    key = credentials.get("accessKeyId") if isinstance(credentials, dict) else None
    return key if isinstance(key, str) and key else None


def derived_event_id(record: Mapping[str, Any]) -> str:
    """A stable id for a record without ``eventID``: a digest of its content (key order and
    whitespace do not matter), so every copy of the record gets the same id."""
    try:
        canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson cannot write (integers over 64 bits): the stdlib can
        canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode(
            "utf-8", "surrogatepass"
        )
    return "derived-" + hashlib.sha256(canonical).hexdigest()[:32]


def _skip_reason(record: Mapping[str, Any]) -> str | None:
    insight = record.get("eventType") == "AwsCloudTrailInsight"
    if insight or record.get("eventCategory") == "Insight":
        return "a CloudTrail Insights record, not a management event"
    return None


def _normalise(record: object) -> TrailEvent:
    if type(record) is not dict:
        if not isinstance(record, Mapping):
            raise _Bad("record is not an object")
        record = dict(record)
    get = record.get
    event_id = get("eventID")
    if event_id is None and get("eventVersion") in _EARLY_VERSIONS:
        event_id = derived_event_id(record)
    event_name = get("eventName")
    event_source = get("eventSource")
    region = get("awsRegion")
    identity = get("userIdentity")
    if not (
        type(event_id) is str
        and type(event_name) is str
        and type(event_source) is str
        and type(region) is str
        and event_id
        and event_name
        and event_source
        and region
        and type(identity) is dict
    ):
        _explain(record)
    event_time = parse_event_time(get("eventTime"))
    account = _optional_text(record, "recipientAccountId") or _optional_text(identity, "accountId")
    if account is None:
        raise _Bad("neither recipientAccountId nor userIdentity.accountId is present")
    error_code = get("errorCode")
    event_type = get("eventType")
    source_ip = get("sourceIPAddress")
    shared_event_id = get("sharedEventID")
    access_key_id = identity.get("accessKeyId")
    if not (
        (error_code is None or type(error_code) is str)
        and (event_type is None or type(event_type) is str)
        and (source_ip is None or type(source_ip) is str)
        and (shared_event_id is None or type(shared_event_id) is str)
        and (access_key_id is None or type(access_key_id) is str)
    ):
        for key in ("errorCode", "eventType", "sourceIPAddress", "sharedEventID"):
            _optional_text(record, key)
        _optional_text(identity, "accessKeyId")

    if event_name in ASSUME_EVENTS and event_source == STS_SOURCE:
        request = _optional_object(record, "requestParameters")
        session_name = _optional_text(request, "roleSessionName")
        if session_name is None:  # AssumeRoleWithSAML: the name comes from the assertion
            response = _optional_object(record, "responseElements")
            assumed = _optional_object(response, "assumedRoleUser")
            session_name = assumed_role_session(assumed.get("arn"))
        mfa_used = request.get("serialNumber") is not None or _mfa_authenticated(identity)
    else:
        session_name = None
        if identity.get("type") == "AssumedRole":
            session_name = assumed_role_session(identity.get("arn"))
        mfa_used = _mfa_authenticated(identity)
        if event_name in _SIGN_IN_RESULTS:
            if event_name == "ConsoleLogin":
                extra = _optional_object(record, "additionalEventData")
                used = extra.get("MFAUsed")  # AWS writes both "Yes" and "YES"
                mfa_used = isinstance(used, str) and used.lower() == "yes"
            elif event_name == "CheckMfa":  # the MFA step of a console sign-in
                mfa_used = True
            response = _optional_object(record, "responseElements")
            if not error_code and response.get(event_name) == "Failure":
                error_code = _optional_text(record, "errorMessage") or "Failure"

    return TrailEvent(
        event_id=event_id,
        event_time=event_time,
        account=account,
        region=region,
        event_name=event_name,
        event_source=event_source,
        identity=identity,
        raw=record,
        event_type=event_type or None,
        session_name=session_name,
        source_ip=source_ip or None,
        mfa_used=mfa_used,
        error_code=error_code or None,
        shared_event_id=shared_event_id or None,
        access_key_id=access_key_id or None,
    )


def _explain(record: dict[str, Any]) -> NoReturn:
    """Raise ``_Bad`` saying which required field is missing or ill-typed."""
    for key in ("eventID", "eventName", "eventSource", "awsRegion"):
        _text(record, key)
    raise _Bad("userIdentity is missing or not an object")


def normalise(record: Mapping[str, Any], where: str) -> TrailEvent:
    """One CloudTrail record as a ``TrailEvent``; ``MalformedEventError("WHERE: reason")`` if
    it is not one we can read."""
    try:
        return _normalise(record)
    except _Bad as exc:
        raise MalformedEventError(f"{where}: {exc}") from None


def one_record(record: object, where: str) -> Item:
    """One parsed CloudTrail record as a ``TrailEvent``, or why it is none (located at
    ``where``)."""
    if isinstance(record, Mapping) and (reason := _skip_reason(record)) is not None:
        return Skipped(where, reason)
    try:
        return _normalise(record)
    except _Bad as exc:
        return Malformed(where, str(exc))


def loads(data: str | bytes) -> object:
    """Parse JSON with orjson; what orjson refuses (integers over 64 bits, NaN, invalid UTF-8)
    falls back to the standard library, with invalid UTF-8 replaced, so the good records of a
    document survive one odd value. Raises ``ValueError`` if neither can parse it."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        return _scrub(json.loads(text))
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _clean(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates ("\ud800"), which UTF-8 cannot hold
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _scrub(obj: object) -> object:
    """``obj`` with lone surrogates in its strings replaced (orjson refuses them; the standard
    library lets them through, and nothing downstream could write them as UTF-8)."""
    if isinstance(obj, str):
        return _clean(obj)
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            items = list(node.items())
            node.clear()
            for key, value in items:
                node[_clean(key)] = _clean(value) if isinstance(value, str) else value
                stack.append(value)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, str):
                    node[i] = _clean(value)
                else:
                    stack.append(value)
    return obj


def _lookup_item(item: object, where: str) -> Item:
    if not isinstance(item, dict):
        return Malformed(where, "LookupEvents item is not an object")
    payload = item.get("CloudTrailEvent")
    if isinstance(payload, dict):
        return one_record(payload, where)
    if not isinstance(payload, str):
        return Malformed(where, "CloudTrailEvent is not a JSON string")
    try:
        record = loads(payload)
    except ValueError as exc:
        return Malformed(where, f"CloudTrailEvent is not JSON: {exc}")
    return one_record(record, where)


def _sub(where: str, part: str) -> str:
    return f"{where}: {part}" if where else part


_UNKNOWN = (
    "not a CloudTrail record, log file, EventBridge envelope or LookupEvents response "
    "(no eventID, Records, detail, Events or CloudTrailEvent)"
)


def _is_digest(obj: dict[str, Any]) -> bool:
    """A CloudTrail digest file (log-file integrity validation), not a log file."""
    return "digestPublicKeyFingerprint" in obj or ("logFiles" in obj and "awsAccountId" in obj)


def _document(obj: object, where: str, top: bool) -> list[Item]:
    if type(obj) is not dict:
        if type(obj) is list and top:
            return [
                item
                for i, element in enumerate(obj)
                for item in _document(element, _sub(where, f"[{i}]"), top=False)
            ]
        return [Malformed(where, f"a JSON {type(obj).__name__} is not a CloudTrail document")]
    if "detail" in obj and "eventID" not in obj:  # an EventBridge envelope: the usual case
        return [one_record(obj["detail"], _sub(where, "detail"))]
    for key in ("Records", "Events"):
        if key in obj:
            items = obj[key]
            if type(items) is not list:
                return [Malformed(_sub(where, key), "is not a list")]
            one = one_record if key == "Records" else _lookup_item
            return [one(item, _sub(where, f"{key}[{i}]")) for i, item in enumerate(items)]
    if "CloudTrailEvent" in obj:
        return [_lookup_item(obj, where)]
    if _is_digest(obj):
        return [Skipped(where, "a CloudTrail digest file, not a log file")]
    if "eventID" not in obj and "eventVersion" not in obj:
        return [Malformed(where, _UNKNOWN)]
    return [one_record(obj, where)]


def iter_document(obj: object, where: str) -> Iterator[Item]:
    """Every record of one parsed JSON document, in document order. (Strings are taken as they
    are; lone surrogates are replaced only in text this module parses.)"""
    return iter(_document(obj, where, top=True))


def parse_body(body: str | bytes, where: str) -> list[Item]:
    """The records of one SQS message body (normally one EventBridge envelope).

    A body holding no record at all is malformed: a queue fed by an EventBridge rule carries
    nothing else, so such a body is a misrouted message to be left to the dead-letter queue.
    """
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return _parse(data, where) or [Malformed(where, "no CloudTrail record in the message body")]


_LIST_START = re.compile(rb'\A\s*\{\s*"(Records|Events)"\s*:\s*\[')
_TOKEN = re.compile(rb'["\[\]{},]')
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)


def _parse(data: bytes, where: str) -> list[Item]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            obj = loads(data)
        except ValueError as exc:
            return list(_salvage(data, where, f"not JSON: {exc}"))
    return _document(obj, where, top=True)


def _salvage(data: bytes, where: str, reason: str) -> Iterator[Item]:
    """Read the records of a log file or LookupEvents response that does not parse as a whole
    (one record nested too deeply, a truncated file) one by one, so the good ones survive."""
    start = _LIST_START.match(data)
    if start is None:
        yield Malformed(where, reason)
        return
    key = start.group(1).decode()
    one = one_record if key == "Records" else _lookup_item
    all_parsed = True
    for i, piece in enumerate(_elements(data, start.end())):
        location = _sub(where, f"{key}[{i}]")
        try:
            obj = loads(piece)
        except ValueError as exc:
            all_parsed = False
            yield Malformed(location, f"not JSON: {exc}")
            continue
        yield one(obj, location)
    if all_parsed:
        yield Malformed(where, reason)


def _elements(data: bytes, pos: int) -> Iterator[bytes]:
    """The texts of the elements of the JSON array whose ``[`` ends at ``pos`` (to the end of
    ``data`` if the array is not closed)."""
    depth = 0
    start = pos
    while (token := _TOKEN.search(data, pos)) is not None:
        char, at = token.group(), token.start()
        if char == b'"':
            string = _STRING.match(data, at)
            if string is None:
                break
            pos = string.end()
            continue
        pos = at + 1
        if char in b"[{":
            depth += 1
        elif char in b"]}":
            if depth == 0:
                if data[start:at].strip():
                    yield data[start:at]
                return
            depth -= 1
        elif depth == 0:
            yield data[start:at]
            start = pos
    if data[start:].strip():
        yield data[start:]


def _lines(data: bytes, path: Path | str, first: int = 1) -> Iterator[Item]:
    for number, line in enumerate(data.split(b"\n"), start=first):
        if line.strip():
            yield from _parse(line, f"{path}:{number}")


GZIP_MAGIC = b"\x1f\x8b"
_READ_ERRORS = (OSError, EOFError, zlib.error)


@contextmanager
def _unzipped(raw: io.BufferedIOBase, head: bytes) -> Iterator[io.BufferedIOBase]:
    """``raw`` gunzipped when its first bytes ``head`` are gzip's magic (whatever the name
    says). A GzipFile leaves the file it was handed open: its owner closes it."""
    if head[:2] == GZIP_MAGIC:
        with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            yield unzipped
    else:
        yield raw


def iter_stream(stream: io.BufferedIOBase, path: Path | str) -> Iterator[Item]:
    """The records of an open (already decompressed) binary stream, read as ``iter_file``
    describes; ``path`` only names locations."""
    first = stream.readline()
    if first.startswith(b"\xef\xbb\xbf"):
        first = first[3:]
    number = 1
    while first and not first.strip():
        first, number = stream.readline(), number + 1
    if not first:
        return
    try:
        obj = loads(first)
    except ValueError:
        # Not a document on its own line: a pretty-printed document (or a bad first line).
        data = first + stream.read()
        try:
            obj = loads(data)
        except ValueError as exc:
            if _LIST_START.match(data):
                one_line = not data[len(first) :].strip()
                where = f"{path}:{number}" if one_line else str(path)
                yield from _salvage(data, where, f"not JSON: {exc}")
            else:
                yield from _lines(data, path, first=number)
            return
        yield from iter_document(obj, str(path))
        return
    yield from iter_document(obj, f"{path}:{number}")
    for later, line in enumerate(stream, start=number + 1):
        if not line.isspace():  # skip blank lines (iteration never yields b"")
            yield from _parse(line, f"{path}:{later}")


def iter_file(path: Path) -> Iterator[Item]:
    """Stream the records of one file: gzip or plain (by content), one JSON document or JSON
    lines.

    Rule: if the first non-blank line is a JSON document by itself, every line is a document
    (a minified CloudTrail log file is a one-line file). Otherwise the whole file is one
    (pretty-printed) document. A file that does not parse as a whole but starts like a log
    file or LookupEvents response (``{"Records": [`` / ``{"Events": [``) is read element by
    element; any other one is read line by line. Either way the good records survive. JSON
    lines are streamed; a whole document is parsed in one go (one file's records in memory at
    most). Raises ``FileReadError`` if the file cannot be opened or read
    to its end (records yielded before stay valid).
    """
    try:
        with path.open("rb") as raw, _unzipped(raw, raw.peek(2)) as stream:
            yield from iter_stream(stream, path)
    except _READ_ERRORS as exc:
        raise FileReadError(f"{path}: cannot read: {exc}") from exc


def iter_data(data: bytes, name: str) -> Iterator[Item]:
    """``iter_file`` of a file's bytes already in memory (as stored: gzip or plain), named
    ``name`` in locations and errors."""
    try:
        with _unzipped(io.BytesIO(data), data) as stream:
            yield from iter_stream(stream, name)
    except _READ_ERRORS as exc:
        raise FileReadError(f"{name}: cannot read: {exc}") from exc
