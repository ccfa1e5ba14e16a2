"""Shards as the operator sees them: parsed from their heartbeat Leases (pure).

A shard is eligible for placement while its Lease is fresh (renewTime + leaseDurationSeconds is
in the future) and it is not draining (annotation agentruntime.dev/draining="true").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent_operator.models import ADDRESS_ANNOTATION, DRAINING_ANNOTATION, POOL_LABEL


@dataclass(frozen=True, slots=True)
class Shard:
    namespace: str
    name: str
    pool: str
    address: str | None
    renewed_at: float | None  # epoch seconds
    duration_s: float
    draining: bool

    @property
    def expires_at(self) -> float | None:
        return None if self.renewed_at is None else self.renewed_at + self.duration_s

    def fresh(self, now: float) -> bool:
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


def shard_from_lease(lease: dict[str, Any]) -> Shard | None:
    """The shard a Lease heartbeats for, or None when the Lease is not a pool shard's."""
    meta = lease.get("metadata") or {}
    pool = (meta.get("labels") or {}).get(POOL_LABEL)
    if not pool:
        return None
    annotations = meta.get("annotations") or {}
    spec = lease.get("spec") or {}
    return Shard(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        pool=str(pool),
        address=annotations.get(ADDRESS_ANNOTATION) or None,
        renewed_at=parse_time(spec.get("renewTime") or spec.get("acquireTime")),
        duration_s=float(spec.get("leaseDurationSeconds") or 15),
        draining=str(annotations.get(DRAINING_ANNOTATION, "")).lower() == "true",
    )


def ordinal(shard: str, pool: str) -> int | None:
    """The StatefulSet ordinal of `<pool>-<n>`, or None for a name of another form."""
    prefix = f"{pool}-"
    if not shard.startswith(prefix) or not shard[len(prefix):].isdigit():
        return None
    return int(shard[len(prefix):])
