"""What the watches report, held as the planner reads it: Agents, RuntimePools and shards (pure).

The watches (kopf's handlers for pools and Leases, a Reflector for Agents) hand every object to
`View.on_agent` / `on_pool` / `on_lease`, which update the in-memory view and answer whether
anything changed that the planner must look at (activity-only Agent events and status echoes of
pools do not). No IO and no asyncio: the controller wakes its planner on a True answer.

Lease expiry runs on the operator's own clock (`shards.observe_lease`); `lease_changed` is when a
Lease last changed which shards are eligible (the planner waits for a quiet moment after one).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from agent_operator import agents as agents_mod
from agent_operator.models import RuntimePoolSpec
from agent_operator.shards import Shard, observe_lease

log = logging.getLogger("agent_operator")


def now_iso() -> str:
    """The wall clock as the operator writes it into conditions and pool status."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class PoolView:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: RuntimePoolSpec | None
    error: str = ""
    applied: str = ""  # fingerprint of the last converged desired state
    status: dict[str, Any] = field(default_factory=dict)
    status_at: float = 0.0


class View:
    """The operator's picture of the cluster. `in_flight`: the keys whose write is under way (an
    Agent's pending `target` is kept across its own echoes while its patch is in flight)."""

    def __init__(self, clock: Callable[[], float], in_flight: Container[str]) -> None:
        self.clock = clock
        self.in_flight = in_flight
        self.agents: dict[str, agents_mod.AgentView] = {}
        self.pools: dict[tuple[str, str], PoolView] = {}
        self.shards: dict[tuple[str, str], Shard] = {}
        self.lease_changed = float("-inf")  # when a Lease last changed which shards are eligible

    # ---- watch input: True when the planner has something to look at ------------------------------

    def on_agent(self, event_type: str | None, body: dict[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        old = self.agents.get(f"{meta.get('namespace')}/{meta.get('name')}")
        view = agents_mod.agent_view(body, old)
        if event_type == "DELETED":
            self.agents.pop(view.key, None)
        elif old is None or view.resource_version >= old.resource_version:
            if old is not None and old.uid == view.uid:
                view.target = old.target if view.key in self.in_flight else None
            self.agents[view.key] = view
            if old is not None and agents_mod.placement_fields(old) == agents_mod.placement_fields(view):
                return False  # activity only (turns, tokens, Ready): nothing to plan
        return True

    def on_pool(self, event_type: str | None, body: dict[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            self.pools.pop(key, None)
            return True
        old = self.pools.get(key)
        generation = int(meta.get("generation") or 0)
        if old is not None and old.uid == meta.get("uid") and old.generation == generation:
            return False  # a status echo
        try:
            spec, error = RuntimePoolSpec.model_validate(body.get("spec") or {}), ""
        except ValidationError as exc:
            spec, error = None, f"invalid spec: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
        self.pools[key] = PoolView(key[0], key[1], str(meta.get("uid", "")), generation, spec, error,
                                   status=dict(body.get("status") or {}))
        return True

    def on_lease(self, event_type: str | None, body: dict[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        now = self.clock()
        old = self.shards.get(key)
        shard = observe_lease(body, now, old)  # expiry on our own clock
        if shard is None:
            return False
        if event_type == "DELETED":
            self.shards.pop(key, None)
        else:
            self.shards[key] = shard
        if (old is None or event_type == "DELETED" or old.eligible(now) != shard.eligible(now)
                or old.fresh(now) != shard.fresh(now)):
            self.lease_changed = now
            log.info("shard %s/%s: %s", shard.namespace, shard.name, "gone" if event_type == "DELETED" else
                     "eligible" if shard.eligible(now) else "draining" if shard.fresh(now) else "expired")
        return True

    def forget_target(self, key: str) -> None:
        """The write that was to put agent `key` on its target failed: count it where its object says."""
        agent = self.agents.get(key)
        if agent is not None:
            agent.target = None

    # ---- questions the planner and the pools ask --------------------------------------------------

    def eligible(self, namespace: str, pool: str, now: float) -> list[str]:
        """The pool's shards with a fresh Lease that are not draining."""
        return [s.name for (ns, _), s in self.shards.items() if ns == namespace and s.pool == pool and s.eligible(now)]

    def pool_shards(self, namespace: str, pool: str) -> list[str]:
        """Every shard of the pool that has a Lease (fresh or not, draining or not)."""
        return [s.name for (ns, _), s in self.shards.items() if ns == namespace and s.pool == pool]

    def regions(self) -> dict[str, dict[str, str]]:
        """namespace -> {pool name: region} of the pools whose spec is valid."""
        out: dict[str, dict[str, str]] = defaultdict(dict)
        for (ns, name), pool in self.pools.items():
            if pool.spec is not None:
                out[ns][name] = pool.spec.region
        return out

    def pinned_pool(self, agent: agents_mod.AgentView) -> str | None:
        """The pool whose volume holds the agent's log: status.pool, else (placed before status.pool
        existed) the pool of the shard it is on, else None (never placed)."""
        if agent.status_pool is not None:
            return agent.status_pool
        if agent.status_shard is not None:
            shard = self.shards.get((agent.namespace, agent.status_shard))
            if shard is not None:
                return shard.pool
        return None
