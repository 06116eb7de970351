"""Token bucket, backoff and error classification."""

from __future__ import annotations

import random

import aiohttp
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from watcher.sources.retry import Backoff, RateBudgets, TokenBucket, classify_error


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_the_bucket_spaces_calls_at_the_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(2.0, clock=time.clock, sleep=time.sleep)
    stamps = []
    for _ in range(5):
        await bucket.acquire()
        stamps.append(time.now)
    assert stamps == [100.0, 100.5, 101.0, 101.5, 102.0]


async def test_the_bucket_allows_a_burst_after_idling_but_no_more() -> None:
    time = FakeTime()
    bucket = TokenBucket(1.0, burst=3, clock=time.clock, sleep=time.sleep)
    for _ in range(3):
        await bucket.acquire()
    assert time.sleeps == []
    time.now += 10  # idle: the bucket refills to its burst, not beyond
    for _ in range(4):
        await bucket.acquire()
    assert time.sleeps == [1.0]


async def test_a_late_call_holds_the_next_back_so_arrivals_stay_apart() -> None:
    """Tokens at 1.5/s are 0.67 s apart, but a call that reached the API 0.4 s after its token
    (a new connection on a busy host) would arrive 0.27 s before the next: 3 calls in one
    second. Held from each call's end, consecutive arrivals are >= 0.5 s apart."""
    time = FakeTime()
    bucket = TokenBucket(1.5, clock=time.clock, sleep=time.sleep)
    await bucket.acquire()  # t = 100.0
    time.now += 0.4  # the call arrives and is answered at 100.4
    bucket.hold(0.5)
    await bucket.acquire()
    assert time.now == pytest.approx(100.9)  # not 100.667
    bucket.hold(0.5)  # answered at once: the rate, not the hold, sets the next
    await bucket.acquire()
    assert time.now == pytest.approx(100.9 + 1 / 1.5)


async def test_concurrent_waiters_queue_up_rather_than_share_a_token() -> None:
    time = FakeTime()
    bucket = TokenBucket(4.0, clock=time.clock, sleep=time.sleep)
    delays = [bucket.reserve() for _ in range(4)]
    assert delays == [0.0, 0.25, 0.5, 0.75]


def test_the_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(1, burst=0)


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(base=1, cap=10, jitter="none")
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_full_jitter_stays_within_the_bound() -> None:
    backoff = Backoff(base=1, cap=8, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(50)]
    bounds = [min(8, 2**i) for i in range(50)]
    assert all(0 <= d <= b for d, b in zip(delays, bounds, strict=True))
    assert len(set(delays)) == 50  # jittered, not constant
    assert max(delays[10:]) > 4  # and it does grow


def test_backoff_survives_many_attempts() -> None:
    backoff = Backoff(base=1, cap=60, jitter="none")
    for _ in range(2000):
        delay = backoff.next_delay()
    assert delay == 60


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "LookupEvents",
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error("ThrottlingException"), "throttled"),
        (_client_error("TooManyRequestsException"), "throttled"),
        (_client_error("RequestLimitExceeded"), "throttled"),
        (_client_error("SomethingNew", 429), "throttled"),
        (_client_error("AccessDenied", 403), "auth"),
        (_client_error("AccessDeniedException"), "auth"),
        (_client_error("ExpiredToken"), "auth"),
        (_client_error("InvalidClientTokenId", 403), "auth"),
        (_client_error("UnrecognizedClientException"), "auth"),
        (NoCredentialsError(), "auth"),
        (EndpointConnectionError(endpoint_url="http://x"), "network"),
        (ConnectTimeoutError(endpoint_url="http://x"), "network"),
        (ReadTimeoutError(endpoint_url="http://x"), "network"),
        (aiohttp.ClientConnectionError(), "network"),
        (ConnectionRefusedError(), "network"),
        (TimeoutError(), "network"),
        (_client_error("InternalFailure", 500), "other"),
        (_client_error("QueueDoesNotExist"), "other"),
        (ParamValidationError(report="bad"), "other"),
        (ValueError("bug"), "other"),
    ],
)
def test_errors_are_classified(exc: BaseException, kind: str) -> None:
    assert classify_error(exc) == kind


def test_rate_budgets_keep_one_bucket_per_key_across_users() -> None:
    """A restarted source gets the bucket (and the debt) of the one it replaces."""
    now = [0.0]
    budgets = RateBudgets(clock=lambda: now[0])
    first = budgets.bucket(("lookup", "1", "us-east-1"), 2.0)
    assert first.reserve() == 0.0
    again = budgets.bucket(("lookup", "1", "us-east-1"), 2.0)
    assert again is first
    assert again.reserve() == pytest.approx(0.5)  # owed: no fresh, full bucket
    assert budgets.bucket(("lookup", "1", "eu-west-1"), 2.0) is not first
    slower = budgets.bucket(("lookup", "1", "us-east-1"), 1.0)
    assert slower is first and slower.rate == 1.0
