"""AWS client factory shared by every source: one aiobotocore session, per-account credentials.

An account with a ``role_arn`` is read through that role; its temporary credentials are cached
and refreshed by botocore's refreshable-credentials machinery before they expire. They belong to
the account's session, so its clients in every region share them (one ``AssumeRole`` an account).

Two ways to get a client: :meth:`AwsClients.client` opens one for a long-lived user (the SQS
long poll) or a one-off job; :meth:`AwsClients.lease` lends one from a pool bounded in size
(``client_pool.py``) to the many short users (a LookupEvents poll of one account-region).
Every client shares one TLS context: each would otherwise load the CA bundle into its own
(about 0.8 MB and 30 ms of CPU a client, measured).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentialResolver, AioDeferredRefreshableCredentials
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import AioSession, get_session
from botocore.credentials import CredentialProvider

from watcher.client_pool import ClientPool
from watcher.scheduling import DEFAULT_CONCURRENCY
from watcher.settings import Account

ROLE_SESSION_NAME = "breakglass-watcher"

# Retries are ours (token bucket + backoff with metrics), so botocore makes one attempt only
# (``total_max_attempts`` counts the first; ``max_attempts`` would count retries).
# Every call is bounded: an endpoint that accepts and never answers costs at most
# CONNECT_TIMEOUT + READ_TIMEOUT, so SIGTERM ends the daemon well within a container's grace
# period (Docker's default is 10 s). AWS answers these calls in well under a second; only the
# SQS long poll needs longer, and it asks for its own read timeout (and is abandoned on stop).
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 6.0
# Twice the polls that run at once: every running poll has its client and as many idle ones
# stay open. Up to this many account-regions (e.g. 32 accounts x 4 regions) no poll opens a
# client; beyond, each poll opens one and its connection (about 10 ms of CPU in all,
# bench/aws_clients.py) and memory stays at this many clients (about 0.27 MB each).
POOL_SIZE = 2 * DEFAULT_CONCURRENCY

_TLS_LOCK = threading.Lock()  # contexts are built in worker threads
_TLS_CONTEXTS: dict[tuple[object, ...], tuple[ssl.SSLContext, ssl.SSLContext | None]] = {}


class _SharedTlsSession(AIOHTTPSession):  # type: ignore[misc]  # aiobotocore is untyped
    """aiobotocore's HTTP session, with the TLS contexts of equal settings built once per
    process. An ``SSLContext`` is safe to share between connections; aiobotocore is pinned
    exactly (pyproject.toml), and ``tests/test_aws_clients.py`` checks the sharing holds."""

    def _build_ssl_contexts(
        self, proxy_url: str | None
    ) -> tuple[ssl.SSLContext, ssl.SSLContext | None]:
        key = (self._verify, self._cert_file, self._key_file, proxy_url)
        with _TLS_LOCK:
            if key not in _TLS_CONTEXTS:
                _TLS_CONTEXTS[key] = super()._build_ssl_contexts(proxy_url)
            return _TLS_CONTEXTS[key]


_CLIENT_CONFIG = AioConfig(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=CONNECT_TIMEOUT,
    read_timeout=READ_TIMEOUT,
    http_session_cls=_SharedTlsSession,
)


class AwsClients:
    """Creates aiobotocore clients for an endpoint (``None``: real AWS) and accounts."""

    def __init__(self, endpoint_url: str | None = None, *, pool_size: int = POOL_SIZE) -> None:
        self.endpoint_url = endpoint_url
        self._session = get_session()
        self._role_sessions: dict[str, AioSession] = {}
        self.pool = ClientPool(pool_size)

    def lease(
        self, service: str, region: str, account: Account | None = None
    ) -> AbstractAsyncContextManager[Any]:
        """A pooled client for ``service`` in ``region`` (as ``account``), held for the block:
        for short, frequent uses. It is closed by the pool, never by its user."""
        key = (service, region, account.id if account else None, account and account.role_arn)
        return self.pool.lease(key, lambda: self.client(service, region, account))

    async def close(self) -> None:
        """Close the pooled clients (each leased one when its lease ends)."""
        await self.pool.close()

    def client(
        self,
        service: str,
        region: str,
        account: Account | None = None,
        *,
        read_timeout: float | None = None,
    ) -> AbstractAsyncContextManager[Any]:
        """An async context manager yielding a client for ``service`` in ``region``."""
        session = self._session
        if account is not None and account.role_arn:
            session = self._session_for_role(account.role_arn, region)
        config = _CLIENT_CONFIG
        if read_timeout is not None:
            config = config.merge(AioConfig(read_timeout=read_timeout))
        client: AbstractAsyncContextManager[Any] = session.create_client(
            service, region_name=region, endpoint_url=self.endpoint_url, config=config
        )
        return client

    def _session_for_role(self, role_arn: str, region: str) -> AioSession:
        cached = self._role_sessions.get(role_arn)
        if cached is not None:
            return cached
        session = get_session()
        # Service models (and the endpoints table) are the bulk of a session's memory: every
        # role's session reads them through the one loader (and its cache) of the base session.
        session.register_component("data_loader", self._session.get_component("data_loader"))

        async def refresh() -> dict[str, str]:
            async with self._session.create_client(
                "sts", region_name=region, endpoint_url=self.endpoint_url, config=_CLIENT_CONFIG
            ) as sts:
                answer = await sts.assume_role(RoleArn=role_arn, RoleSessionName=ROLE_SESSION_NAME)
            creds = answer["Credentials"]
            expiry: datetime = creds["Expiration"]
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": expiry.isoformat(),
            }

        # A session's credentials come from its "credential_provider" component; a resolver
        # holding only this role's provider replaces the default chain for this session.
        session.register_component(
            "credential_provider", AioCredentialResolver(providers=[_RoleProvider(refresh)])
        )
        self._role_sessions[role_arn] = session
        return session


class _RoleProvider(CredentialProvider):  # type: ignore[misc]  # botocore is untyped
    """Credentials of an assumed role, fetched by ``refresh`` on first use and renewed by
    botocore's refreshable-credentials machinery before they expire."""

    METHOD = "assume-role"
    CANONICAL_NAME = "custom-breakglass-watcher-role"

    def __init__(self, refresh: Callable[[], Awaitable[dict[str, str]]]) -> None:
        super().__init__()
        self._refresh = refresh

    async def load(self) -> AioDeferredRefreshableCredentials:
        return AioDeferredRefreshableCredentials(refresh_using=self._refresh, method=self.METHOD)
