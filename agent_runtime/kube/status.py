"""Agent status reporting, sans-IO: what a shard patches into `Agent.status`, coalesced and
rate-limited.

The shard observes each agent's status every flush interval (`observe`); only statuses that differ
from what was last patched are dirty; `take(now)` hands out at most one patch per dirty agent,
oldest first, within a token bucket (the per-shard patch-rate cap). So 1,000 busy agents cost at
most `rate` patches per second, each carrying the agent's latest status; an idle agent costs none.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import OrderedDict
from typing import Any

SHARD_PHASES = ("Running", "Idle", "WaitingApproval")


@dataclasses.dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def cached_share(self) -> float:
        """Share of prompt tokens served from the cache (0..1)."""
        prompt = self.input + self.cache_read + self.cache_write
        return round(self.cache_read / prompt, 4) if prompt else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class AgentStatus:
    """The shard-owned fields of `Agent.status`."""

    phase: str
    turns: int
    tokens: Tokens
    last_activity: float  # unix seconds; 0 = never
    ready: bool = True

    def fields(self) -> dict[str, Any]:
        """The merge-patch body's status fields (camelCase, as in the CRD); conditions are added by the shell."""
        out: dict[str, Any] = {
            "phase": self.phase,
            "turns": self.turns,
            "tokens": {"input": self.tokens.input, "output": self.tokens.output,
                       "cacheRead": self.tokens.cache_read, "cacheWrite": self.tokens.cache_write},
            "cachedShare": self.tokens.cached_share(),
        }
        if self.last_activity > 0:
            out["lastActivity"] = rfc3339(self.last_activity)
        return out


def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. Clock-free: callers pass `now`."""

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.tokens = self.burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, wanted: int) -> int:
        """How many of `wanted` may go now (each consumes one token)."""
        self._refill(now)
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted

    def wait_s(self, now: float) -> float:
        """Seconds until one token is available."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class StatusBatcher:
    """Latest desired status per agent vs. last patched; hands out rate-limited, coalesced patches."""

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        self.bucket = TokenBucket(rate, burst, now)
        self.desired: dict[str, AgentStatus] = {}
        self.sent: dict[str, AgentStatus] = {}
        self.dirty: OrderedDict[str, None] = OrderedDict()  # oldest first
        self.in_flight: set[str] = set()
        self.observed = 0
        self.patches = 0

    def observe(self, key: str, status: AgentStatus) -> None:
        self.observed += 1
        self.desired[key] = status
        if self.sent.get(key) != status:
            if key not in self.dirty:
                self.dirty[key] = None
        else:
            self.dirty.pop(key, None)

    def invalidate(self, key: str) -> None:
        """What the apiserver holds is not what we sent (someone overwrote it): patch again."""
        if self.sent.pop(key, None) is not None and key in self.desired and key not in self.dirty:
            self.dirty[key] = None

    def forget(self, key: str) -> None:
        """The agent left this shard: nothing more to report for it."""
        self.desired.pop(key, None)
        self.sent.pop(key, None)
        self.dirty.pop(key, None)

    def take(self, now: float, limit: int | None = None) -> list[tuple[str, AgentStatus]]:
        """The patches to send now: each dirty agent at most once, with its latest status."""
        ready = [k for k in self.dirty if k not in self.in_flight]
        if limit is not None:
            ready = ready[:limit]
        n = self.bucket.take(now, len(ready))
        out: list[tuple[str, AgentStatus]] = []
        for key in ready[:n]:
            del self.dirty[key]
            self.in_flight.add(key)
            out.append((key, self.desired[key]))
        return out

    def done(self, key: str, status: AgentStatus, ok: bool) -> None:
        """A patch finished: remember it, or (failed) mark the agent dirty again."""
        self.in_flight.discard(key)
        if key not in self.desired:
            return  # forgotten meanwhile
        if ok:
            self.patches += 1
            self.sent[key] = status
            if self.desired[key] == status:
                self.dirty.pop(key, None)
            elif key not in self.dirty:
                self.dirty[key] = None
        elif key not in self.dirty:
            self.dirty[key] = None

    def wait_s(self, now: float) -> float:
        return self.bucket.wait_s(now) if self.dirty else float("inf")
