"""Shards as the operator sees them: parsed from their heartbeat Leases (pure).

A shard is eligible for placement while its Lease is fresh and it is not draining (annotation
agentruntime.dev/draining="true").

Freshness never compares the Lease's renewTime (the shard's clock) with the operator's clock: the
operator notes, on its own monotonic clock, when it saw renewTime change, and the Lease expires
leaseDurationSeconds after that (client-go's leader election does the same with its
`observedTime`). So a shard or an operator whose wall clock is off by minutes neither expires early
nor lives on. renewTime values are only compared with each other (the same writer's clock): a
renewTime moved BACK is a shard that ended its Lease on a graceful stop
(`agent_runtime.kube.lease.Lease.give_up`), so it is expired at once. A Lease seen for the first
time (operator start, re-list) counts as renewed when seen: a dead shard's agents are re-placed at
most one duration after the operator starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent_runtime.kube.names import ADDRESS_ANNOTATION, DRAINING_ANNOTATION, POOL_LABEL


@dataclass(frozen=True, slots=True)
class Shard:
    namespace: str
    name: str
    pool: str
    address: str | None
    renew_time: str | None  # spec.renewTime as the shard wrote it (compared only with its own values)
    observed_at: float | None  # operator monotonic seconds when renew_time last changed; None = ended/never
    duration_s: float
    draining: bool

    @property
    def expires_at(self) -> float | None:
        """Operator monotonic time at which the Lease expires (None: not fresh at all)."""
        return None if self.observed_at is None else self.observed_at + self.duration_s

    def fresh(self, now: float) -> bool:
        """`now` is the operator's monotonic clock (the one `observe_lease` was given)."""
        expires = self.expires_at
        return expires is not None and now < expires

    def eligible(self, now: float) -> bool:
        return self.fresh(now) and not self.draining


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _observed_at(renew_time: str | None, previous: Shard | None, now: float) -> float | None:
    if renew_time is None or parse_time(renew_time) is None:
        return None  # never renewed (or unreadable): not fresh
    if previous is None or previous.renew_time is None:
        return now  # first sight: renewed as far as we can tell without trusting clocks
    if renew_time == previous.renew_time:
        return previous.observed_at  # an annotation change or a re-list: no renewal
    before, after = parse_time(previous.renew_time), parse_time(renew_time)
    if before is not None and after is not None and after < before:
        return None  # moved back: the shard ended its Lease (graceful stop)
    return now


def observe_lease(lease: dict[str, Any], now: float, previous: Shard | None = None) -> Shard | None:
    """The shard a Lease heartbeats for, or None when the Lease is not a pool shard's. `now` is the
    observer's monotonic clock; `previous` is what the same observer made of this Lease last time."""
    meta = lease.get("metadata") or {}
    pool = (meta.get("labels") or {}).get(POOL_LABEL)
    if not pool:
        return None
    annotations = meta.get("annotations") or {}
    spec = lease.get("spec") or {}
    renew_time = spec.get("renewTime") or spec.get("acquireTime") or None
    if previous is not None and (previous.namespace, previous.name) != (meta.get("namespace"), meta.get("name")):
        previous = None
    return Shard(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        pool=str(pool),
        address=annotations.get(ADDRESS_ANNOTATION) or None,
        renew_time=renew_time,
        observed_at=_observed_at(renew_time, previous, now),
        duration_s=float(spec.get("leaseDurationSeconds") or 15),
        draining=str(annotations.get(DRAINING_ANNOTATION, "")).lower() == "true",
    )


def ordinal(shard: str, pool: str) -> int | None:
    """The StatefulSet ordinal of `<pool>-<n>`, or None for a name of another form."""
    prefix = f"{pool}-"
    if not shard.startswith(prefix) or not shard[len(prefix):].isdigit():
        return None
    return int(shard[len(prefix):])
