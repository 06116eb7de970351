"""Rate limiting, backoff and the one error policy shared by the sources and the inventory.

Our own retries replace botocore's (clients are made with one attempt) so that every throttle
and failure is counted in the metrics and the request rate stays under the API's limit.

The error policy: what :data:`RETRYABLE` names (AWS's answers, credentials that could not be
had, the network) is counted by :func:`classify_error`'s kind and retried with backoff; anything
else is a bug (a ``TypeError``, botocore's ``ParamValidationError``…), and propagates, so it is
logged with its traceback and stops the daemon instead of turning into an endless retry.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Literal

import aiohttp
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

ErrorKind = Literal["throttled", "network", "auth", "other"]
Jitter = Literal["full", "none"]

# botocore's own throttle list (botocore.retries.standard) plus the SQS spellings.
_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "KmsThrottled",
        "AWS.SimpleQueueService.RequestThrottled",
    }
)
_AUTH = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "InvalidToken",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "RequestExpired",
        "KMS.AccessDeniedException",
    }
)


#: Failures that are retried (see the module docstring); every other exception propagates.
RETRYABLE: tuple[type[BaseException], ...] = (
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    HTTPClientError,
    BotoConnectionError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


def classify_code(code: str, status: int | None = None) -> ErrorKind:
    """The error kind of an AWS error code (``status`` 429 is a throttle whatever the code)."""
    if code in _THROTTLED or status == 429:
        return "throttled"
    if code in _AUTH:
        return "auth"
    return "other"


def classify_error(exc: BaseException) -> ErrorKind:
    """The metrics' error kind of an exception (``other`` for what it cannot place)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return classify_code(str(error.get("Code", "")), status)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return "auth"
    if isinstance(
        exc, HTTPClientError | BotoConnectionError | aiohttp.ClientError | OSError | TimeoutError
    ):
        return "network"
    return "other"


def error_kind(exc: BaseException) -> ErrorKind | None:
    """The error kind of a retryable failure; None for anything else (a bug: let it raise)."""
    return classify_error(exc) if isinstance(exc, RETRYABLE) else None


class TokenBucket:
    """Allows ``rate_per_second`` acquisitions on average, at most ``burst`` at once.

    Waiters reserve their token before sleeping, so concurrent callers queue in arrival order
    and the rate holds across them. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be > 0 and burst >= 1")
        self.rate = rate_per_second
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def set_rate(self, rate_per_second: float) -> None:
        """Change the rate from now on; tokens earned (or owed) so far are kept."""
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be > 0")
        self._refill()
        self.rate = rate_per_second

    def reserve(self) -> float:
        """Take a token now; returns how long to wait before using it (0: use it now)."""
        self._refill()
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def hold(self, seconds: float) -> None:
        """No token before ``seconds`` from now (nor before the rate allows one). Called when
        a call ends, it spaces the *arrivals* of consecutive calls, not only their starts: a
        call that waited after its token (a new connection, credentials, a busy event loop)
        would otherwise reach the API close behind the next one."""
        self._refill()
        self._tokens = min(self._tokens, 1 - seconds * self.rate)

    async def acquire(self) -> None:
        """Wait until a token is available and take it."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)


class RateBudgets:
    """Token buckets by key (e.g. API, account and region) that outlive the sources using them.

    A reload that restarts the sources must not hand the new ones a fresh, full bucket while the
    old ones may still make a call: together they would exceed the API's rate. The daemon keeps
    one ``RateBudgets`` for its lifetime; a changed rate applies to the existing bucket.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[Hashable, TokenBucket] = {}

    def bucket(self, key: Hashable, rate_per_second: float) -> TokenBucket:
        """The bucket of ``key``, created at ``rate_per_second`` or set to it."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(rate_per_second, clock=self._clock, sleep=self._sleep)
            self._buckets[key] = bucket
        elif bucket.rate != rate_per_second:
            bucket.set_rate(rate_per_second)
        return bucket


class Backoff:
    """Exponential backoff: attempt n waits up to ``min(cap, base * 2**n)`` seconds.

    ``jitter="full"`` draws the wait uniformly from [0, that bound] (AWS's recommendation, which
    spreads retries of many clients); ``"none"`` waits the bound itself.
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 60.0,
        jitter: Jitter = "full",
        rng: random.Random | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        bound = min(self.cap, self.base * 2.0 ** min(self.attempt, 62))
        self.attempt += 1
        return self._rng.uniform(0.0, bound) if self.jitter == "full" else bound

    def reset(self) -> None:
        self.attempt = 0
