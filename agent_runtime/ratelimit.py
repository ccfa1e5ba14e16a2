"""Per-client rate limits: token buckets with the clock as a parameter (sans-IO).

A `TokenBucket` holds up to `burst` tokens and gains `per_s` a second; each frame or message takes
one. A refusal takes nothing and says how long until the token is there (`retry_after`). The
server keeps two buckets per WebSocket connection (`ClientLimits`: every frame, and `user_message`
frames) and one per token for HTTP message posts (`Buckets`, bounded in size). Over the limit a
client gets `RateLimited` (`rate_limited`, HTTP 429): the refused frame is not acted on, the
connection goes on. The defaults (`RateLimits()`) are far above what a person or a normal program
sends; `agentctl serve --frame-rate PER_S[/BURST] --message-rate PER_S[/BURST]` set them (rate 0:
no limit).

Nothing here reads a clock or does IO: the shell passes `time.monotonic()`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from agent_runtime import errors

__all__ = ["Buckets", "ClientLimits", "Rate", "RateLimited", "RateLimits", "TokenBucket"]


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    """`per_s` tokens a second, at most `burst` at once; `per_s == 0` is no limit."""

    per_s: float
    burst: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_s) and self.per_s >= 0):
            raise ValueError(f"a rate must be a finite number >= 0, not {self.per_s}")
        if not self.unlimited and not (math.isfinite(self.burst) and self.burst >= 1):
            raise ValueError(f"a burst must be a finite number >= 1, not {self.burst}")

    @property
    def unlimited(self) -> bool:
        return self.per_s == 0

    def __str__(self) -> str:
        return f"{self.per_s:g}/{self.burst:g}"

    @classmethod
    def parse(cls, text: str) -> Rate:
        """`PER_S[/BURST]` (a flag's value); the burst defaults to ten seconds' worth (at least 1)."""
        per_s, _, burst = text.partition("/")
        try:
            rate = float(per_s)
            return cls(rate, float(burst) if burst else max(1.0, 10 * rate))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not PER_S[/BURST] (0: no limit): {exc}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimits:
    """The server's limits per client (defaults: no normal client comes near them)."""

    frames: Rate = Rate(per_s=200.0, burst=2000)
    """Every WebSocket frame of one connection (checked before the frame is parsed)."""
    messages: Rate = Rate(per_s=50.0, burst=500)
    """`user_message` frames of one connection; `POST …/messages` of one token (per server)."""


class RateLimited(errors.Error, code="rate_limited"):
    """Over a rate limit: the frame or request was not acted on; send it again after `retry_after_s`."""

    def __init__(self, what: str, rate: Rate, retry_after_s: float) -> None:
        super().__init__(f"too many {what}: at most {rate.per_s:g}/s (bursts of {rate.burst:g}); "
                         f"retry in {retry_after_s:.3f}s")
        self.retry_after_s = retry_after_s

    def extra(self) -> dict[str, Any]:
        return {"retry_after": round(self.retry_after_s, 3)}


class TokenBucket:
    """One client's budget."""

    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self.tokens = float(rate.burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:  # a clock that steps back adds nothing
            self.tokens = min(float(self.rate.burst), self.tokens + (now - self.stamp) * self.rate.per_s)
            self.stamp = now

    def full(self, now: float) -> bool:
        """Whether the bucket is as a new one would be (forgetting it loses nothing)."""
        self._refill(now)
        return self.rate.unlimited or self.tokens >= self.rate.burst

    def take(self, now: float, cost: float = 1.0) -> float:
        """0.0 when `cost` tokens were taken; else the seconds until they are there (nothing taken)."""
        if self.rate.unlimited:
            return 0.0
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate.per_s


class Buckets:
    """A bucket per key (an HTTP client's token), at most `max_keys` of them: past that, full buckets
    are forgotten first (losslessly), then the least recently used."""

    def __init__(self, rate: Rate, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def take(self, key: str, now: float) -> float:
        """`TokenBucket.take` of `key`'s bucket (a new, full one for a new key)."""
        if self.rate.unlimited:
            return 0.0
        bucket = self._buckets.pop(key, None)  # re-inserted last: the dict's order is recency
        if bucket is None:
            bucket = TokenBucket(self.rate, now)
        self._buckets[key] = bucket
        wait = bucket.take(now)
        if len(self._buckets) > self.max_keys:
            self._shrink(now, keep=key)
        return wait

    def _shrink(self, now: float, keep: str) -> None:
        for k in [k for k, b in self._buckets.items() if k != keep and b.full(now)]:
            del self._buckets[k]
        while len(self._buckets) > self.max_keys:
            oldest = next(k for k in self._buckets if k != keep)
            del self._buckets[oldest]


class ClientLimits:
    """The buckets of one WebSocket connection."""

    __slots__ = ("_frames", "_messages")

    def __init__(self, limits: RateLimits, now: float) -> None:
        self._frames = TokenBucket(limits.frames, now)
        self._messages = TokenBucket(limits.messages, now)

    def frame(self, now: float) -> RateLimited | None:
        """None if a frame may be handled now, else the refusal."""
        wait = self._frames.take(now)
        return RateLimited("frames", self._frames.rate, wait) if wait else None

    def message(self, now: float) -> RateLimited | None:
        """None if a `user_message` may be handled now, else the refusal."""
        wait = self._messages.take(now)
        return RateLimited("messages", self._messages.rate, wait) if wait else None
