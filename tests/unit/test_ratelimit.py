"""The sans-IO token buckets of the rate limits (issue 17, item 7): a bucket starts full, refills
at its rate up to its burst, refuses without taking anything and says how long to wait; the clock
is a parameter, so every case here is exact."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_runtime import errors
from agent_runtime.ratelimit import Buckets, ClientLimits, Rate, RateLimited, RateLimits, TokenBucket


def test_a_bucket_starts_full_and_refuses_past_its_burst() -> None:
    bucket = TokenBucket(Rate(per_s=2.0, burst=3), now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)  # one token at 2/s
    assert bucket.take(100.0) == pytest.approx(0.5)  # a refusal takes nothing


def test_it_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(Rate(per_s=2.0, burst=3), now=0.0)
    for _ in range(3):
        bucket.take(0.0)
    assert bucket.take(0.25) == pytest.approx(0.25)  # half a token so far
    assert bucket.take(0.5) == 0.0  # the wait it named was exact
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert [bucket.take(1000.0) for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # a long pause refills to burst only
    assert bucket.take(1000.0) > 0


def test_a_clock_that_steps_back_adds_nothing() -> None:
    bucket = TokenBucket(Rate(per_s=1.0, burst=1), now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) == pytest.approx(1.0)
    assert bucket.take(10.5) == pytest.approx(0.5)
    assert bucket.take(11.0) == 0.0


def test_rate_zero_is_no_limit() -> None:
    bucket = TokenBucket(Rate(per_s=0.0, burst=0), now=0.0)
    assert all(bucket.take(0.0) == 0.0 for _ in range(100_000))
    assert Rate(0.0, 0).unlimited and not Rate(1.0, 1).unlimited


@pytest.mark.parametrize(("per_s", "burst"), [(-1.0, 1.0), (1.0, 0.5), (math.inf, 1.0), (math.nan, 1.0), (1.0, math.inf)])
def test_bad_rates_are_refused(per_s: float, burst: float) -> None:
    with pytest.raises(ValueError):
        Rate(per_s, burst)


@settings(max_examples=300, deadline=None)
@given(per_s=st.floats(0.1, 1000), burst=st.integers(1, 200),
       steps=st.lists(st.floats(0, 2, allow_nan=False), min_size=1, max_size=300))
def test_never_more_than_burst_plus_rate_times_elapsed(per_s: float, burst: int, steps: list[float]) -> None:
    bucket = TokenBucket(Rate(per_s, burst), now=0.0)
    now, taken = 0.0, 0
    for step in steps:
        now += step
        wait = bucket.take(now)
        assert wait >= 0
        taken += wait == 0.0
        assert taken <= burst + per_s * now + 1e-6
        if wait:  # the named wait is enough, and not more than needed
            assert bucket.take(now + wait + 1e-9) == 0.0
            now += wait + 1e-9
            taken += 1


def test_buckets_are_per_key_and_bounded() -> None:
    buckets = Buckets(Rate(per_s=1.0, burst=2), max_keys=3)
    assert buckets.take("a", 0.0) == buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) > 0
    assert buckets.take("b", 0.0) == 0.0  # another key has its own bucket
    for key in ("c", "d", "e", "f"):
        buckets.take(key, 0.0)
    assert len(buckets) == 3 and all(k in buckets for k in ("d", "e", "f"))  # none full: the least recent go


def test_full_buckets_are_evicted_first() -> None:
    """A full bucket is the same as no bucket: forgetting it loses nothing."""
    buckets = Buckets(Rate(per_s=0.1, burst=2), max_keys=2)
    buckets.take("spent", 0.0)
    buckets.take("spent", 0.0)
    buckets.take("idle", 0.0)
    buckets.take("new", 10.0)  # by now "idle" is full again (it goes); "spent" is not (it stays)
    assert "spent" in buckets and "idle" not in buckets and "new" in buckets
    assert buckets.take("spent", 10.0) == 0.0 and buckets.take("spent", 10.0) > 0  # its debt was kept


def test_client_limits_answer_with_rate_limited() -> None:
    limits = ClientLimits(RateLimits(frames=Rate(10.0, 2), messages=Rate(1.0, 1)), now=0.0)
    assert limits.frame(0.0) is None and limits.frame(0.0) is None
    refused = limits.frame(0.0)
    assert isinstance(refused, RateLimited)
    assert (refused.code, refused.http_status, refused.retryable) == ("rate_limited", 429, True)
    assert refused.extra() == {"retry_after": 0.1}
    assert "frames" in str(refused) and "10" in str(refused)
    assert limits.message(0.0) is None
    message = limits.message(0.0)
    assert message is not None and message.retry_after_s == pytest.approx(1.0) and "messages" in str(message)


def test_rate_limited_is_a_public_code_of_the_protocol() -> None:
    exc = RateLimited("frames", Rate(1.0, 1), 0.25)
    assert errors.frame(exc, id="m1") == {"type": "error", "code": "rate_limited", "message": str(exc),
                                          "retry_after": 0.25, "id": "m1"}
    assert errors.http_status(exc) == 429 and errors.body(exc)["code"] == "rate_limited"
    assert errors.ErrorCode.RATE_LIMITED.value == "rate_limited"


def test_defaults_are_generous() -> None:
    d = RateLimits()
    assert d.frames.per_s >= 100 and d.frames.burst >= 1000
    assert d.messages.per_s >= 20 and d.messages.burst >= 200
