"""Exponential backoff: the one formula behind every retry in the runtime and the operator.

Sans-IO: it computes delays and never sleeps or reads a clock. Callers keep their own attempt
counters (a watch, a reconcile key, a model call) and ask `Backoff.delay(attempt)` how long to wait.
Attempts are 0-based: attempt 0 waits `first_s`, each next one twice as long, never over `cap_s`.
With `jitter`, the delay is multiplied by a factor in [0.5, 1.5) so that many callers that failed
together do not retry together.
"""

from __future__ import annotations

import dataclasses
import random

__all__ = ["Backoff"]


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    first_s: float
    cap_s: float
    jitter: bool = True

    def __post_init__(self) -> None:
        if not (0.0 < self.first_s <= self.cap_s):
            raise ValueError(f"backoff needs 0 < first_s <= cap_s, got first_s={self.first_s}, cap_s={self.cap_s}")

    def base(self, attempt: int) -> float:
        """The delay before jitter: `first_s * 2**attempt`, capped at `cap_s` (attempt < 0 counts as 0)."""
        n = max(0, attempt)
        if n >= 64:  # 2**64 * any positive first_s is past every cap
            return self.cap_s
        return float(min(self.cap_s, self.first_s * (2**n)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry number `attempt` (0-based), jittered when `jitter` is set."""
        d = self.base(attempt)
        if not self.jitter:
            return d
        return d * (0.5 + (rng or random).random())
