"""The config file: defaults, paths, every problem located, never a traceback."""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.config import load_config, parse_config
from watcher.durations import format_duration, parse_duration
from watcher.errors import ConfigError, Problem
from watcher.settings import Account, Inventory, StoreChoice
from watcher.sources.lookup import LookupSettings
from watcher.sources.sqs import EventBridgeSettings
from watcher.store.dynamodb import DynamoDbSettings

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "config.yaml"
QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/breakglass-events"


def minimal() -> dict[str, Any]:
    return {"rules": "rules", "accounts": [{"id": "123456789012"}], "sources": {"lookup": {}}}


def problems_of(document: object) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, label="c.yaml", base_dir=Path("/etc/bgw"))
    return caught.value.problems


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    folder = EXAMPLE.parent
    assert config.rules_path == folder.parent / "rules"
    assert config.state_path == folder / "breakglass-watcher.db"
    assert config.source_file == EXAMPLE
    assert config.listen == ("127.0.0.1", 9783)
    assert config.endpoint_url is None
    assert config.accounts == (Account(id="123456789012", regions=("us-east-1",)),)
    assert config.sources.get("eventbridge") == EventBridgeSettings(
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/breakglass-events",
        region="us-east-1",
    )
    assert config.sources.get("lookup") == LookupSettings()
    assert config.inventory == Inventory()
    assert config.detection_grace == timedelta(minutes=30)
    assert config.retention == timedelta(days=400)


def test_defaults_of_a_minimal_config() -> None:
    config = parse_config(minimal(), label="c.yaml", base_dir=Path("/etc/bgw"))
    assert config.rules_path == Path("/etc/bgw/rules")
    assert config.state_path == Path("/etc/bgw/breakglass-watcher.db")
    assert config.accounts == (Account(id="123456789012", regions=("us-east-1",)),)
    assert config.sources.get("eventbridge") is None
    assert config.sources.get("lookup") == LookupSettings()
    assert config.inventory == Inventory()
    assert config.listen == ("127.0.0.1", 9783)


def test_everything_set() -> None:
    document = {
        "rules": "../rules/drills.yaml",
        "state": "/var/lib/bgw/state.db",
        "listen": "[::]:9100",
        "endpoint_url": "http://127.0.0.1:5000",
        "regions": ["eu-west-1", "us-east-1"],
        "accounts": [
            {"id": "123456789012", "role_arn": "arn:aws:iam::123456789012:role/reader"},
            {"id": "210987654321", "regions": ["us-gov-west-1"]},
        ],
        "sources": {
            "eventbridge": {"queue_url": QUEUE, "wait_seconds": 5, "max_messages": 1},
            "lookup": {"enabled": False, "interval": "5m"},
        },
        "inventory": {
            "enabled": False,
            "interval": "6h",
            "name_patterns": ["*emergency*"],
            "tags": {},
            "max_access_key_age": "30d",
        },
        "detection_grace": "0s",
        "retention": "30d",
    }
    config = parse_config(document, label="c.yaml", base_dir=Path("/etc/bgw/conf"))
    assert config.rules_path == Path("/etc/bgw/rules/drills.yaml")
    assert config.state_path == Path("/var/lib/bgw/state.db")
    assert config.listen == ("::", 9100)
    assert config.endpoint_url == "http://127.0.0.1:5000"
    assert config.accounts == (
        Account(
            "123456789012", ("eu-west-1", "us-east-1"), "arn:aws:iam::123456789012:role/reader"
        ),
        Account("210987654321", ("us-gov-west-1",)),
    )
    assert config.sources.get("eventbridge") == EventBridgeSettings(QUEUE, "eu-west-1", 5, 1)
    assert config.sources.get("lookup") is None
    assert config.inventory == Inventory(
        interval=timedelta(hours=6),
        name_patterns=("*emergency*",),
        tags={},
        max_access_key_age=timedelta(days=30),
        enabled=False,
    )
    assert config.detection_grace == timedelta(0)
    assert config.retention == timedelta(days=30)


def test_store_dynamodb_selects_the_table_and_sqlite_is_the_default() -> None:
    document = minimal() | {"store": {"dynamodb": {"table": "bgw-state", "region": "eu-west-1"}}}
    config = parse_config(document, label="c.yaml", base_dir=Path("/etc/bgw"))
    assert config.store == StoreChoice("dynamodb", DynamoDbSettings("bgw-state", "eu-west-1"))
    assert parse_config(minimal(), label="c.yaml", base_dir=Path("/")).store.kind == "sqlite"
    document = minimal() | {"state": "s.db", "store": {"sqlite": {}}}
    config = parse_config(document, label="c.yaml", base_dir=Path("/etc/bgw"))
    assert (config.store.kind, config.state_path) == ("sqlite", Path("/etc/bgw/s.db"))
    document = minimal() | {"state": "s.db", "store": {"dynamodb": {"table": "t", "region": "x"}}}
    assert [str(p) for p in problems_of(document)] == [
        "c.yaml: state: is the SQLite file; remove it when store selects dynamodb",
        "c.yaml: store.dynamodb.table: 't' is not a DynamoDB table name (3-255 of letters, "
        "digits, _ - .)",
        "c.yaml: store.dynamodb.region: 'x' is not an AWS region name like us-east-1",
    ]


