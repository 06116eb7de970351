"""The daemon's config file, validated in two stages like the rule files (see ``validation.py``).

``parse_config`` is pure (parsed YAML in, :class:`~watcher.settings.Config` out, or one
ConfigError with every problem); ``load_config`` reads the file and checks that the rules exist.
Relative paths are taken from the config file's folder and made absolute without resolving
symlinks, so a Kubernetes ConfigMap mount keeps working after an update swaps its target.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from watcher.durations import format_duration
from watcher.errors import ConfigError, Problem
from watcher.settings import (
    DEFAULT_LISTEN,
    Account,
    CanarySettings,
    Config,
    Inventory,
    Organization,
    PipelineChecks,
    StoreChoice,
)
from watcher.sources.registry import SOURCE_KINDS
from watcher.store.registry import STORE_KINDS
from watcher.validation import (
    At,
    Fields,
    Key,
    Kind,
    Report,
    account_id,
    check_mapping,
    describe,
    duration,
    http_url,
    iam_glob,
    read_file,
    read_yaml,
    region,
    text_items,
)

DEFAULT_STATE = "breakglass-watcher.db"
DEFAULT_RECORDS = "records"
DEFAULT_REGIONS = ("us-east-1",)

_TOP = {
    "rules": Key("str", required=True),
    "state": Key("str"),
    "store": Key("mapping"),
    "records": Key("str"),
    "listen": Key("str"),
    "endpoint_url": Key("str"),
    "regions": Key("list"),
    "accounts": Key("list", required=True),
    "sources": Key("mapping", required=True),
    "inventory": Key("mapping"),
    "canary": Key("mapping"),
    "checks": Key("mapping"),
    "detection_grace": Key("duration"),
    "retention": Key("duration"),
}
_ACCOUNT = {"id": Key("account", required=True), "role_arn": Key("str"), "regions": Key("list")}
_ORGANIZATION = {
    "role_name": Key("str", required=True),
    "exclude": Key("list"),
    "include_management": Key("bool"),
    "management_role_arn": Key("str"),
    "refresh": Key("duration"),
}
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")
ALL_REGIONS = "all"
_STORES = {key: Key("mapping") for key in STORE_KINDS}
_INVENTORY = {
    "enabled": Key("bool"),
    "interval": Key("duration"),
    "name_patterns": Key("list"),
    "tags": Key("mapping"),
    "max_access_key_age": Key("duration"),
}

_CANARY = {
    "enabled": Key("bool"),
    "interval": Key("duration"),
    "role_name": Key("str"),
    "accounts": Key("list"),
}
_CHECKS = {"enabled": Key("bool"), "interval": Key("duration"), "eventbridge_rules": Key("list")}
#: An EventBridge rule name.
_RULE_NAME = re.compile(r"[\w.-]{1,64}")
#: An IAM role name (no path): what ``canary.role_name`` may be.
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")

_ROLE_ARN = re.compile(
    r"arn:aws(?:-cn|-us-gov)?:iam::(\d{12}):role/(?:[!-.0-~]+/)*[\w+=,.@-]{1,64}"
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
    top = check_mapping(
        document, _top_spec(document), At(label), report, what="a mapping of settings"
    )
    if top is None:
        raise ConfigError(report.problems)
    all_regions = top.text("regions") == ALL_REGIONS
    regions = () if all_regions else _regions(top, "regions", report) or DEFAULT_REGIONS
    organization = None
    if top.has("accounts") and top.mapping("accounts") is not None:
        accounts: tuple[Account, ...] = ()
        organization = _organization(top, regions, all_regions, report)
    else:
        accounts = _accounts(top, regions, all_regions, report)
    sources = _sources(top, regions or DEFAULT_REGIONS, report)
    grace = duration(top, "detection_grace", report, allow_zero=True)
    retention = duration(top, "retention", report)
    if retention is not None:
        _check_retention(retention, sources, top.at.key("retention"), report)
    config = Config(
        rules_path=_resolve(base_dir, top.text("rules") or "."),
        state_path=_resolve(base_dir, top.text("state") or DEFAULT_STATE),
        records_path=_resolve(base_dir, top.text("records") or DEFAULT_RECORDS),
        accounts=accounts,
        organization=organization,
        listen=_listen(top, report),
        endpoint_url=http_url(top, "endpoint_url", report),
        sources=sources,
        inventory=_inventory(top, report),
        canary=_canary(top, accounts, report),
        checks=_checks(top, report),
        detection_grace=timedelta(minutes=30) if grace is None else grace,
        retention=retention or timedelta(days=400),
        store=_store(top, report),
    )
    _check_paths(top, report)
    report.raise_if_any()
    return config


def _resolve(base: Path, value: str) -> Path:
    return Path(os.path.normpath(base / os.path.expanduser(value)))


def _check_paths(top: Fields, report: Report) -> None:
    for key in ("rules", "state", "records"):
        if top.text(key) == "":
            report.add(top.at.key(key), "is empty; give a path")
        elif "\0" in (top.text(key) or ""):
            report.add(top.at.key(key), "contains a NUL character, which no path can hold")


def _top_spec(document: object) -> dict[str, Key]:
    """The top-level keys; ``accounts`` may be a list or ``{organization: ...}``."""
    if not isinstance(document, dict):
        return _TOP
    return {**_TOP, **_list_or("accounts", document, "mapping"), **_list_or("regions", document)}


def _list_or(key: str, node: dict[object, object], other: Kind = "str") -> dict[str, Key]:
    """``key``'s spec when it holds ``other`` instead of a list (``regions: all``)."""
    if isinstance(node.get(key), dict if other == "mapping" else str):
        return {key: Key(other, required=key == "accounts")}
    return {}


