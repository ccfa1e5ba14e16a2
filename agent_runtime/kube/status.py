"""Agent status reporting, sans-IO: what a shard patches into `Agent.status`, coalesced and
rate-limited.

The shard observes each agent's status every flush interval (`observe`); only statuses that differ
from what was last patched are dirty; `take(now)` hands out at most one patch per dirty agent
within a token bucket (the per-shard patch-rate cap). So 1,000 busy agents cost at most `rate`
patches per second, each carrying the agent's latest status; an idle agent costs none.

Two classes share that one bucket, most urgent first:
- a **transition** (the first report of an agent that arrived, a phase or readiness change, or
  a report someone overwrote) goes before any activity report, oldest first;
- an **activity** report (only turns / tokens / lastActivity changed) waits while a re-placement
  storm is on — at least `storm_min` agents arrived on or left this shard within `hold_s`
  (`note_transition`; one agent created now and then is no storm), and `hold_s` after the last
  of them — or while transitions are queued. Held reports keep coalescing (still one patch per
  agent, with its latest numbers); one held longer than `max_hold_s` goes anyway (after the
  transitions), so endless churn cannot starve activity reports for good. A draining shard
  (`draining`, from its Lease) holds them from the moment it is told, before the first agent has
  left: its agents are about to move, and their new owners report them whole.
During a drain the necessary writes (the operator's placements, the new owners' first reports)
then compete with no activity patches, and the cap stays what it was.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import OrderedDict, deque
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
    compressions: int = 0  # frozen chunks made (docs/compression.md)
    cost_units: int = 0  # estimated cost in input-token units (agent_runtime.pricing), rounded

    def fields(self) -> dict[str, Any]:
        """The merge-patch body's status fields (camelCase, as in the CRD); conditions are added by the shell."""
        out: dict[str, Any] = {
            "phase": self.phase,
            "turns": self.turns,
            "tokens": {"input": self.tokens.input, "output": self.tokens.output,
                       "cacheRead": self.tokens.cache_read, "cacheWrite": self.tokens.cache_write},
            "cachedShare": self.tokens.cached_share(),
            "compressions": self.compressions,
            "costUnits": self.cost_units,
        }
        if self.last_activity > 0:
            out["lastActivity"] = rfc3339(self.last_activity)
        return out


