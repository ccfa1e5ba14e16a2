"""An agent stays in the pool it was first placed in (status.pool): its log lives on that pool's
volume. A later spec.model.region or spec.runtimePool change is held, with the reason in the
Placed condition, instead of moving the agent to a pool whose volume has no log for it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from agent_operator.agents import agent_view, pinned_pool, placement_patch
from agent_operator.controller import Controller, Settings
from agent_operator.models import FINALIZER
from agent_runtime.kube.client import KubeClient
from agent_runtime.kube.config import KubeConfig

NOW = "2026-11-25T10:00:00Z"
POOLS = {"eu": "eu-west", "us": "us-east"}


def body(region: str, runtime_pool: str | None = None, generation: int = 1, **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"provider": "simulated", "region": region}}
    if runtime_pool:
        spec["runtimePool"] = runtime_pool
    return {"metadata": {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": str(generation),
                         "generation": generation, "finalizers": [FINALIZER]},
            "spec": spec, "status": status}


def test_a_never_placed_agent_goes_where_its_spec_says() -> None:
    assert pinned_pool(agent_view(body("us-east")), POOLS, None) == ("us", "", "")


def test_a_placed_agent_stays_in_its_pool_when_the_region_changes() -> None:
    view = agent_view(body("us-east", shard="eu-0", pool="eu", phase="Running"))
    pool, reason, note = pinned_pool(view, POOLS, "eu")
    assert (pool, reason) == ("eu", "")
    assert "spec asks for RuntimePool 'us'" in note and "log lives on RuntimePool 'eu'" in note
    patch = placement_patch(view, "eu-0", NOW, pool, note)
    assert patch is not None
    st = patch["status"]
    assert st["shard"] == "eu-0" and st["pool"] == "eu" and "phase" not in st  # Running stays
    (cond,) = st["conditions"]
    assert cond["reason"] == "PoolPinned" and cond["status"] == "True" and note in cond["message"]
    # the same held spec again: the object already says so, no write
    again = agent_view(body("us-east", shard="eu-0", pool="eu", phase="Running", conditions=st["conditions"]))
    assert placement_patch(again, "eu-0", NOW, "eu", note) is None
    # the spec goes back: the note goes away
    back = agent_view(body("eu-west", shard="eu-0", pool="eu", phase="Running", conditions=st["conditions"]))
    assert pinned_pool(back, POOLS, "eu") == ("eu", "", "")
    fixed = placement_patch(back, "eu-0", NOW, "eu", "")
    assert fixed is not None and fixed["status"]["conditions"][0]["reason"] == "Placed"


def test_a_runtime_pool_set_later_and_a_vanished_pool_are_held_too() -> None:
    view = agent_view(body("eu-west", runtime_pool="us", shard="eu-0", pool="eu"))
    pool, _, note = pinned_pool(view, POOLS, "eu")
    assert pool == "eu" and "'us'" in note
    pool, reason, _ = pinned_pool(view, {"us": "us-east"}, "eu")  # its pool was deleted
    assert pool is None and "RuntimePool 'eu'" in reason and "not found" in reason


def _lease(name: str, pool: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": {"name": name, "namespace": "ns", "labels": {"agentruntime.dev/pool": pool}},
            "spec": {"holderIdentity": name, "renewTime": now, "leaseDurationSeconds": 60}}


async def _planned(status: dict[str, Any], region: str) -> list[dict[str, Any]]:
    """The status patches one planner step sends for agent `a` (the patch requests recorded, not sent)."""
    ctl = Controller(KubeClient(KubeConfig("http://127.0.0.1:9")), Settings(namespaces=("ns",), manage_pools=False),
                     clock=time.time)
    for name, region_of in POOLS.items():
        ctl.on_pool("ADDED", {"metadata": {"namespace": "ns", "name": name, "uid": name, "generation": 1},
                              "spec": {"region": region_of, "shards": 1}})
        ctl.on_lease("ADDED", _lease(f"{name}-0", name))
    ctl.on_agent("ADDED", body(region, generation=2, **status))
    sent: list[dict[str, Any]] = []

    async def record(agent: Any, status_patch: dict[str, Any] | None, meta_patch: dict[str, Any] | None) -> None:
        if status_patch is not None:
            sent.append(status_patch["status"])

    ctl.writes.patch = record  # type: ignore[method-assign]
    await ctl.step()
    while not ctl.work.queue.empty():
        _, job = ctl.work.queue.get_nowait()
        await job()
    return sent


async def test_the_planner_holds_a_region_change_instead_of_moving_the_agent() -> None:
    placed = {"shard": "eu-0", "pool": "eu", "phase": "Running",
              "conditions": [{"type": "Placed", "status": "True", "reason": "Placed", "message": "placed on shard eu-0"}]}
    (st,) = await _planned(placed, "us-east")
    assert st["shard"] == "eu-0" and st["pool"] == "eu"  # not moved to us-0, whose volume lacks its log
    assert st["conditions"][-1]["reason"] == "PoolPinned"


async def test_an_agent_placed_before_status_pool_existed_is_pinned_by_its_shard() -> None:
    placed = {"shard": "eu-0", "phase": "Running",
              "conditions": [{"type": "Placed", "status": "True", "reason": "Placed", "message": "placed on shard eu-0"}]}
    (st,) = await _planned(placed, "us-east")
    assert st["shard"] == "eu-0" and st["pool"] == "eu"


async def test_a_new_agent_gets_its_pool_recorded_at_first_placement() -> None:
    (st,) = await _planned({}, "us-east")
    assert st["shard"] == "us-0" and st["pool"] == "us" and st["phase"] == "Placed"


async def test_a_well_placed_legacy_agent_costs_no_write() -> None:
    """Placed before status.pool existed, spec agreeing: nothing to send (with a CRD not yet upgraded
    the field would be pruned and a write for it would repeat every step)."""
    placed = {"shard": "eu-0", "phase": "Running",
              "conditions": [{"type": "Placed", "status": "True", "reason": "Placed", "message": "placed on shard eu-0"}]}
    assert await _planned(placed, "eu-west") == []
