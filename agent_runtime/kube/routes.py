"""The router's table, sans-IO: which shard owns which agent, and where each shard listens.

Fed by the router's watches on Agents (`status.shard`) and shard Leases (address annotation,
renewTime, duration). `resolve` answers one request without calling the apiserver; `set_agent`
returns whether an agent moved, so the router closes that agent's client sockets (1012).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from agent_runtime import errors
from agent_runtime.kube.names import ADDRESS_ANNOTATION, DRAINING_ANNOTATION


@dataclasses.dataclass(frozen=True, slots=True)
class ShardInfo:
    name: str
    address: str | None
    renewed: float  # unix seconds
    duration_s: float
    draining: bool = False

    def alive(self, now: float) -> bool:
        return self.renewed + self.duration_s > now


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    key: str
    shard: str
    address: str


class RouteError(errors.Error, code="shard_unavailable"):
    """Why a request cannot be routed: `code` is `agent_not_found`, `agent_not_placed` or
    `shard_unavailable` (HTTP status and retryability from `errors.CODES`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)

    @property
    def status(self) -> int:
        """The HTTP status (`http_status`)."""
        return self.http_status


def parse_time(value: str | None) -> float:
    if not value:
        return 0.0
    text = value.replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text).timestamp()


def shard_from_lease(lease: dict[str, Any]) -> ShardInfo:
    meta = lease.get("metadata") or {}
    spec = lease.get("spec") or {}
    ann = meta.get("annotations") or {}
    return ShardInfo(
        name=str(meta.get("name", "")),
        address=ann.get(ADDRESS_ANNOTATION),
        renewed=parse_time(spec.get("renewTime") or spec.get("acquireTime")),
        duration_s=float(spec.get("leaseDurationSeconds") or 15),
        draining=ann.get(DRAINING_ANNOTATION) == "true",
    )


class RouteTable:
    def __init__(self) -> None:
        self.agents: dict[str, str | None] = {}  # "ns/name" -> shard (None: not placed)
        self.shards: dict[str, ShardInfo] = {}  # "ns/shard" -> info

    def set_agent(self, key: str, shard: str | None) -> bool:
        """Record the agent's shard; True if it moved away from a shard it had (or lost it)."""
        old = self.agents.get(key)
        self.agents[key] = shard
        return old is not None and old != shard

    def remove_agent(self, key: str) -> bool:
        """True if the agent was known (its clients should be told)."""
        if key not in self.agents:
            return False
        del self.agents[key]
        return True

    def set_shard(self, namespace: str, info: ShardInfo) -> None:
        self.shards[f"{namespace}/{info.name}"] = info

    def remove_shard(self, namespace: str, name: str) -> None:
        self.shards.pop(f"{namespace}/{name}", None)

    def resolve(self, namespace: str, name: str, now: float) -> Route:
        key = f"{namespace}/{name}"
        if key not in self.agents:
            raise RouteError("agent_not_found", f"no agent {key!r}")
        shard = self.agents[key]
        if not shard:
            raise RouteError("agent_not_placed", f"agent {key} is not placed on a shard yet; retry")
        info = self.shards.get(f"{namespace}/{shard}")
        if info is None or not info.address:
            raise RouteError("shard_unavailable", f"shard {shard} of agent {key} has no Lease/address; retry")
        if not info.alive(now):
            raise RouteError("shard_unavailable", f"shard {shard} of agent {key} is not renewing its Lease; retry")
        return Route(key, shard, info.address.rstrip("/"))


def agent_shard(obj: dict[str, Any]) -> str | None:
    """The shard an Agent object is placed on (status.shard, as the operator writes it)."""
    status = obj.get("status") or {}
    shard = status.get("shard")
    return str(shard) if shard else None
