"""The watch view without asyncio: which events give the planner something to look at (True: the
controller wakes it), and an agent's pending target across its own echoes."""

from __future__ import annotations

from typing import Any

from agent_operator.view import View

RENEW = "2026-11-25T10:00:00.000000Z"


def agent(rv: int, shard: str | None = None, turns: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"turns": turns}
    if shard:
        status.update(shard=shard, phase="Running")
    return {"metadata": {"namespace": "ns", "name": "a", "uid": "u", "resourceVersion": str(rv), "generation": 1},
            "spec": {"model": {"provider": "simulated", "name": "m"}}, "status": status}


def test_agent_events_wake_the_planner_only_when_placement_looks_at_what_changed() -> None:
    inflight: set[str] = set()
    v = View(lambda: 0.0, in_flight=inflight)
    assert v.on_agent("ADDED", agent(1, "p-0"))
    assert not v.on_agent("MODIFIED", agent(2, "p-0", turns=3))  # activity only
    assert v.agents["ns/a"].resource_version == 2  # ...still recorded
    assert v.on_agent("MODIFIED", agent(1, "p-1"))  # an older version: ignored, but planned again
    assert v.agents["ns/a"].status_shard == "p-0"
    v.agents["ns/a"].target = "p-1"
    inflight.add("ns/a")
    assert not v.on_agent("MODIFIED", agent(3, "p-0"))  # an event while our patch is in flight: target kept
    assert v.agents["ns/a"].target == "p-1"
    inflight.clear()
    v.on_agent("MODIFIED", agent(4, "p-1"))
    assert v.agents["ns/a"].target is None
    v.agents["ns/a"].target = "p-2"
    v.forget_target("ns/a")
    v.forget_target("ns/other")  # unknown keys are fine
    assert v.agents["ns/a"].target is None
    assert v.on_agent("DELETED", agent(5, "p-1")) and not v.agents


def test_pool_status_echoes_and_foreign_leases_do_not_wake_the_planner() -> None:
    now = [100.0]
    v = View(lambda: now[0], in_flight=set())
    body = {"metadata": {"namespace": "ns", "name": "p", "uid": "u", "generation": 1},
            "spec": {"region": "r", "shards": 2}}
    assert v.on_pool("ADDED", body)
    assert not v.on_pool("MODIFIED", {**body, "status": {"readyShards": 1}})  # same generation
    assert v.on_pool("MODIFIED", {**body, "metadata": {**body["metadata"], "generation": 2}, "spec": {"shards": 0}})
    assert v.pools[("ns", "p")].spec is None and "invalid spec" in v.pools[("ns", "p")].error
    assert v.regions() == {}
    assert not v.on_lease("ADDED", {"metadata": {"namespace": "ns", "name": "leader"}, "spec": {}})  # not a shard's
    lease = {"metadata": {"namespace": "ns", "name": "p-0", "labels": {"agentruntime.dev/pool": "p"}},
             "spec": {"holderIdentity": "p-0", "renewTime": RENEW, "leaseDurationSeconds": 15}}
    assert v.on_lease("ADDED", lease) and v.lease_changed == 100.0
    now[0] = 105.0
    assert v.on_lease("MODIFIED", lease) and v.lease_changed == 100.0  # wakes, but no eligibility change
    assert v.eligible("ns", "p", 114.9) == ["p-0"] and v.eligible("ns", "p", 115.0) == []
    assert v.on_pool("DELETED", body) and not v.pools