def test_eventbridge_region_of_an_emulator_queue_defaults_to_first_region() -> None:
    document = minimal() | {"regions": ["eu-central-1"]}
    document["sources"] = {"eventbridge": {"queue_url": "http://127.0.0.1:5000/123456789012/q"}}
    config = parse_config(document, label="c.yaml", base_dir=Path("/"))
    eventbridge = config.sources.get("eventbridge")
    assert isinstance(eventbridge, EventBridgeSettings) and eventbridge.region == "eu-central-1"


DELETE = object()


def with_(path: str, value: object) -> dict[str, Any]:
    """``minimal()`` with a dotted path set (``sources.lookup.overlap``) or deleted (DELETE)."""
    document = minimal()
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last) : int(last) + 1] = [value]
    else:
        node[last] = value
    return document


CASES = [
    ("rules", DELETE, "rules", "is required"),
    ("rules", 5, "rules", "expected text"),
    ("rules", "", "rules", "is empty"),
    ("accounts", DELETE, "accounts", "is required"),
    ("accounts", [], "accounts", "at least one account"),
    ("sources", DELETE, "sources", "is required"),
    ("sources", {}, "sources", "enable at least one source"),
    ("sources.lookup.enabled", False, "sources", "enable at least one source"),
    ("sources.kinesis", {}, "sources.kinesis", "unknown key"),
    ("retentoin", "400d", "retentoin", "did you mean 'retention'"),
    ("accounts.0.id", 123456789012, "accounts[0].id", 'quoted text, like "123456789012"'),
    ("accounts.0.id", "1234", "accounts[0].id", "not a 12-digit"),
    ("accounts.0.role_arn", "reader", "accounts[0].role_arn", "not an IAM role ARN"),
    (
        "accounts.0.role_arn",
        "arn:aws:iam::111111111111:role/reader",
        "accounts[0].role_arn",
        "in account 111111111111, not 123456789012",
    ),
    ("accounts.0.regions", ["us-east-1", "moon-1"], "accounts[0].regions[1]", "not an AWS region"),
    ("accounts.0.regions", [], "accounts[0].regions", "list at least one region"),
    ("accounts.1", {"id": "123456789012"}, "accounts[1].id", "listed twice"),
    ("regions", ["us-east-1", "us-east-1"], "regions[1]", "listed twice"),
    ("regions", "us-east-1", "regions", "expected a list"),
    ("listen", "9783", "listen", "not host:port"),
    ("listen", "localhost:http", "listen", "not host:port"),
    ("listen", "localhost:70000", "listen", "not host:port"),
    ("endpoint_url", "localhost:5000", "endpoint_url", "not an http(s) URL"),
    ("endpoint_url", "http://[::1", "endpoint_url", "not an http(s) URL"),
    ("detection_grace", "30", "detection_grace", "not a duration"),
    ("detection_grace", 30, "detection_grace", "30 has no unit"),
    ("retention", "3h", "retention", "more than 3h20m here"),
    ("sources.lookup.lookback", "91d", "sources.lookup.lookback", "90d LookupEvents can read"),
    ("sources.lookup.interval", "0s", "sources.lookup.interval", "is zero"),
    ("sources.lookup.rate_per_second", 0, "sources.lookup.rate_per_second", "more than 0"),
    (
        "sources.lookup.rate_per_second",
        "fast",
        "sources.lookup.rate_per_second",
        "expected a number",
    ),
    ("sources.eventbridge.enabled", True, "sources.eventbridge.queue_url", "is required while"),
    (
        "sources.eventbridge.queue_url",
        "sqs://q",
        "sources.eventbridge.queue_url",
        "not an http(s) URL",
    ),
    (
        "sources.eventbridge",
        {"queue_url": QUEUE, "region": "us-east-1"},
        "sources.eventbridge.region",
        "differs from the queue URL's 'eu-west-1'",
    ),
    (
        "sources.eventbridge",
        {"queue_url": QUEUE, "region": "Europe"},
        "sources.eventbridge.region",
        "not an AWS region",
    ),
    (
        "sources.eventbridge",
        {"queue_url": QUEUE, "wait_seconds": 0},
        "sources.eventbridge.wait_seconds",
        "out of range: 1 to 20",
    ),
    (
        "sources.eventbridge",
        {"queue_url": QUEUE, "max_messages": 11},
        "sources.eventbridge.max_messages",
        "out of range: 1 to 10",
    ),
    ("inventory.tags", {"breakglass": True}, "inventory.tags.breakglass", 'quote it: "true"'),
    ("inventory.tags", ["breakglass"], "inventory.tags", "expected a mapping"),
    ("inventory.name_patterns", ["*break glass*"], "inventory.name_patterns[0]", "can never match"),
    ("inventory.interval", "hourly", "inventory.interval", "not a duration"),
    ("store", {}, "store", "name exactly one store: sqlite or dynamodb"),
    ("store", {"mysql": {}}, "store.mysql", "unknown key"),
    ("store.dynamodb", {"region": "eu-west-1"}, "store.dynamodb.table", "is required"),
    ("store.dynamodb", {"table": "t!", "region": "eu-west-1"}, "store.dynamodb.table", "not a"),
    ("store.dynamodb", {"table": "st", "region": "x"}, "store.dynamodb.region", "not an AWS"),
    ("store.sqlite", {"path": "x.db"}, "store.sqlite", "takes no settings"),
]


