"""Step 3 of a drill (docs/design.md "Drills"): act as the break-glass principal once.

A role is assumed with the operator's own credentials, with the drill's session name and a
``SourceIdentity`` naming the participant; a user is used through the credentials of a named AWS
profile. Either way one harmless call follows, ``sts:GetCallerIdentity``, as the principal, and
its answer must name the principal: credentials that work as someone else are a failed step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError

from watcher.clock import Clock, utc_now
from watcher.credentials import key_label
from watcher.errors import WatcherError

SESSION_SECONDS = 900  # the shortest role session STS grants: a drill needs one call
_STS_CONFIG = AioConfig(
    retries={"total_max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30
)


@dataclass(frozen=True, slots=True)
class Authentication:
    """The break-glass calls the drill made (what CloudTrail would record).

    ``at`` is taken just before the first call as the principal (the assume call for a role).
    ``access_key_id`` signed the GetCallerIdentity call: the session's temporary key for a
    role, the profile's key for a user.
    """

    method: Literal["assume-role", "profile"]
    at: datetime
    region: str
    account: str
    principal_arn: str
    caller_arn: str
    identity_arn: str
    access_key_id: str
    session_name: str | None = None
    source_identity: str | None = None


AfterAuthentication = Callable[[Authentication], Awaitable[None]]


async def assume_role(
    endpoint_url: str | None,
    region: str,
    role_arn: str,
    session_name: str,
    source_identity: str | None,
    clock: Clock = utc_now,
) -> Authentication:
    """Assume the role with the operator's own credentials, then GetCallerIdentity as the
    session; raises WatcherError when the session is not who it should be."""
    session = get_session()
    async with session.create_client(
        "sts", region_name=region, endpoint_url=endpoint_url, config=_STS_CONFIG
    ) as sts:
        caller = await sts.get_caller_identity()
        params: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name,
            "DurationSeconds": SESSION_SECONDS,
        }
        if source_identity:
            params["SourceIdentity"] = source_identity
        at = clock()
        answer = await sts.assume_role(**params)
    credentials = answer["Credentials"]
    async with session.create_client(
        "sts",
        region_name=region,
        endpoint_url=endpoint_url,
        config=_STS_CONFIG,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    ) as as_role:
        identity = await as_role.get_caller_identity()
    role_name = role_arn.rsplit("/", 1)[-1]
    expected_tail = f":assumed-role/{role_name}/{session_name}".lower()
    if not str(identity["Arn"]).lower().endswith(expected_tail):
        raise WatcherError(
            f"the session's credentials identify as {identity['Arn']}, not a session "
            f"{session_name} of {role_arn}"
        )
    return Authentication(
        method="assume-role",
        at=at,
        region=region,
        account=str(identity["Account"]),
        principal_arn=role_arn,
        caller_arn=str(caller["Arn"]),
        identity_arn=str(identity["Arn"]),
        access_key_id=str(credentials["AccessKeyId"]),
        session_name=session_name,
        source_identity=source_identity,
    )


async def use_profile(
    endpoint_url: str | None, region: str, user_arn: str, profile: str, clock: Clock
) -> Authentication:
    """GetCallerIdentity with the profile's credentials, which must be the break-glass user's."""
    session = AioSession(profile=profile)
    credentials = await session.get_credentials()
    if credentials is None:
        raise WatcherError(f"AWS profile {profile!r} has no credentials")
    frozen = await credentials.get_frozen_credentials()
    async with session.create_client(
        "sts", region_name=region, endpoint_url=endpoint_url, config=_STS_CONFIG
    ) as sts:
        at = clock()
        identity = await sts.get_caller_identity()
    arn = str(identity["Arn"])
    if arn.lower() != user_arn.lower():
        raise WatcherError(
            f"profile {profile!r} authenticates as {arn}, not as the break-glass user {user_arn}"
        )
    return Authentication(
        method="profile",
        at=at,
        region=region,
        account=str(identity["Account"]),
        principal_arn=user_arn,
        caller_arn=arn,
        identity_arn=arn,
        access_key_id=str(frozen.access_key),
    )


def describe(auth: Authentication) -> str:
    """What the step did, for the exercise record."""
    if auth.method == "profile":
        return (
            f"sts:GetCallerIdentity with the profile's access key "
            f"{key_label(auth.access_key_id)} answered {auth.identity_arn}"
        )
    who = f", source identity {auth.source_identity}" if auth.source_identity else ""
    return (
        f"{auth.caller_arn} assumed {auth.principal_arn} as session {auth.session_name}{who}; "
        f"sts:GetCallerIdentity with the session's credentials answered {auth.identity_arn}"
    )


def failure_reason(exc: Exception, source_identity: str | None) -> str:
    """Why authenticating failed, with the likely fix where AWS's answer hides it."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        reason = f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
        if source_identity and error.get("Code") == "AccessDenied":
            reason += (
                " (the role's trust policy must also allow sts:SetSourceIdentity for the "
                "participant's source identity)"
            )
        return reason
    return str(exc)
