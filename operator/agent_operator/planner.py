"""The planning step: which agents to place where, as a list of decisions (pure, no IO, no asyncio).

The controller debounces wake-ups, waits for a quiet moment in eligibility-changing Lease events
(`lease_quiet_wait`), then asks `Planner.plan` for one step's decisions over the whole view and
carries them out in order (`controller.Controller.step`). A step:

- finalizes deleted Agents that still carry our finalizer (`Finalize`);
- records why an Agent cannot be placed: a spec the runtime refuses (Failed, InvalidSpec), no pool
  for it (Pending, NoRuntimePool), no eligible shard or a full pool (Pending) (`Pending`);
- plans every pool in one batch with `placement.plan_pool` (`PoolMoves`, then a `Place` per move)
  and confirms agents that stay where they are when their object does not say so yet (`Place`).

An agent stays in the pool its log lives on (`agents.pinned_pool`); a spec asking for another is
held, with a note in its Placed condition. While a pool's eligible shards changed within the last
`rebalance_after_s` (`EligibleHistory`), only agents that must move are placed: balance moves
wait until the set has settled, so no agent moves twice in one drain.

The decisions say what the objects should say; whether a write is needed (the object may already
say it) and whether the key is busy (in flight, or waiting to retry) the shell decides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent_operator import agents as agents_mod
from agent_operator import placement
from agent_operator.models import FINALIZER
from agent_operator.view import View


def lease_quiet_wait(now: float, lease_changed: float, started: float, quiet_s: float, max_s: float) -> float:
    """How much longer the planner waits before planning (0: plan now): until no eligibility-changing
    Lease event came for `quiet_s`, but never more than `max_s` after it `started` waiting."""
    return max(0.0, min(quiet_s - (now - lease_changed), max_s - (now - started)))


@dataclass(frozen=True, slots=True)
class Finalize:
    """A deleted Agent still carries our finalizer: dispose of its folder, then remove it."""

    agent: agents_mod.AgentView


@dataclass(frozen=True, slots=True)
class Place:
    """The Agent's object should say: placed on `shard` of `pool` (`note`: a held spec change)."""

    agent: agents_mod.AgentView
    shard: str
    pool: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Pending:
    """The Agent's object should say: no shard, `reason` and `message` (phase Pending or Failed)."""

    agent: agents_mod.AgentView
    reason: str
    message: str
    phase: str = "Pending"


@dataclass(frozen=True, slots=True)
class PoolMoves:
    """A pool's plan moves agents (logged, and the write batch's clock starts); its `Place`s follow."""

    namespace: str
    pool: str
    moves: int
    unplaced: int
    eligible: int
    bound: int
    rebalance: bool


Decision = Finalize | Place | Pending | PoolMoves


@dataclass(slots=True)
class Step:
    """One step's decisions, in the order they are carried out, and each pool's agents (key ->
    the shard placement counts it on) for the pools' own convergence."""

    decisions: list[Decision] = field(default_factory=list)
    by_pool: dict[tuple[str, str], dict[str, str | None]] = field(default_factory=lambda: defaultdict(dict))


class EligibleHistory:
    """Since when each pool's set of eligible shards has been what it is now."""

    def __init__(self) -> None:
        self.since: dict[tuple[str, str], tuple[frozenset[str], float]] = {}

    def settled(self, namespace: str, pool: str, eligible: Iterable[str], now: float, after_s: float) -> bool:
        """Whether the pool's eligible shards have been the same for `after_s` (noting a change now)."""
        key, shards = (namespace, pool), frozenset(eligible)
        seen = self.since.get(key)
        if seen is None or seen[0] != shards:
            self.since[key] = seen = (shards, now)
        return now - seen[1] >= after_s

    def settle_times(self, after_s: float) -> Iterable[float]:
        """When each pool's current set will have been stable for `after_s`."""
        return (since + after_s for _, since in self.since.values())


class Planner:
    """Plans steps over a `View`; keeps the pools' eligible-shard history between steps."""

    def __init__(self, slack: float = placement.DEFAULT_SLACK, rebalance_after_s: float = 2.0) -> None:
        self.slack = slack
        self.rebalance_after_s = rebalance_after_s
        self.history = EligibleHistory()

    def plan(self, view: View, now: float) -> Step:
        step = Step()
        held: dict[str, str] = {}  # agent key -> why its spec's pool change is not followed
        regions = view.regions()
        for key, agent in view.agents.items():
            if agent.deleting:
                if FINALIZER in agent.finalizers:
                    step.decisions.append(Finalize(agent))
                continue
            if agent.spec_error is not None:
                step.decisions.append(Pending(agent, "InvalidSpec", agent.spec_error, phase="Failed"))
                continue
            pool_name, reason, note = agents_mod.pinned_pool(agent, regions.get(agent.namespace, {}),
                                                             view.pinned_pool(agent))
            if pool_name is None:
                step.decisions.append(Pending(agent, "NoRuntimePool", reason))
                continue
            if note:
                held[key] = note
            step.by_pool[(agent.namespace, pool_name)][key] = agent.current
        for (ns, pool_name), current in step.by_pool.items():
            pool = view.pools[(ns, pool_name)]
            assert pool.spec is not None
            eligible = view.eligible(ns, pool_name, now)
            rebalance = self.history.settled(ns, pool_name, eligible, now, self.rebalance_after_s)
            plan = placement.plan_pool(current, eligible, pool.spec.capacity_per_shard, self.slack,
                                       rebalance=rebalance)
            if plan.moves:
                step.decisions.append(PoolMoves(ns, pool_name, len(plan.moves), len(plan.unplaced), len(eligible),
                                                plan.bound, rebalance))
            for key, shard in plan.moves.items():
                step.decisions.append(Place(view.agents[key], shard, pool_name, held.get(key, "")))
            for key in plan.unplaced:
                why = ("no shard of RuntimePool {p} has a fresh Lease and is not draining" if not eligible
                       else "RuntimePool {p} is full ({n} shards x {c} agents)")
                step.decisions.append(Pending(view.agents[key], "NoEligibleShard" if not eligible else "PoolFull",
                                              why.format(p=pool_name, n=len(eligible), c=pool.spec.capacity_per_shard)))
            eligible_set = set(eligible)
            for key, on in current.items():  # placed and staying: make sure the object says so
                agent = view.agents[key]
                if on is not None and key not in plan.moves and on in eligible_set:
                    note = held.get(key, "")
                    # (an agent placed before status.pool existed gets it with its next write, not a write
                    # of its own: with a CRD not yet upgraded the field is pruned, and that would repeat)
                    if (agent.status_shard != on or FINALIZER not in agent.finalizers or note
                            or agent.placed_reason == "PoolPinned"):
                        step.decisions.append(Place(agent, on, pool_name, note))
        return step

    def next_deadline(self, view: View, retry_times: Iterable[float], now: float) -> float | None:
        """Seconds until the planner must wake without an event (None: never): the next Lease
        expiry, retry-at time, pool status write or pool settling, plus 10 ms."""
        times = [s.expires_at for s in view.shards.values() if s.expires_at is not None and s.expires_at > now]
        times += list(retry_times)
        times += [p.status_at for p in view.pools.values() if p.status_at > now]
        times += [t for t in self.history.settle_times(self.rebalance_after_s) if t > now]
        if not times:
            return None
        return max(0.01, min(times) - now + 0.01)