def _store(top: Fields, report: Report) -> StoreChoice:
    """``store: {KIND: {...}}``, one backend of ``store/registry.py``; SQLite if absent."""
    node = top.mapping("store")
    at = top.at.key("store")
    if node is None:
        return StoreChoice()
    fields = check_mapping(node, _STORES, at, report)
    if fields is None:
        return StoreChoice()
    chosen = [key for key in STORE_KINDS if fields.given(key)]
    if len(chosen) != 1:
        report.add(at, "name exactly one store: " + " or ".join(STORE_KINDS))
        return StoreChoice()
    [key] = chosen
    if key != "sqlite" and top.given("state"):
        report.add(top.at.key("state"), f"is the SQLite file; remove it when store selects {key}")
    kind = STORE_KINDS[key]
    section = fields.mapping(key) or {}
    if not kind.spec:
        if section:
            report.add(fields.at.key(key), "takes no settings")
        checked = None if section else check_mapping(section, kind.spec, fields.at, report)
    else:
        checked = check_mapping(section, kind.spec, fields.at.key(key), report)
    settings = None if checked is None else kind.parse(checked, report)
    return StoreChoice(key, settings)


def _regions(fields: Fields, key: str, report: Report) -> tuple[str, ...]:
    at = fields.at.key(key)
    if fields.text(key) is not None and fields.text(key) != ALL_REGIONS:
        report.add(at, f"expected a list of regions or all, got {fields.text(key)!r}")
        return ()
    regions: list[str] = []
    for where, name in text_items(fields.items(key), at, report):
        if region(name, where, report) is None:
            continue
        if name in regions:
            report.add(where, f"{name!r} is listed twice")
        else:
            regions.append(name)
    if fields.has(key) and fields.text(key) is None and not fields.items(key):
        report.add(at, "is empty; list at least one region")
    return tuple(regions)


def _organization(
    top: Fields, regions: tuple[str, ...], all_regions: bool, report: Report
) -> Organization | None:
    """``accounts: {organization: {role_name: ..., ...}}``."""
    node = top.mapping("accounts") or {}
    at = top.at.key("accounts")
    outer = check_mapping(node, {"organization": Key("mapping", required=True)}, at, report)
    inner = None if outer is None else outer.mapping("organization")
    if outer is None or inner is None:
        return None
    fields = check_mapping(inner, _ORGANIZATION, outer.at.key("organization"), report)
    if fields is None:
        return None
    role_name = fields.text("role_name") or ""
    if role_name and not _ROLE_NAME.fullmatch(role_name):
        report.add(fields.at.key("role_name"), f"{role_name!r} is not an IAM role name")
    exclude = []
    for where, text in text_items(fields.items("exclude"), fields.at.key("exclude"), report):
        if account_id(text, where, report) is not None:
            exclude.append(text)
    management_role = fields.text("management_role_arn")
    if management_role is not None:
        _check_role_arn(management_role, None, fields.at.key("management_role_arn"), report)
    defaults = Organization(role_name="")
    return Organization(
        role_name=role_name,
        exclude=tuple(exclude),
        include_management=fields.flag("include_management", True),
        management_role_arn=management_role,
        refresh=duration(fields, "refresh", report) or defaults.refresh,
        regions=regions,
        all_regions=all_regions,
    )