@pytest.mark.parametrize(("where", "value", "path", "reason"), CASES, ids=[c[2] for c in CASES])
def test_each_problem_is_located(where: str, value: object, path: str, reason: str) -> None:
    problems = problems_of(with_(where, value))
    assert any(p.file == "c.yaml" and p.path == path and reason in p.reason for p in problems), (
        "\n".join(map(str, problems))
    )


def test_many_problems_are_listed_together(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "rules: missing-rules\n"
        "accounts:\n  - id: 123456789012\n"
        "sources:\n  lookup:\n    interval: 1 minute\n"
        "listen: nowhere\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")
    label = str(tmp_path / "config.yaml")
    assert [(p.file, p.path) for p in caught.value.problems] == [
        (label, "accounts[0].id"),
        (label, "sources.lookup.interval"),
        (label, "listen"),
        (label, "rules"),
    ]
    assert f"{tmp_path / 'missing-rules'} does not exist" in str(caught.value)


def test_rate_above_aws_limit_warns_but_loads(caplog: pytest.LogCaptureFixture) -> None:
    document = with_("sources.lookup.rate_per_second", 5)
    with caplog.at_level(logging.WARNING, logger="watcher.config"):
        config = parse_config(document, label="c.yaml", base_dir=Path("/"))
    lookup = config.sources.get("lookup")
    assert isinstance(lookup, LookupSettings) and lookup.rate_per_second == 5
    assert "c.yaml: sources.lookup.rate_per_second: 5 is above the 2 calls/s" in caplog.text


def test_relative_paths_keep_symlinks(tmp_path: Path) -> None:
    """A ConfigMap mount swaps a symlink's target on update: the path must not be resolved."""
    real = tmp_path / "..data-1"
    (real / "rules").mkdir(parents=True)
    (tmp_path / "rules").symlink_to(real / "rules")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(minimal()))
    config = load_config(tmp_path / "config.yaml")
    assert config.rules_path == tmp_path / "rules"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("rules: [\n", "invalid YAML: line 2"),
        ("- a list\n", "expected a mapping of settings, got a list"),
        ("", "expected a mapping of settings, got nothing"),
        ("rules: a\nrules: b\n", "duplicate key 'rules'"),
    ],
)
def test_unreadable_documents(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=reason):
        load_config(tmp_path / "config.yaml")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(["1m", "0s", "us-east-1", "123456789012", QUEUE, "a:1"]),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=15,
)
PATHS = [
    "rules",
    "state",
    "listen",
    "endpoint_url",
    "regions",
    "accounts",
    "accounts.0",
    "accounts.0.id",
    "accounts.0.regions",
    "sources",
    "sources.eventbridge",
    "sources.eventbridge.queue_url",
    "sources.lookup",
    "sources.lookup.overlap",
    "inventory",
    "inventory.tags",
    "inventory.name_patterns",
    "retention",
    "store",
    "store.dynamodb",
    "store.sqlite",
]


@pytest.mark.slow  # 300 generated examples
@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PATHS), values)
def test_garbage_raises_only_config_error(where: str, value: object) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "rules").mkdir()
        try:
            parse_config(with_(where, value), label="c.yaml", base_dir=Path(folder))
        except ConfigError as exc:
            assert exc.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("4h", timedelta(hours=4)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("0120m", timedelta(hours=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("4 hours", "'4 hours' is not a duration like 4h or 30m"),
        ("", "is empty"),
        ("-4h", "is negative"),
        ("0s", "is zero"),
        ("30m1h", "largest first"),
        ("1h1h", "largest first"),
        ("1.5h", "not a duration"),
        ("4H", "not a duration"),
        ("h", "not a duration"),
        (" 4h", "not a duration"),
        ("9" * 20 + "w", "too long"),
    ],
)
def test_parse_duration_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_duration(text)


def test_zero_duration_where_allowed() -> None:
    assert parse_duration("0s", allow_zero=True) == timedelta(0)


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=4), "4h"),
        (timedelta(days=400), "400d"),
        (timedelta(days=1, minutes=1), "1d1m"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(hours=-2), "-2h"),
    ],
)
def test_format_duration(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


@given(st.integers(0, 10**10))
def test_format_then_parse_round_trips(seconds: int) -> None:
    td = timedelta(seconds=seconds)
    assert parse_duration(format_duration(td), allow_zero=True) == td
