"""The daemon's config file, validated in two stages like the rule files (see ``validation.py``).

``parse_config`` is pure (parsed YAML in, :class:`~watcher.settings.Config` out, or one
ConfigError with every problem); ``load_config`` reads the file and checks that the rules exist.
Relative paths are taken from the config file's folder and made absolute without resolving
symlinks, so a Kubernetes ConfigMap mount keeps working after an update swaps its target.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from watcher.durations import format_duration
from watcher.errors import ConfigError, Problem
from watcher.settings import (
    DEFAULT_LISTEN,
    Account,
    Config,
    EventBridgeSource,
    Inventory,
    LookupSource,
)
from watcher.validation import (
    At,
    Fields,
    Key,
    Report,
    account_id,
    check_mapping,
    describe,
    duration,
    iam_glob,
    read_file,
    read_yaml,
    text_items,
)

log = logging.getLogger(__name__)

DEFAULT_STATE = "breakglass-watcher.db"
DEFAULT_REGIONS = ("us-east-1",)
LOOKUP_RATE_LIMIT = 2.0  # LookupEvents calls per second AWS allows per account and region
CLOUDTRAIL_HISTORY = timedelta(days=90)  # how far back LookupEvents can read
RETENTION_OVERLAPS = 10  # retention must cover this many lookup overlaps at least

_TOP = {
    "rules": Key("str", required=True),
    "state": Key("str"),
    "listen": Key("str"),
    "endpoint_url": Key("str"),
    "regions": Key("list"),
    "accounts": Key("list", required=True),
    "sources": Key("mapping", required=True),
    "inventory": Key("mapping"),
    "detection_grace": Key("duration"),
    "retention": Key("duration"),
}
_ACCOUNT = {"id": Key("account", required=True), "role_arn": Key("str"), "regions": Key("list")}
_SOURCES = {"eventbridge": Key("mapping"), "lookup": Key("mapping")}
_EVENTBRIDGE = {
    "enabled": Key("bool"),
    "queue_url": Key("str"),
    "region": Key("str"),
    "wait_seconds": Key("int"),
    "max_messages": Key("int"),
}
_LOOKUP = {
    "enabled": Key("bool"),
    "interval": Key("duration"),
    "overlap": Key("duration"),
    "lookback": Key("duration"),
    "rate_per_second": Key("number"),
}
_INVENTORY = {
    "enabled": Key("bool"),
    "interval": Key("duration"),
    "name_patterns": Key("list"),
    "tags": Key("mapping"),
    "max_access_key_age": Key("duration"),
}

_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_ROLE_ARN = re.compile(
    r"arn:aws(?:-cn|-us-gov)?:iam::(\d{12}):role/(?:[!-.0-~]+/)*[\w+=,.@-]{1,64}"
)
_SQS_HOST = re.compile(
    r"sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|([a-z0-9-]+)\.queue\.amazonaws\.com"
)


def load_config(path: Path) -> Config:
    """Read, validate and resolve the config file at ``path``."""
    label = str(path)
    document = read_yaml(read_file(path, label), label)
    base = Path(os.path.abspath(path.parent))
    problems: list[Problem] = []
    try:
        config = parse_config(document, label=label, base_dir=base)
    except ConfigError as exc:
        problems.extend(exc.problems)
    rules = document.get("rules") if isinstance(document, dict) else None
    if (
        isinstance(rules, str)
        and rules
        and "\0" not in rules
        and not _resolve(base, rules).exists()
    ):
        problems.append(Problem(label, "rules", f"{_resolve(base, rules)} does not exist"))
    if problems:
        raise ConfigError(problems)
    return replace(config, source_file=Path(os.path.abspath(path)))


def parse_config(document: object, *, label: str, base_dir: Path) -> Config:
    """Validate a parsed config document; relative paths are resolved against ``base_dir``."""
    report = Report()
    top = check_mapping(document, _TOP, At(label), report, what="a mapping of settings")
    if top is None:
        raise ConfigError(report.problems)
    regions = _regions(top, "regions", report) or DEFAULT_REGIONS
    accounts = _accounts(top, regions, report)
    eventbridge, lookup = _sources(top, regions, report)
    grace = duration(top, "detection_grace", report, allow_zero=True)
    retention = duration(top, "retention", report)
    if retention is not None and lookup is not None:
        _check_retention(retention, lookup, top.at.key("retention"), report)
    config = Config(
        rules_path=_resolve(base_dir, top.text("rules") or "."),
        state_path=_resolve(base_dir, top.text("state") or DEFAULT_STATE),
        accounts=accounts,
        listen=_listen(top, report),
        endpoint_url=_url(top, "endpoint_url", report),
        eventbridge=eventbridge,
        lookup=lookup,
        inventory=_inventory(top, report),
        detection_grace=timedelta(minutes=30) if grace is None else grace,
        retention=retention or timedelta(days=400),
    )
    _check_paths(top, report)
    report.raise_if_any()
    return config


def _resolve(base: Path, value: str) -> Path:
    return Path(os.path.normpath(base / os.path.expanduser(value)))


def _check_paths(top: Fields, report: Report) -> None:
    for key in ("rules", "state"):
        if top.text(key) == "":
            report.add(top.at.key(key), "is empty; give a path")
        elif "\0" in (top.text(key) or ""):
            report.add(top.at.key(key), "contains a NUL character, which no path can hold")


def _regions(fields: Fields, key: str, report: Report) -> tuple[str, ...]:
    at = fields.at.key(key)
    regions: list[str] = []
    for where, region in text_items(fields.items(key), at, report):
        if not _REGION.fullmatch(region):
            report.add(where, f"{region!r} is not an AWS region name like us-east-1")
        elif region in regions:
            report.add(where, f"{region!r} is listed twice")
        else:
            regions.append(region)
    if fields.has(key) and not fields.items(key):
        report.add(at, "is empty; list at least one region")
    return tuple(regions)


def _accounts(top: Fields, regions: tuple[str, ...], report: Report) -> tuple[Account, ...]:
    at = top.at.key("accounts")
    accounts: list[Account] = []
    seen: set[str] = set()
    for index, node in enumerate(top.items("accounts")):
        fields = check_mapping(node, _ACCOUNT, at.item(index), report, what="an account (id: ...)")
        if fields is None:
            continue
        text = fields.text("id")
        account = account_id(text, fields.at.key("id"), report) if text is not None else None
        if account is not None and account in seen:
            report.add(fields.at.key("id"), f"account {account} is listed twice")
        role_arn = fields.text("role_arn")
        if role_arn is not None:
            _check_role_arn(role_arn, account, fields.at.key("role_arn"), report)
        own = _regions(fields, "regions", report)
        if account is not None:
            seen.add(account)
            accounts.append(Account(id=account, regions=own or regions, role_arn=role_arn))
    if top.has("accounts") and not top.items("accounts"):
        report.add(at, "is empty; list at least one account to watch")
    return tuple(accounts)


def _check_role_arn(arn: str, account: str | None, at: At, report: Report) -> None:
    parsed = _ROLE_ARN.fullmatch(arn)
    if parsed is None:
        report.add(at, f"{arn!r} is not an IAM role ARN like arn:aws:iam::123456789012:role/NAME")
    elif account is not None and parsed.group(1) != account:
        report.add(
            at,
            f"the role is in account {parsed.group(1)}, not {account}; the watcher reads an "
            "account through a role in that account",
        )


def _sources(
    top: Fields, regions: tuple[str, ...], report: Report
) -> tuple[EventBridgeSource | None, LookupSource | None]:
    node = top.mapping("sources")
    if node is None:
        return None, None
    sources = check_mapping(node, _SOURCES, top.at.key("sources"), report)
    if sources is None:
        return None, None
    eventbridge = _eventbridge(sources, regions, report)
    lookup = _lookup(sources, report)
    if eventbridge is None and lookup is None and not _any_enabled(sources):
        report.add(sources.at, "enable at least one source: eventbridge or lookup")
    return eventbridge, lookup


def _any_enabled(sources: Fields) -> bool:
    """Whether a source is switched on (even one whose settings have problems)."""
    for key in _SOURCES:
        node = sources.mapping(key)
        if node is not None and node.get("enabled", True) is not False:
            return True
    return False


def _eventbridge(
    sources: Fields, regions: tuple[str, ...], report: Report
) -> EventBridgeSource | None:
    node = sources.mapping("eventbridge")
    if node is None:
        return None
    fields = check_mapping(node, _EVENTBRIDGE, sources.at.key("eventbridge"), report)
    if fields is None:
        return None
    queue_url = _url(fields, "queue_url", report)
    region = fields.text("region")
    if region is not None and not _REGION.fullmatch(region):
        report.add(fields.at.key("region"), f"{region!r} is not an AWS region name like us-east-1")
        region = None
    url_region = _queue_region(queue_url)
    if region is not None and url_region is not None and region != url_region:
        report.add(
            fields.at.key("region"), f"{region!r} differs from the queue URL's {url_region!r}"
        )
    wait = _bounded(fields, "wait_seconds", 1, 20, report)
    batch = _bounded(fields, "max_messages", 1, 10, report)
    if not fields.flag("enabled", True):
        return None
    if queue_url is None:
        if not fields.has("queue_url"):
            report.add(fields.at.key("queue_url"), "is required while eventbridge is enabled")
        return None
    return EventBridgeSource(
        queue_url=queue_url,
        region=region or url_region or regions[0],
        wait_seconds=20 if wait is None else wait,
        max_messages=10 if batch is None else batch,
    )


def _queue_region(url: str | None) -> str | None:
    """The region in an AWS queue URL's host name (emulators' URLs have none)."""
    host = urlsplit(url).hostname if url else None
    found = _SQS_HOST.fullmatch(host or "")
    return (found.group(1) or found.group(2)) if found else None


def _bounded(fields: Fields, key: str, low: int, high: int, report: Report) -> int | None:
    value = fields.integer(key)
    if value is not None and not low <= value <= high:
        report.add(fields.at.key(key), f"{value} is out of range: {low} to {high}")
        return None
    return value


def _lookup(sources: Fields, report: Report) -> LookupSource | None:
    node = sources.mapping("lookup")
    if node is None:
        return None
    fields = check_mapping(node, _LOOKUP, sources.at.key("lookup"), report)
    if fields is None:
        return None
    defaults = LookupSource()
    interval = duration(fields, "interval", report) or defaults.interval
    overlap = duration(fields, "overlap", report) or defaults.overlap
    lookback = duration(fields, "lookback", report) or defaults.lookback
    if lookback > CLOUDTRAIL_HISTORY:
        report.add(
            fields.at.key("lookback"),
            f"{format_duration(lookback)} is longer than the 90d LookupEvents can read back",
        )
    rate = fields.number("rate_per_second")
    if rate is not None and rate <= 0:
        report.add(fields.at.key("rate_per_second"), f"{rate:g} must be more than 0")
    elif rate is not None and rate > LOOKUP_RATE_LIMIT:
        at = fields.at.key("rate_per_second")
        log.warning(
            "%s: %s: %g is above the %g calls/s AWS allows LookupEvents per account and "
            "region; expect throttling",
            at.file,
            at.path,
            rate,
            LOOKUP_RATE_LIMIT,
        )
    if not fields.flag("enabled", True):
        return None
    return LookupSource(
        interval=interval,
        overlap=overlap,
        lookback=lookback,
        rate_per_second=defaults.rate_per_second if rate is None else rate,
    )


def _check_retention(retention: timedelta, lookup: LookupSource, at: At, report: Report) -> None:
    """Seen event ids must outlive every re-read, or a restart counts old events again."""
    needed = max(lookup.overlap * RETENTION_OVERLAPS, lookup.lookback)
    if retention <= needed:
        report.add(
            at,
            f"{format_duration(retention)} is too short: seen event ids must outlive every "
            f"re-read, so keep them longer than {RETENTION_OVERLAPS} x sources.lookup.overlap "
            f"and longer than its lookback (more than {format_duration(needed)} here)",
        )


def _inventory(top: Fields, report: Report) -> Inventory:
    defaults = Inventory()
    node = top.mapping("inventory")
    if node is None:
        return defaults
    fields = check_mapping(node, _INVENTORY, top.at.key("inventory"), report)
    if fields is None:
        return defaults
    at = fields.at.key("name_patterns")
    patterns = [
        pattern
        for where, pattern in text_items(fields.items("name_patterns"), at, report)
        if iam_glob(pattern, where, report, "an IAM name")
    ]
    return Inventory(
        interval=duration(fields, "interval", report) or defaults.interval,
        name_patterns=tuple(patterns) if fields.has("name_patterns") else defaults.name_patterns,
        tags=_tags(fields, report) if fields.has("tags") else defaults.tags,
        max_access_key_age=duration(fields, "max_access_key_age", report)
        or defaults.max_access_key_age,
        enabled=fields.flag("enabled", True),
    )


def _tags(fields: Fields, report: Report) -> dict[str, str]:
    tags: dict[str, str] = {}
    at = fields.at.key("tags")
    for key, value in (fields.mapping("tags") or {}).items():
        if not isinstance(key, str):
            report.add(at, f"tag key {key!r} must be text")
        elif not isinstance(value, str):
            hint = f'; quote it: "{str(value).lower()}"' if isinstance(value, bool | int) else ""
            report.add(at.key(key), f"tag values are text, got {describe(value)}{hint}")
        else:
            tags[key] = value
    return tags


def _listen(top: Fields, report: Report) -> tuple[str, int]:
    text = top.text("listen")
    if text is None:
        return DEFAULT_LISTEN
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535 or " " in host:
        report.add(top.at.key("listen"), f"{text!r} is not host:port like 127.0.0.1:9783")
        return DEFAULT_LISTEN
    return host, int(port)


def _url(fields: Fields, key: str, report: Report) -> str | None:
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
