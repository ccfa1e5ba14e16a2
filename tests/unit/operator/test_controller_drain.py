"""The planner during a drain (no IO: steps on a controller whose queue nobody drains).

The Lease writes of one drain (standby shards opened, old shards closed) may be seen in separate
plans; while the set of eligible shards is changing, only agents that must move are planned, so
every agent moves once, straight to its final shard. Balance moves follow once the set has been
stable for `rebalance_after_s`. Lease expiry runs on the controller's own clock."""

from __future__ import annotations

from typing import Any

import pytest

from agent_operator.controller import Controller, Settings
from agent_operator.planner import lease_quiet_wait
from agent_runtime.kube.client import KubeClient
from agent_runtime.kube.config import KubeConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lease(name: str, renew: str, draining: bool = False) -> dict[str, Any]:
    ann = {"agentruntime.dev/draining": "true"} if draining else {}
    return {"metadata": {"name": name, "namespace": "ns", "labels": {"agentruntime.dev/pool": "p"},
                         "annotations": ann},
            "spec": {"holderIdentity": name, "renewTime": renew, "leaseDurationSeconds": 15}}


def agent(i: int, shard: str | None) -> dict[str, Any]:
    status = {"shard": shard, "phase": "Running"} if shard else {}
    return {"metadata": {"namespace": "ns", "name": f"a{i}", "uid": f"u{i}", "resourceVersion": "1", "generation": 1,
                         "finalizers": ["agentruntime.dev/finalizer"]},
            "spec": {"model": {"provider": "simulated", "name": "m"}}, "status": status}


def controller(clock: Clock) -> Controller:
    ctl = Controller(KubeClient(KubeConfig("http://127.0.0.1:9")),
                     Settings(namespaces=("ns",), manage_pools=False, rebalance_after_s=2.0), clock=clock)
    ctl.on_pool("ADDED", {"metadata": {"namespace": "ns", "name": "p", "uid": "u", "generation": 1},
                          "spec": {"region": "r", "shards": 8, "capacityPerShard": 100}})
    return ctl


def queued(ctl: Controller) -> dict[str, str | None]:
    """Drain the job queue; the agents' targets say where each queued patch puts it."""
    keys = []
    while not ctl.work.queue.empty():
        keys.append(ctl.work.queue.get_nowait()[0])
    ctl.work.inflight.clear()  # (as if every patch landed)
    out = {k: ctl.agents[k].target for k in keys}
    for k, target in out.items():
        ctl.agents[k].status_shard = target
        ctl.agents[k].target = None
    return out


async def test_a_drain_seen_in_several_plans_moves_every_agent_once() -> None:
    clock = Clock()
    ctl = controller(clock)
    old, new = [f"p-{i}" for i in range(4)], [f"p-{i}" for i in range(4, 8)]
    for s in old:
        ctl.on_lease("ADDED", lease(s, "2026-11-25T10:00:00.000000Z"))
    for s in new:
        ctl.on_lease("ADDED", lease(s, "2026-11-25T10:00:00.000000Z", draining=True))
    for i in range(200):
        ctl.on_agent("ADDED", agent(i, old[i % 4]))
    clock.now += 3
    await ctl.step()
    assert queued(ctl) == {}  # settled and balanced: nothing to do
    moves: dict[str, list[str | None]] = {}
    # the drain's 8 Lease writes, seen in 8 plans 0.1 s apart: standby shards open, then old ones close
    states = [(s, False) for s in new] + [(s, True) for s in old]
    for name, draining in states:
        clock.now += 0.1
        ctl.on_lease("MODIFIED", lease(name, "2026-11-25T10:00:00.000000Z", draining=draining))
        await ctl.step()
        for key, target in queued(ctl).items():
            moves.setdefault(key, []).append(target)
    assert len(moves) == 200 and all(len(m) == 1 and m[0] in new for m in moves.values())
    clock.now += 2.0  # settled: a balance pass finds nothing to move (every agent is on its best shard)
    await ctl.step()
    assert queued(ctl) == {}


async def test_balance_moves_wait_until_the_shards_are_stable() -> None:
    clock = Clock()
    ctl = controller(clock)
    for s in ("p-0", "p-1"):
        ctl.on_lease("ADDED", lease(s, "2026-11-25T10:00:00.000000Z"))
    for i in range(100):
        ctl.on_agent("ADDED", agent(i, f"p-{i % 2}"))
    clock.now += 3
    await ctl.step()
    ctl.on_lease("ADDED", lease("p-2", "2026-11-25T10:00:00.000000Z"))  # a shard added
    await ctl.step()
    assert queued(ctl) == {}
    assert ctl._next_deadline() is not None and ctl._next_deadline() <= 2.02  # noqa: SLF001  (wakes to rebalance)
    clock.now += 2.0
    await ctl.step()
    moved = queued(ctl)
    assert 25 <= len(moved) <= 40 and set(moved.values()) == {"p-2"}


async def test_lease_expiry_is_one_duration_of_the_operators_clock_after_the_last_renewal() -> None:
    clock = Clock()
    ctl = controller(clock)
    # a renewTime far in the past (a shard whose clock is an hour behind): still fresh when seen
    ctl.on_lease("ADDED", lease("p-0", "2026-11-25T09:00:00.000000Z"))
    ctl.on_agent("ADDED", agent(0, None))
    await ctl.step()
    assert queued(ctl) == {"ns/a0": "p-0"}
    clock.now += 10
    ctl.on_lease("MODIFIED", lease("p-0", "2026-11-25T09:00:05.000000Z"))  # renewed (5 s on ITS clock)
    clock.now += 14.9
    assert ctl.view.eligible("ns", "p", clock.now) == ["p-0"]
    clock.now += 0.1  # 15 s of OUR clock since the renewal was seen: expired
    assert ctl.view.eligible("ns", "p", clock.now) == []
    await ctl.step()
    assert queued(ctl) == {"ns/a0": None}  # Pending: no eligible shard


def test_the_planner_waits_for_a_quiet_moment_in_lease_changes_but_not_forever() -> None:
    # no Lease change lately: plan at once
    assert lease_quiet_wait(now=10.0, lease_changed=float("-inf"), started=10.0, quiet_s=0.1, max_s=0.5) == 0.0
    # a change 30 ms ago: wait the remaining 70 ms of quiet
    assert lease_quiet_wait(now=10.0, lease_changed=9.97, started=10.0, quiet_s=0.1, max_s=0.5) == pytest.approx(0.07)
    # changes keep coming: the wait is capped 500 ms after it started
    assert lease_quiet_wait(now=10.45, lease_changed=10.44, started=10.0, quiet_s=0.1, max_s=0.5) == pytest.approx(0.05)
    assert lease_quiet_wait(now=10.5, lease_changed=10.49, started=10.0, quiet_s=0.1, max_s=0.5) == 0.0


def test_only_eligibility_changes_of_leases_count_as_lease_changes() -> None:
    clock = Clock()
    ctl = controller(clock)
    ctl.on_lease("ADDED", lease("p-0", "2026-11-25T10:00:00.000000Z"))
    assert ctl.view.lease_changed == clock.now  # (a new shard)
    clock.now += 5
    ctl.on_lease("MODIFIED", lease("p-0", "2026-11-25T10:00:05.000000Z"))  # a heartbeat
    assert ctl.view.lease_changed == clock.now - 5
    ctl.on_lease("MODIFIED", lease("p-0", "2026-11-25T10:00:05.000000Z", draining=True))
    assert ctl.view.lease_changed == clock.now
