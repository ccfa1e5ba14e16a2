"""The operator's async shell: wires the watch view, the planner, the writes and the work queue.

The watches (kopf's handlers for pools and Leases, a Reflector for Agents) call `on_agent` /
`on_pool` / `on_lease`, which update the `View` (pure) and wake the planner when something changed
that placement looks at. The planner loop (`run`) coalesces wake-ups (a short debounce, then a
quiet moment in eligibility-changing Lease events), and each `step` carries out the decisions of
the pure `Planner` (one batch over every pool, so a Lease expiry or a drain re-places all of a
shard's agents at once): Agent writes (`writes`), finalizers (`finalizer`), then each pool's
convergence (`pools`). Every write is a job on the one `WorkQueue`, drained by a fixed set of
workers; an agent with a patch in flight is not planned again until it lands. The loop also wakes
itself at the next Lease expiry, retry time, pool status write or pool settling, so those need no event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_operator import agents as agents_mod
from agent_operator import placement
from agent_operator.finalizer import Finalizer
from agent_operator.paths import path_for
from agent_operator.planner import Finalize, Pending, Place, Planner, PoolMoves, lease_quiet_wait
from agent_operator.pools import AdminTokens, Pools
from agent_operator.shards import Shard
from agent_operator.view import View, now_iso
from agent_operator.workqueue import WorkQueue
from agent_operator.writes import AgentWrites
from agent_runtime.kube.client import KubeClient
from agent_runtime.kube.names import POOL_LABEL
from agent_runtime.manifest import API_VERSION

log = logging.getLogger("agent_operator")
GV = API_VERSION


@dataclass(frozen=True, slots=True)
class Settings:
    namespaces: tuple[str, ...]
    data_dir: Path | None = None
    workers: int = 32
    debounce_s: float = 0.05
    # Lease changes that alter which shards are eligible (a drain writes several) are planned
    # together: the planner waits until none came for lease_quiet_s (at most lease_quiet_max_s).
    lease_quiet_s: float = 0.1
    lease_quiet_max_s: float = 0.5
    # While a pool's eligible shards keep changing, only agents that must move are planned; balance
    # moves wait until the set has been stable this long (no agent moves twice in one drain).
    rebalance_after_s: float = 2.0
    pool_status_interval_s: float = 1.0
    slack: float = placement.DEFAULT_SLACK
    manage_pools: bool = True


class Controller:
    def __init__(self, api: KubeClient, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.settings = settings
        self.clock = clock
        self._wake = asyncio.Event()
        self.work = WorkQueue(clock, on_done=self._job_done, on_retry=self._job_retrying)
        self.view = View(clock, in_flight=self.work.inflight)
        self.planner = Planner(settings.slack, settings.rebalance_after_s)
        self.writes = AgentWrites(api, self.work, echo=self.on_agent)
        tokens = AdminTokens(api, clock)
        self.pools = Pools(api, self.work, self.view, tokens, settings.pool_status_interval_s)
        self.finalizer = Finalizer(api, self.view, tokens.get, settings.data_dir)
        self.steps = 0
        self._task: asyncio.Task[None] | None = None

    # the view's agents and shards, for readers (tests)
    @property
    def agents(self) -> dict[str, agents_mod.AgentView]:
        return self.view.agents

    @property
    def shards(self) -> dict[tuple[str, str], Shard]:
        return self.view.shards

    # ---- watch input (called by the watches; no IO) ----------------------------------------------

    def on_agent(self, event_type: str | None, body: dict[str, Any]) -> None:
        if self.view.on_agent(event_type, body):
            self._wake.set()

    def on_pool(self, event_type: str | None, body: dict[str, Any]) -> None:
        if self.view.on_pool(event_type, body):
            self._wake.set()

    def on_lease(self, event_type: str | None, body: dict[str, Any]) -> None:
        if self.view.on_lease(event_type, body):
            self._wake.set()

    # ---- startup ---------------------------------------------------------------------------------

    async def prime(self) -> None:
        """One LIST of pools and Leases per namespace before the first plan, so nothing is re-placed
        only because its shard's Lease had not been seen yet (the Agents' watches list them)."""
        for ns in self.settings.namespaces or (None,):
            pools, _ = await self.api.list(path_for(GV, "runtimepools", ns))
            for pool in pools:
                self.on_pool(None, pool)
            leases, _ = await self.api.list(path_for("coordination.k8s.io/v1", "leases", ns), POOL_LABEL)
            for lease in leases:
                self.on_lease(None, lease)

    # ---- the planner loop ------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel the planner and its workers (kopf's cleanup calls this when the operator stops)."""
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        async with asyncio.TaskGroup() as tg:
            for _ in range(self.settings.workers):
                tg.create_task(self.work.worker())
            tg.create_task(self.writes.watch_lag())
            while True:
                try:
                    async with asyncio.timeout(self._next_deadline()):  # no helper task (kopf counts tasks)
                        await self._wake.wait()
                except TimeoutError:
                    pass
                await asyncio.sleep(self.settings.debounce_s)
                await self._lease_quiet()
                self._wake.clear()
                await self.step()

    async def _lease_quiet(self) -> None:
        """Wait while eligibility-changing Lease events keep coming (bounded), so the Lease writes
        of one drain (open some shards, close others) are planned as one batch."""
        started = self.clock()
        while (wait := lease_quiet_wait(self.clock(), self.view.lease_changed, started, self.settings.lease_quiet_s,
                                        self.settings.lease_quiet_max_s)) > 0:
            await asyncio.sleep(wait)

    def _next_deadline(self) -> float | None:
        return self.planner.next_deadline(self.view, self.work.retry_times(), self.clock())

    async def step(self) -> None:
        """Carry out one plan: the decisions in order, each a job on the work queue unless its key is busy."""
        self.steps += 1
        now = self.clock()
        stamp = now_iso()
        self.work.forget_due(now)
        step = self.planner.plan(self.view, now)
        for decision in step.decisions:
            match decision:
                case Finalize(agent):
                    if not self.work.busy(agent.key):
                        self.work.submit(agent.key, functools.partial(self.finalizer.finalize, agent))
                case Place(agent, shard, pool, note):
                    self.writes.place(agent, shard, stamp, pool, note)
                case Pending(agent, reason, message, phase):
                    self.writes.pending(agent, reason, message, stamp, phase)
                case PoolMoves(ns, pool, moves, unplaced, eligible, bound, rebalance):
                    log.info("pool %s/%s: placing %d agents (%d unplaced) on %d eligible shards, bound %d%s", ns, pool,
                             moves, unplaced, eligible, bound,
                             "" if rebalance else " (shards changing: no balance moves yet)")
                    self.writes.batch.start(self.writes.patches)
        if self.settings.manage_pools:
            for pool_view in list(self.view.pools.values()):
                self.pools.reconcile(pool_view, step.by_pool.get((pool_view.namespace, pool_view.name), {}), now)

    # ---- the work queue's callbacks --------------------------------------------------------------

    def _job_done(self, key: str) -> None:
        self._wake.set()
        if not self.work.inflight:
            self.writes.batch.finish(self.writes.patches)

    def _job_retrying(self, key: str) -> None:
        self.view.forget_target(key)
