"""AWS client factory shared by every source: one aiobotocore session, per-account credentials.

An account with a ``role_arn`` is read through that role; its temporary credentials are cached
and refreshed by botocore's refreshable-credentials machinery before they expire. Clients are
long-lived: open them once with :meth:`AwsClients.client` inside an ``AsyncExitStack``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentialResolver, AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession, get_session
from botocore.credentials import CredentialProvider

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
_CLIENT_CONFIG = AioConfig(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=CONNECT_TIMEOUT,
    read_timeout=READ_TIMEOUT,
)


class AwsClients:
    """Creates aiobotocore clients for an endpoint (``None``: real AWS) and accounts."""

    def __init__(self, endpoint_url: str | None = None) -> None:
        self.endpoint_url = endpoint_url
        self._session = get_session()
        self._role_sessions: dict[str, AioSession] = {}

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