def owned_status_patch(shard: str, fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) a shard sends: it applies only while `status.shard` still names
    `shard` (a `test` op first; the apiserver answers 422 otherwise), so a late report from a shard
    the agent has left cannot overwrite what the operator or the new owner wrote. Each field is an
    `add` (replaces a member that exists, creates one that does not); nothing else is touched."""
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/status/shard", "value": shard}]
    ops += [{"op": "add", "path": f"/status/{name}", "value": value} for name, value in fields.items()]
    return ops


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
    """Latest desired status per agent vs. last patched; hands out rate-limited, coalesced patches,
    transitions before activity. An agent's first report from this shard (it arrived: placed here,
    or moved here by a drain) has its own bucket (`arrival_rate`): arrivals happen only on placement,
    so they add nothing in steady state, and a re-placement storm's first `Running` reports do not
    queue behind the shard's everyday cap."""

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0, hold_s: float = 2.0,
                 storm_min: int = 4, max_hold_s: float = 30.0, arrival_rate: float | None = None) -> None:
        self.bucket = TokenBucket(rate, burst, now)
        # no arrival rate: first reports share the one cap (they still go first)
        self.arrivals = TokenBucket(arrival_rate, arrival_rate, now) if arrival_rate else self.bucket
        self.hold_s = hold_s
        self.storm_min = max(1, storm_min)
        self.max_hold_s = max_hold_s
        self._recent: deque[float] = deque(maxlen=self.storm_min)  # times of the latest transitions
        self.desired: dict[str, AgentStatus] = {}
        self.sent: dict[str, AgentStatus] = {}
        self.transitions: OrderedDict[str, None] = OrderedDict()  # oldest first
        # activity-only changes, oldest first; value: when `take` first saw it waiting (None: not yet)
        self.activity: OrderedDict[str, float | None] = OrderedDict()
        self.in_flight: set[str] = set()
        self.storm_until = float("-inf")
        self.draining = False  # this shard's Lease says draining: its agents are about to leave
        # reports the apiserver refused (status.shard names another shard): not observed again
        # until the watch says the agent is placed here (`owned`) or gone (`forget`)
        self.disowned: set[str] = set()
        self.observed = 0
        self.patches = 0

    @property
    def dirty(self) -> set[str]:
        """Every agent with something to report."""
        return set(self.transitions) | set(self.activity)

    def is_transition(self, key: str, status: AgentStatus) -> bool:
        """Whether reporting `status` is a transition (first report, phase or readiness change)."""
        sent = self.sent.get(key)
        return sent is None or sent.phase != status.phase or sent.ready != status.ready

    def _mark(self, key: str) -> None:
        """Queue `key` in the class its desired status calls for (a transition outranks activity)."""
        if key in self.transitions:
            return
        if self.is_transition(key, self.desired[key]):
            self.activity.pop(key, None)
            self.transitions[key] = None
        elif key not in self.activity:
            self.activity[key] = None

    def _clear(self, key: str) -> None:
        self.transitions.pop(key, None)
        self.activity.pop(key, None)

    def observe(self, key: str, status: AgentStatus) -> None:
        if key in self.disowned:
            return  # it has moved on; the watch will say so (each retry would be refused)
        self.observed += 1
        self.desired[key] = status
        if self.sent.get(key) != status:
            self._mark(key)
        else:
            self._clear(key)

    def note_transition(self, now: float) -> None:
        """An agent arrived on or left this shard; `storm_min` of them within `hold_s` make a storm,
        which holds activity reports until `hold_s` after the latest one."""
        self._recent.append(now)
        if len(self._recent) == self.storm_min and now - self._recent[0] <= self.hold_s:
            self.storm_until = max(self.storm_until, now + self.hold_s)

    def holding(self, now: float) -> bool:
        """Whether activity reports wait (a re-placement storm is on, or transitions are queued)."""
        return self.draining or now < self.storm_until or any(k not in self.in_flight for k in self.transitions)

    def invalidate(self, key: str) -> None:
        """What the apiserver holds is not what we sent (someone overwrote it): patch again, urgently."""
        if self.sent.pop(key, None) is not None and key in self.desired:
            self._mark(key)

    def forget(self, key: str) -> None:
        """The agent left this shard: nothing more to report for it."""
        self.desired.pop(key, None)
        self.sent.pop(key, None)
        self._clear(key)
        self.disowned.discard(key)

    def refused(self, key: str) -> None:
        """The apiserver refused a report of `key` because another shard owns it now: drop it and
        ignore its observations until `owned` (our watch has not delivered the move yet)."""
        self.forget(key)
        self.disowned.add(key)

    def owned(self, key: str) -> None:
        """The watch says `key` is placed on this shard (again): report it."""
        self.disowned.discard(key)

    def take(self, now: float, limit: int | None = None) -> list[tuple[str, AgentStatus]]:
        """The patches to send now: each dirty agent at most once, with its latest status;
        arrivals (first reports, their own bucket), then other transitions, then activity (unless
        held)."""
        pending = [k for k in self.transitions if k not in self.in_flight]
        arrivals = [k for k in pending if k not in self.sent]
        ready = [k for k in pending if k in self.sent]
        holding = self.holding(now)
        for key, since in self.activity.items():
            if since is None:
                self.activity[key] = since = now
            if key not in self.in_flight and (not holding or now - since >= self.max_hold_s):
                ready.append(key)
        if limit is not None:
            arrivals = arrivals[:limit]
            ready = ready[: max(0, limit - len(arrivals))]
        chosen = arrivals[: self.arrivals.take(now, len(arrivals))] + ready[: self.bucket.take(now, len(ready))]
        out: list[tuple[str, AgentStatus]] = []
        for key in chosen:
            self._clear(key)
            self.in_flight.add(key)
            out.append((key, self.desired[key]))
        return out

    def done(self, key: str, status: AgentStatus, ok: bool) -> None:
        """A patch finished: remember it, or (failed) queue the agent again."""
        self.in_flight.discard(key)
        if key not in self.desired:
            return  # forgotten meanwhile
        if ok:
            self.patches += 1
            self.sent[key] = status
            if self.desired[key] == status:
                self._clear(key)
                return
        self._mark(key)

    def wait_s(self, now: float) -> float:
        """Seconds until `take` may hand out something (inf: nothing to report)."""
        pending = [k for k in self.transitions if k not in self.in_flight]
        waits = [float("inf")]
        if any(k not in self.sent for k in pending):
            waits.append(self.arrivals.wait_s(now))
        if any(k in self.sent for k in pending):
            waits.append(self.bucket.wait_s(now))
        elif self.activity and not pending:
            if not self.holding(now):
                waits.append(self.bucket.wait_s(now))
            else:
                oldest = min((t for t in self.activity.values() if t is not None), default=now)
                held_until = oldest + self.max_hold_s if self.draining else min(self.storm_until, oldest + self.max_hold_s)
                waits.append(max(self.bucket.wait_s(now), held_until - now))
        elif self.activity:  # activity waits while transitions are queued: after them
            oldest = min((t for t in self.activity.values() if t is not None), default=now)
            waits.append(max(self.bucket.wait_s(now), oldest + self.max_hold_s - now))
        return min(waits)