def _accounts(
    top: Fields, regions: tuple[str, ...], all_regions: bool, report: Report
) -> tuple[Account, ...]:
    at = top.at.key("accounts")
    accounts: list[Account] = []
    seen: set[str] = set()
    for index, node in enumerate(top.items("accounts")):
        spec = {**_ACCOUNT, **_list_or("regions", node)} if isinstance(node, dict) else _ACCOUNT
        fields = check_mapping(node, spec, at.item(index), report, what="an account (id: ...)")
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
        own_all = fields.text("regions") == ALL_REGIONS
        if account is not None:
            seen.add(account)
            every = own_all or (all_regions and not own)
            accounts.append(
                Account(
                    id=account,
                    regions=() if every else own or regions,
                    role_arn=role_arn,
                    all_regions=every,
                )
            )
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


def _section(top: Fields, key: str, spec: Mapping[str, Key], report: Report) -> Fields | None:
    """The ``key`` section checked against ``spec``; None when it is absent or no mapping (a
    problem reported then), where the caller takes its defaults."""
    node = top.mapping(key)
    return None if node is None else check_mapping(node, spec, top.at.key(key), report)


def _sources(top: Fields, regions: tuple[str, ...], report: Report) -> dict[str, object]:
    """The settings of each enabled source, in the table's order."""
    fields = _section(top, "sources", {key: Key("mapping") for key in SOURCE_KINDS}, report)
    if fields is None:
        return {}
    enabled: dict[str, object] = {}
    for key, kind in SOURCE_KINDS.items():
        section = fields.mapping(key)
        if section is None:
            continue
        checked = check_mapping(section, kind.spec, fields.at.key(key), report)
        settings = None if checked is None else kind.parse(checked, regions, report)
        if settings is not None:
            enabled[key] = settings
    if not enabled and not _any_enabled(fields):
        report.add(fields.at, "enable at least one source: " + " or ".join(SOURCE_KINDS))
    return enabled


def _any_enabled(sources: Fields) -> bool:
    """Whether a source is switched on (even one whose settings have problems)."""
    for key in SOURCE_KINDS:
        node = sources.mapping(key)
        if node is not None and node.get("enabled", True) is not False:
            return True
    return False


def _check_retention(
    retention: timedelta, sources: dict[str, object], at: At, report: Report
) -> None:
    """Stored event ids must outlive what each source reads again (its retention floor)."""
    for key, settings in sources.items():
        floor = SOURCE_KINDS[key].retention_floor
        if floor is None:
            continue
        needed, why = floor(settings)
        if retention <= needed:
            report.add(
                at,
                f"{format_duration(retention)} is too short: {why} "
                f"(more than {format_duration(needed)} here)",
            )


def _inventory(top: Fields, report: Report) -> Inventory:
    defaults = Inventory()
    fields = _section(top, "inventory", _INVENTORY, report)
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


def _canary(top: Fields, accounts: tuple[Account, ...], report: Report) -> CanarySettings:
    defaults = CanarySettings()
    fields = _section(top, "canary", _CANARY, report)
    if fields is None:
        return defaults
    role_name = fields.text("role_name") or defaults.role_name
    if _ROLE_NAME.fullmatch(role_name) is None:
        report.add(fields.at.key("role_name"), f"{role_name!r} is not an IAM role name")
    configured = {a.id for a in accounts}
    chosen: list[str] = []
    for where, text in text_items(fields.items("accounts"), fields.at.key("accounts"), report):
        account = account_id(text, where, report)
        if account is not None and account not in configured:
            report.add(where, f"account {account} is not in accounts: the canary goes only there")
        elif account is not None:
            chosen.append(account)
    return CanarySettings(
        enabled=fields.flag("enabled", True),
        interval=duration(fields, "interval", report) or defaults.interval,
        role_name=role_name,
        accounts=tuple(chosen),
    )


def _checks(top: Fields, report: Report) -> PipelineChecks:
    defaults = PipelineChecks()
    fields = _section(top, "checks", _CHECKS, report)
    if fields is None:
        return defaults
    names = []
    for where, name in text_items(
        fields.items("eventbridge_rules"), fields.at.key("eventbridge_rules"), report
    ):
        if _RULE_NAME.fullmatch(name) is None:
            report.add(where, f"{name!r} is not an EventBridge rule name")
        else:
            names.append(name)
    return PipelineChecks(
        enabled=fields.flag("enabled", True),
        interval=duration(fields, "interval", report) or defaults.interval,
        eventbridge_rules=tuple(names),
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
