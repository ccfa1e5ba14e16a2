"""Placement of agents on the shards of a pool: pure, deterministic, batch.

Rendezvous (highest-random-weight) hashing with bounded loads, sticky:
- an agent already on an eligible shard stays there, unless that shard holds more than the bound;
  then the agents with the weakest affinity to it (lowest rendezvous score) are the ones moved;
- every other agent (new, or on an expired/draining shard) goes to its highest-scoring eligible
  shard that is below the bound.
The bound is `min(capacity, ceil(total / shards * (1 + slack)))`, so no shard holds more than
`1 + slack` times the mean and capacity is never exceeded.

`rebalance=False` plans only the agents that must move (new, or on a shard that is not eligible)
and leaves agents on eligible shards where they are even above the bound: the controller plans
that way while the set of eligible shards is still changing (a drain opens some shards and closes
others with several Lease writes), so an agent is never moved to a shard for balance and then
again because that shard closed a moment later. Balance moves follow once the set has settled. Adding a shard moves only what the
other shards hold above the new bound; removing one moves only its own agents. One call plans a
whole pool (1,000 agents x 10 shards is 10,000 small hashes), so re-placement after a drain or a
Lease expiry is a single batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_SLACK = 0.02


def score(agent: str, shard: str) -> int:
    """The rendezvous weight of `agent` on `shard` (stable across processes and versions)."""
    digest = hashlib.blake2b(f"{agent}\x00{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _order_key(agent: str) -> int:
    return int.from_bytes(hashlib.blake2b(agent.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class Plan:
    """Changes for one pool: `moves` maps agent → new shard; `unplaced` agents found no room."""

    moves: dict[str, str]
    unplaced: tuple[str, ...]
    bound: int


def bound_for(total: int, shards: int, capacity: int, slack: float = DEFAULT_SLACK) -> int:
    if shards <= 0:
        return 0
    return max(1, min(capacity, math.ceil(total / shards * (1.0 + slack))))


def plan_pool(current: Mapping[str, str | None], eligible: Iterable[str], capacity: int,
              slack: float = DEFAULT_SLACK, rebalance: bool = True) -> Plan:
    """Plan one pool. `current` maps every agent of the pool to its shard (None = not placed);
    `eligible` are the shards with a fresh, non-draining Lease. Agents already well placed are
    left out of `moves`; with `rebalance=False` so is every agent on an eligible shard."""
    shards: Sequence[str] = sorted(set(eligible))
    if not shards:
        return Plan({}, tuple(sorted(current)), 0)
    eligible_set = set(shards)
    bound = bound_for(len(current), len(shards), capacity, slack)
    members: dict[str, list[str]] = {s: [] for s in shards}
    pending: list[str] = []
    for agent, shard in current.items():
        if shard in eligible_set:
            members[shard].append(agent)
        else:
            pending.append(agent)
    for shard, agents in members.items():
        if rebalance and len(agents) > bound:
            agents.sort(key=lambda a: score(a, shard), reverse=True)
            pending.extend(agents[bound:])
            del agents[bound:]
    load = {s: len(a) for s, a in members.items()}
    moves: dict[str, str] = {}
    unplaced: list[str] = []
    pending.sort(key=_order_key)
    for agent in pending:
        scored = [(score(agent, s), s) for s in shards]
        best = max(scored)[1]
        if load[best] < bound:  # the usual case: the first choice has room, no sort
            target: str | None = best
        else:
            target = next((s for _, s in sorted(scored, reverse=True) if load[s] < bound), None)
        if target is None:
            unplaced.append(agent)
            continue
        load[target] += 1
        if current.get(agent) != target:
            moves[agent] = target
    return Plan(moves, tuple(sorted(unplaced)), bound)


def imbalance(loads: Iterable[int]) -> float:
    """max / mean - 1 over the shards' agent counts (0 = perfectly even)."""
    values = list(loads)
    if not values or sum(values) == 0:
        return 0.0
    mean = sum(values) / len(values)
    return max(values) / mean - 1.0
