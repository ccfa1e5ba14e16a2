"""The one backoff formula: doubling from first_s, capped, jitter in [0.5, 1.5)."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_runtime.backoff import Backoff


def test_doubles_then_caps_without_jitter() -> None:
    b = Backoff(first_s=1.0, cap_s=60.0, jitter=False)
    assert [b.delay(n) for n in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert b.delay(-3) == 1.0
    assert b.delay(10_000) == 60.0


@given(st.integers(min_value=-5, max_value=500), st.integers(min_value=0, max_value=2**32))
def test_jitter_stays_within_half_and_one_and_a_half(attempt: int, seed: int) -> None:
    b = Backoff(first_s=0.2, cap_s=5.0)
    d = b.delay(attempt, random.Random(seed))
    assert 0.5 * b.base(attempt) <= d < 1.5 * b.base(attempt)
    assert b.base(attempt) <= 5.0


@pytest.mark.parametrize(("first", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bad_bounds_are_refused(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < first_s <= cap_s"):
        Backoff(first_s=first, cap_s=cap)
