"""The planning step as pure decisions (no asyncio, no queue): a `View` fed watch events, a
`Planner`, and the `Step` it returns. Which decision each kind of Agent gets, their order, the
settling rule for balance moves, the wake-up deadline, and properties over random pools: every
placement lands on an eligible shard, no shard goes over its capacity, and while the set of
eligible shards is changing no agent on an eligible shard is moved."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_operator.models import FINALIZER
from agent_operator.planner import EligibleHistory, Finalize, Pending, Place, Planner, PoolMoves
from agent_operator.view import View

RENEW = "2026-11-25T10:00:00.000000Z"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool(name: str = "p", shards: int = 4, capacity: int = 100, region: str = "r") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}", "generation": 1},
            "spec": {"region": region, "shards": shards, "capacityPerShard": capacity}}


def lease(name: str, pool_name: str = "p", draining: bool = False) -> dict[str, Any]:
    ann = {"agentruntime.dev/draining": "true"} if draining else {}
    return {"metadata": {"name": name, "namespace": "ns", "labels": {"agentruntime.dev/pool": pool_name},
                         "annotations": ann},
            "spec": {"holderIdentity": name, "renewTime": RENEW, "leaseDurationSeconds": 15}}


def agent(name: str, shard: str | None = None, finalizers: tuple[str, ...] = (FINALIZER,), deleting: bool = False,
          spec: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if shard is not None:
        status = {"shard": shard, "pool": "p", "phase": "Running", "conditions": [
            {"type": "Placed", "status": "True", "reason": "Placed", "message": f"placed on shard {shard}"}]}
    meta: dict[str, Any] = {"namespace": "ns", "name": name, "uid": f"u-{name}", "resourceVersion": "1",
                            "generation": 1, "finalizers": list(finalizers)}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-25T10:00:00Z"
    return {"metadata": meta, "spec": spec or {"model": {"provider": "simulated", "name": "m"}}, "status": status}


def view(clock: Clock, shards: int = 2, capacity: int = 100) -> View:
    v = View(clock, in_flight=set())
    v.on_pool("ADDED", pool(shards=shards, capacity=capacity))
    for i in range(shards):
        v.on_lease("ADDED", lease(f"p-{i}"))
    return v


def settled_planner(v: View, clock: Clock) -> Planner:
    """A planner that has seen the pool's current shards for longer than rebalance_after_s."""
    planner = Planner(rebalance_after_s=2.0)
    planner.plan(v, clock.now)
    clock.now += 2.0
    return planner


def test_each_kind_of_agent_gets_its_decision_in_order() -> None:
    clock = Clock()
    v = view(clock)
    v.on_agent("ADDED", agent("gone", deleting=True))
    v.on_agent("ADDED", agent("gone-done", deleting=True, finalizers=()))  # finalized already: nothing
    v.on_agent("ADDED", agent("bad", spec={"model": {"provider": "simulated"}, "limits": {"maxTurns": 0}}))
    v.on_agent("ADDED", agent("lost", spec={"model": {"provider": "simulated"}, "runtimePool": "nope"}))
    v.on_agent("ADDED", agent("new"))
    v.on_agent("ADDED", agent("home", shard="p-1"))  # where it belongs, and its object says so
    v.on_agent("ADDED", agent("unsaid", shard="p-0", finalizers=()))  # where it belongs, without our finalizer
    step = settled_planner(v, clock).plan(v, clock.now)
    kinds = [(type(d).__name__, None if isinstance(d, PoolMoves) else d.agent.name) for d in step.decisions]
    assert kinds[:3] == [("Finalize", "gone"), ("Pending", "bad"), ("Pending", "lost")]
    assert kinds[3] == ("PoolMoves", None) and kinds[4] == ("Place", "new")
    bad, lost = step.decisions[1], step.decisions[2]
    assert isinstance(bad, Pending) and (bad.reason, bad.phase) == ("InvalidSpec", "Failed")
    assert bad.message.startswith("spec.limits.maxTurns")
    assert isinstance(lost, Pending) and lost.reason == "NoRuntimePool" and "'nope' not found" in lost.message
    unsaid = [d for d in step.decisions if isinstance(d, Place) and d.agent.name == "unsaid"]
    assert unsaid == [Place(v.agents["ns/unsaid"], "p-0", "p", "")] and kinds[-1] == ("Place", "unsaid")
    assert not any(getattr(d, "agent", None) is v.agents["ns/home"] for d in step.decisions)
    assert set(step.by_pool[("ns", "p")]) == {"ns/new", "ns/home", "ns/unsaid"}


