"""The daemon's configuration, as loaded and validated by ``config.py``. Pure data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

DEFAULT_LISTEN = ("127.0.0.1", 9783)


@dataclass(frozen=True, slots=True)
class Account:
    """An AWS account to watch; ``role_arn`` is assumed to read it (else ambient credentials)."""

    id: str
    regions: tuple[str, ...]
    role_arn: str | None = None
    all_regions: bool = False
    """``regions: all``: ``regions`` is filled in with the account's enabled regions
    (``watcher/regions.py``); empty until they are known."""


@dataclass(frozen=True, slots=True)
class Organization:
    """``accounts: {organization: ...}``: every active account of an AWS Organization, read
    through the role ``role_name`` in each (``watcher/organization.py``)."""

    role_name: str
    exclude: tuple[str, ...] = ()
    include_management: bool = True
    management_role_arn: str | None = None
    """The role to list the accounts with (in the management or a delegated administrator
    account); ambient credentials when not given."""
    refresh: timedelta = timedelta(minutes=15)
    regions: tuple[str, ...] = ("us-east-1",)
    all_regions: bool = False


@dataclass(frozen=True, slots=True)
class Inventory:
    interval: timedelta = timedelta(hours=1)
    name_patterns: tuple[str, ...] = ("*break-glass*", "*emergency*")
    tags: dict[str, str] = field(default_factory=lambda: {"breakglass": "true"})
    max_access_key_age: timedelta = timedelta(days=90)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class StoreChoice:
    """The state store: a key of ``watcher/store/registry.py`` and that backend's settings."""

    kind: str = "sqlite"
    settings: object = None


@dataclass(frozen=True, slots=True)
class CanarySettings:
    """``canary:`` of the config (``watcher/canary.py``). ``accounts`` empty: every account."""

    enabled: bool = False
    interval: timedelta = timedelta(minutes=10)
    role_name: str = "breakglass-watcher-canary"
    accounts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PipelineChecks:
    """``checks:`` of the config (``watcher/pipeline.py``)."""

    enabled: bool = False
    interval: timedelta = timedelta(minutes=5)
    eventbridge_rules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    """Everything ``run`` needs. Paths are absolute (resolved against the config file's folder)."""

    rules_path: Path
    state_path: Path
    accounts: tuple[Account, ...]
    """The accounts listed by hand; the daemon adds the organization's (``organization``)."""
    listen: tuple[str, int] = DEFAULT_LISTEN
    endpoint_url: str | None = None
    sources: Mapping[str, object] = field(default_factory=dict)
    """Settings of each enabled event source by config key (``sources.KEY``); the kinds and
    their settings types are in ``watcher/sources/registry.py``."""
    inventory: Inventory = field(default_factory=Inventory)
    canary: CanarySettings = field(default_factory=CanarySettings)
    checks: PipelineChecks = field(default_factory=PipelineChecks)
    detection_grace: timedelta = timedelta(minutes=30)
    retention: timedelta = timedelta(days=400)
    store: StoreChoice = field(default_factory=StoreChoice)
    """SQLite (at ``state_path``) unless the config's ``store:`` names another backend."""
    source_file: Path | None = None
    organization: Organization | None = None
    records_path: Path = Path("records")
    """Where ``drill`` writes exercise records and the exercise history reads them."""
