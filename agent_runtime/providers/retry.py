"""Retry hints, backoff and the per-agent retry budget (sans-IO: no clock reads, no sleeping).

Providers say when to come back in three ways: `retry-after-ms` (milliseconds, Anthropic/OpenAI),
`retry-after` (seconds or an HTTP date), and Gemini's `google.rpc.RetryInfo` detail in the error body
(`"retryDelay": "36s"`). `retry_hint` reads all three; `backoff_delay` honours the hint (capped) and
otherwise backs off exponentially with jitter (`agent_runtime.backoff`); `RetryBudget` is a token bucket so one agent cannot
spend unbounded time retrying a provider that keeps failing.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping
from typing import Any

from agent_runtime.backoff import Backoff


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and value == value and value != float("inf") else None


def retry_hint(headers: Mapping[str, str], body: Any = None, now_epoch: float | None = None) -> float | None:
    """Seconds the provider asked us to wait, or None. Header names are matched case-insensitively."""
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms is not None:
        value = _seconds(ms.strip())
        if value is not None:
            return value / 1000.0
    after = lower.get("retry-after")
    if after is not None:
        value = _seconds(after.strip())
        if value is not None:
            return value
        try:
            when = email.utils.parsedate_to_datetime(after.strip())
        except (TypeError, ValueError):
            when = None
        if when is not None and now_epoch is not None:
            return max(0.0, when.timestamp() - now_epoch)
    return gemini_retry_delay(body)


def gemini_retry_delay(body: Any) -> float | None:
    """`error.details[].retryDelay` of a google.rpc error body (`"36s"`, `"0.5s"`), or None."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                return _seconds(delay[:-1])
    return None


def backoff_delay(
    attempt: int, *, base_s: float, cap_s: float, hint_s: float | None, rng: random.Random | None = None
) -> float:
    """The wait before retry number `attempt` (0-based). A provider hint wins (capped at `cap_s`);
    otherwise `base_s * 2**attempt`, capped, times a jitter factor in [0.5, 1.5)."""
    if hint_s is not None:
        return min(max(0.0, hint_s), cap_s)
    return Backoff(first_s=base_s, cap_s=cap_s).delay(attempt, rng)


class RetryBudget:
    """A token bucket of retries: `capacity` retries, refilled at `refill_per_s`. Time is passed in."""

    __slots__ = ("capacity", "refill_per_s", "tokens", "_at")

    def __init__(self, capacity: float, refill_per_s: float) -> None:
        self.capacity = capacity
        self.refill_per_s = refill_per_s
        self.tokens = capacity
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.refill_per_s)
        self._at = now

    def try_spend(self, now: float) -> bool:
        """Take one retry if the bucket has one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