def test_no_eligible_shard_and_a_full_pool_are_pending_with_the_reason() -> None:
    clock = Clock()
    v = view(clock, shards=0)
    v.on_agent("ADDED", agent("a"))
    (d,) = Planner().plan(v, clock.now).decisions
    assert isinstance(d, Pending) and d.reason == "NoEligibleShard"
    assert d.message == "no shard of RuntimePool p has a fresh Lease and is not draining"

    v = view(clock, shards=1, capacity=1)
    v.on_agent("ADDED", agent("a"))
    v.on_agent("ADDED", agent("b"))
    step = Planner().plan(v, clock.now)
    moves = [d for d in step.decisions if isinstance(d, PoolMoves)]
    assert len(moves) == 1 and (moves[0].moves, moves[0].unplaced, moves[0].bound) == (1, 1, 1)
    (full,) = [d for d in step.decisions if isinstance(d, Pending)]
    assert full.reason == "PoolFull" and full.message == "RuntimePool p is full (1 shards x 1 agents)"


def test_a_lost_shards_agents_move_at_once_but_balance_moves_wait_for_the_shards_to_settle() -> None:
    clock = Clock()
    v = view(clock, shards=2)
    for i in range(20):
        v.on_agent("ADDED", agent(f"a{i}", shard=f"p-{i % 2}"))
    planner = settled_planner(v, clock)
    assert planner.plan(v, clock.now).decisions == []
    v.on_lease("ADDED", lease("p-2"))  # a shard added...
    v.on_lease("MODIFIED", lease("p-1", draining=True))  # ...and one drained
    step = planner.plan(v, clock.now)
    (moves,) = [d for d in step.decisions if isinstance(d, PoolMoves)]
    assert not moves.rebalance and moves.moves == 10
    assert {d.agent.name for d in step.decisions if isinstance(d, Place)} == {f"a{i}" for i in range(1, 20, 2)}
    assert planner.next_deadline(v, [], clock.now) == pytest.approx(2.01)  # wakes when the set has settled


def test_eligible_history_settles_after_the_set_stayed_the_same() -> None:
    history = EligibleHistory()
    assert not history.settled("ns", "p", ["a", "b"], 10.0, after_s=2.0)
    assert not history.settled("ns", "p", ["b", "a"], 11.9, after_s=2.0)  # same set, any order
    assert history.settled("ns", "p", ["a", "b"], 12.0, after_s=2.0)
    assert not history.settled("ns", "p", ["a"], 12.5, after_s=2.0)  # changed: the clock restarts
    assert list(history.settle_times(2.0)) == [14.5]
    assert history.settled("ns", "q", [], 12.5, after_s=0.0)  # pools are tracked apart


def test_the_next_deadline_is_the_earliest_wake_up_plus_10ms() -> None:
    clock = Clock()
    v = View(clock, in_flight=set())
    planner = Planner()
    assert planner.next_deadline(v, [], clock.now) is None
    v.on_lease("ADDED", lease("p-0"))  # expires 15 s after it was seen
    assert planner.next_deadline(v, [], clock.now) == pytest.approx(15.01)
    assert planner.next_deadline(v, [clock.now + 3.0], clock.now) == pytest.approx(3.01)
    assert planner.next_deadline(v, [clock.now - 1.0], clock.now) == 0.01  # an overdue retry: at once


SHARDS = [f"p-{i}" for i in range(6)]


@given(states=st.lists(st.sampled_from(["eligible", "draining", "no lease"]), min_size=6, max_size=6),
       placed=st.lists(st.one_of(st.none(), st.sampled_from(SHARDS)), max_size=40), capacity=st.integers(1, 12),
       settled=st.booleans())
def test_plans_respect_eligibility_capacity_and_the_settling_rule(
        states: list[str], placed: list[str | None], capacity: int, settled: bool) -> None:
    clock = Clock()
    v = View(clock, in_flight=set())
    v.on_pool("ADDED", pool(shards=6, capacity=capacity))
    for name, state in zip(SHARDS, states, strict=True):
        if state != "no lease":
            v.on_lease("ADDED", lease(name, draining=state == "draining"))
    for i, shard in enumerate(placed):
        v.on_agent("ADDED", agent(f"a{i}", shard=shard))
    ok = {name for name, state in zip(SHARDS, states, strict=True) if state == "eligible"}
    planner = Planner(rebalance_after_s=2.0)
    if settled:
        planner.plan(v, clock.now)
        clock.now += 2.0
    step = planner.plan(v, clock.now)

    decided: dict[str, Place | Pending] = {}
    for decision in step.decisions:
        if isinstance(decision, Place | Pending):
            decided.setdefault(decision.agent.key, decision)  # the first write for a key is the one carried out
    current = step.by_pool[("ns", "p")]
    assert set(current) == set(v.agents)
    final: dict[str, str | None] = {}
    for key, on in current.items():
        d = decided.get(key)
        final[key] = d.shard if isinstance(d, Place) else None if isinstance(d, Pending) else on
        assert final[key] is None or final[key] in ok  # only ever on a fresh, non-draining shard
        assert final[key] is not None or isinstance(d, Pending)  # no shard: the object says why
        if not settled and on in ok:
            assert final[key] == on  # shards changing: agents on eligible shards stay
    for shard in ok:
        load = sum(1 for s in final.values() if s == shard)
        before = sum(1 for s in current.values() if s == shard)
        assert load <= (capacity if settled else max(capacity, before))  # never over capacity by a move
