"""Agent views, pool choice and the placement patches (pure)."""

from __future__ import annotations

from typing import Any

from agent_operator.agents import agent_view, choose_pool, finalizer_patch, pending_patch, placement_patch
from agent_operator.models import FINALIZER

NOW = "2026-11-25T10:00:00Z"


def body(**status: Any) -> dict[str, Any]:
    finalizers = status.pop("finalizers", [])
    return {"metadata": {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                         "finalizers": finalizers},
            "spec": {"model": {"region": "eu"}, "onDelete": "remove"}, "status": status}


def test_a_placement_is_one_status_patch_and_a_new_agent_gets_the_finalizer_once() -> None:
    view = agent_view(body())
    assert view.key == "ns/a" and view.region == "eu" and view.on_delete == "remove"
    status = placement_patch(view, "p-1", NOW)
    assert status is not None and set(status) == {"status"}  # no label: shards select on status.shard
    assert status["status"]["phase"] == "Placed" and status["status"]["shard"] == "p-1"
    (cond,) = status["status"]["conditions"]
    assert cond == {"type": "Placed", "status": "True", "reason": "Placed", "message": "placed on shard p-1",
                    "lastTransitionTime": NOW}
    assert finalizer_patch(view) == {"metadata": {"finalizers": [FINALIZER]}}
    kept = agent_view({**body(finalizers=["other/x", FINALIZER])})
    assert finalizer_patch(kept) is None
    others = agent_view({**body(finalizers=["other/x"])})
    assert finalizer_patch(others) == {"metadata": {"finalizers": ["other/x", FINALIZER]}}
    going = agent_view({**body(), "metadata": {**body()["metadata"], "deletionTimestamp": NOW}})
    assert finalizer_patch(going) is None  # never add a finalizer to an object being deleted


def test_already_placed_agent_needs_no_patch() -> None:
    cond = {"type": "Placed", "status": "True", "reason": "Placed", "message": "placed on shard p-1",
            "lastTransitionTime": NOW}
    view = agent_view(body(phase="Running", shard="p-1", conditions=[cond], finalizers=[FINALIZER]))
    assert placement_patch(view, "p-1", NOW) is None and finalizer_patch(view) is None


def test_shard_phase_and_ready_condition_survive_a_placement_repair() -> None:
    ready = {"type": "Ready", "status": "True", "reason": "Active", "message": "", "lastTransitionTime": NOW}
    view = agent_view(body(phase="Idle", shard="p-1", conditions=[ready], finalizers=[FINALIZER]))
    status = placement_patch(view, "p-1", "2026-11-25T11:00:00Z")
    assert status is not None and "phase" not in status["status"]  # Idle is the shard's to say
    assert [c["type"] for c in status["status"]["conditions"]] == ["Ready", "Placed"]


def test_moving_to_another_shard_resets_phase_to_placed() -> None:
    view = agent_view(body(phase="Running", shard="p-1", finalizers=[FINALIZER]))
    assert view.current == "p-1"
    status = placement_patch(view, "p-2", NOW)
    assert status is not None and status["status"]["phase"] == "Placed" and status["status"]["shard"] == "p-2"


def test_pending_clears_shard_and_says_why() -> None:
    view = agent_view(body(phase="Running", shard="p-1", finalizers=[FINALIZER]))
    status = pending_patch(view, "NoEligibleShard", "no shard", NOW)
    assert status is not None
    assert status["status"]["phase"] == "Pending" and status["status"]["shard"] is None
    assert status["status"]["conditions"][-1]["reason"] == "NoEligibleShard"


def test_choose_pool_by_name_region_or_the_only_one() -> None:
    v = agent_view(body())
    assert choose_pool(v, {"eu-pool": "eu", "us-pool": "us"}) == ("eu-pool", "")
    assert choose_pool(v, {"only": "us"}) == ("only", "")
    pool, why = choose_pool(v, {})
    assert pool is None and "no RuntimePool" in why
    pool, why = choose_pool(v, {"x": "us", "y": "ap"})
    assert pool is None and "set spec.runtimePool" in why
    named = agent_view({**body(), "spec": {"runtimePool": "nope"}})
    pool, why = choose_pool(named, {"x": "us"})
    assert pool is None and "'nope' not found" in why


def test_a_spec_the_schema_let_through_but_agentspec_refuses_fails_the_agent() -> None:
    bad = {**body(), "spec": {"tools": ["shell", "rm"]}}
    view = agent_view(bad)
    assert view.spec_error is not None and view.spec_error.startswith("spec.tools: ")
    assert "unknown tool(s) ['rm']" in view.spec_error
    status = pending_patch(view, "InvalidSpec", view.spec_error, NOW, phase="Failed")
    assert status is not None and status["status"]["phase"] == "Failed"
    assert status["status"]["conditions"][-1]["message"] == view.spec_error
    assert agent_view(body()).spec_error is None


def test_activity_does_not_touch_placement_fields_but_a_shard_change_does() -> None:
    from agent_operator.agents import placement_fields

    before = agent_view(body(phase="Running", shard="p-1", finalizers=[FINALIZER]))
    busy = agent_view({**body(phase="Running", shard="p-1", finalizers=[FINALIZER]),
                       "status": {"phase": "Running", "shard": "p-1", "turns": 9, "tokens": {"input": 5}}}, before)
    assert placement_fields(before) == placement_fields(busy)
    moved = agent_view(body(phase="Running", shard="p-2", finalizers=[FINALIZER]), before)
    assert placement_fields(before) != placement_fields(moved)
