"""The demo's stand-in for CloudTrail: the records of the calls it made, delivered as AWS would.

moto records no CloudTrail events. :class:`CloudTrailStandIn` turns each call into a
real-shaped record and delivers it twice: to EventBridge (``put_events`` on the default bus →
the rule → SQS) and to the LookupEvents emulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from watcher.clock import utc_now
from watcher.demo.scenario import REGION, SOURCE_IP
from watcher.drill_auth import Authentication
from watcher.emulator.infra import deliver_many
from watcher.emulator.lookup import LookupEventStore
from watcher.emulator.records import (
    api_call_record,
    assume_role_record,
    assumed_role_identity,
    iam_user_identity,
)


def authentication_records(
    auth: Authentication, source_ip: str = SOURCE_IP
) -> list[dict[str, Any]]:
    """The CloudTrail records of a drill's calls: the assume call (for a role), then the
    GetCallerIdentity made with the break-glass credentials."""
    if auth.method == "profile":
        user_name = auth.principal_arn.rsplit("/", 1)[-1]
        identity = iam_user_identity(auth.account, user_name, auth.access_key_id)
        return [_get_caller_identity(identity, auth, source_ip)]
    session_name = auth.session_name or ""
    assume = assume_role_record(
        caller=_caller_identity(auth.caller_arn, auth.account),
        role_arn=auth.principal_arn,
        session_name=session_name,
        event_time=auth.at,
        region=auth.region,
        source_ip=source_ip,
        issued_access_key_id=auth.access_key_id,
        source_identity=auth.source_identity,
    )
    identity = assumed_role_identity(
        auth.principal_arn,
        session_name,
        auth.access_key_id,
        source_identity=auth.source_identity,
        creation_date=auth.at,
    )
    return [assume, _get_caller_identity(identity, auth, source_ip)]


def _get_caller_identity(
    identity: dict[str, Any], auth: Authentication, source_ip: str
) -> dict[str, Any]:
    return api_call_record(
        identity=identity,
        event_name="GetCallerIdentity",
        event_source="sts.amazonaws.com",
        account=auth.account,
        event_time=auth.at,
        region=auth.region,
        source_ip=source_ip,
    )


def _caller_identity(arn: str, account: str) -> dict[str, Any]:
    """The ``userIdentity`` of the operator who assumed the role, from GetCallerIdentity's ARN."""
    resource = arn.split(":", 5)[-1]
    if resource.startswith("assumed-role/"):
        _, role, session = resource.split("/", 2)
        return assumed_role_identity(f"arn:aws:iam::{account}:role/{role}", session, "")
    return iam_user_identity(account, resource.rsplit("/", 1)[-1])


class CloudTrailStandIn:
    """Plays CloudTrail for calls made against the emulator: each record goes to EventBridge
    (``put_events`` on the default bus → the rule → SQS) and to the LookupEvents emulator."""

    def __init__(self, endpoint_url: str, lookup: LookupEventStore, region: str = REGION) -> None:
        self._endpoint_url = endpoint_url
        self._lookup = lookup
        self._region = region
        self.delivered: list[dict[str, Any]] = []
        self.delivered_at: datetime | None = None

    async def record(self, auth: Authentication) -> None:
        """Use as the drill's ``after_auth``: record what the drill just did."""
        await self.publish(authentication_records(auth))

    async def publish(self, records: Sequence[dict[str, Any]]) -> None:
        await asyncio.to_thread(deliver_many, self._endpoint_url, records, region=self._region)
        for record in records:
            self._lookup.add(record)
        self.delivered += records
        self.delivered_at = utc_now()
