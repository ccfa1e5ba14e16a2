"""The operator's Agent writes: status patches recording a placement or why there is none.

Recording a (re-)placement is ONE write, a merge patch of the Agent's /status (the shards watch
`status.shard`); the finalizer goes alongside, on metadata, only on an Agent that lacks it. The
patches themselves are computed by `agents.placement_patch` / `pending_patch` (None: the object
already says so, nothing is sent). A write is skipped while the agent's key is busy in the work
queue (in flight, or waiting to retry); the answer of each patch goes back into the view as a
watch event would.

`WriteBatch` measures the writes of one planning batch (from the step that first moved agents to
the moment no job is in flight) and logs one "writes done" line: request times and event loop lag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from agent_operator import agents as agents_mod
from agent_operator.paths import path_for
from agent_operator.workqueue import WorkQueue
from agent_runtime.kube.client import KubeClient
from agent_runtime import looplag
from agent_runtime.manifest import API_VERSION as GV

log = logging.getLogger("agent_operator")
Echo = Callable[[str | None, dict[str, Any]], None]


class WriteBatch:
    """The current batch of Agent writes: when it started, the patch count then, each request's time
    and the longest event loop lag seen meanwhile."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.patches_before = 0
        self.waits: list[float] = []  # seconds each Agent write of the batch took (the request alone)
        self.lag = 0.0  # the longest the event loop fell behind during the batch

    def start(self, patches: int) -> None:
        """A step moves agents: the batch starts now, unless one is already running."""
        if self.started is None:
            self.started, self.patches_before = time.monotonic(), patches

    def note_lag(self, lag: float) -> None:
        if self.started is not None:
            self.lag = max(self.lag, lag)

    def finish(self, patches: int) -> None:
        """No job is in flight any more: log the batch, if one was running, and start afresh."""
        if self.started is None:
            return
        waits = sorted(self.waits) or [0.0]
        log.info("writes done: %d patches in %.2fs (request time mean %.3fs, p50 %.3fs, p90 %.3fs, "
                 "max %.3fs; event loop lag max %.3fs)", patches - self.patches_before,
                 time.monotonic() - self.started, sum(waits) / len(waits), waits[len(waits) // 2],
                 waits[len(waits) * 9 // 10], waits[-1], self.lag)
        self.started = None
        self.waits = []
        self.lag = 0.0


class AgentWrites:
    """Queues the status (and finalizer) patches of Agents on `work`; `echo` gets every answer."""

    def __init__(self, api: KubeClient, work: WorkQueue, echo: Echo) -> None:
        self.api = api
        self.work = work
        self.echo = echo
        self.patches = 0
        self.batch = WriteBatch()

    def place(self, agent: agents_mod.AgentView, shard: str, now_iso: str, pool: str | None = None,
              note: str = "") -> None:
        if self.work.busy(agent.key):
            return
        status_patch = agents_mod.placement_patch(agent, shard, now_iso, pool, note)
        meta_patch = agents_mod.finalizer_patch(agent)
        if status_patch is None and meta_patch is None:
            agent.target = None
            return
        if self.work.submit(agent.key, lambda: self.patch(agent, status_patch, meta_patch)):
            agent.target = shard

    def pending(self, agent: agents_mod.AgentView, reason: str, message: str, now_iso: str,
                phase: str = "Pending") -> None:
        if self.work.busy(agent.key):
            return
        status_patch = agents_mod.pending_patch(agent, reason, message, now_iso, phase)
        meta_patch = agents_mod.finalizer_patch(agent)
        if status_patch is None and meta_patch is None:
            return
        if self.work.submit(agent.key, lambda: self.patch(agent, status_patch, meta_patch)):
            agent.target = None

    async def patch(self, agent: agents_mod.AgentView, status_patch: dict[str, Any] | None,
                    meta_patch: dict[str, Any] | None) -> None:
        """One status write records a (re-)placement: the shards watch status.shard. The finalizer
        (only on an Agent that lacks it, i.e. the first time) goes alongside, on metadata."""
        path = path_for(GV, "agents", agent.namespace, agent.name)
        writes = [(path + "/status", status_patch), (path, meta_patch)]
        t0 = time.monotonic()
        bodies = await asyncio.gather(*(self.api.merge_patch(p, patch) for p, patch in writes if patch is not None))
        self.batch.waits.append(time.monotonic() - t0)
        for body in bodies:
            self.echo("MODIFIED", body)
            self.patches += 1

    async def watch_lag(self, period: float = 0.05) -> None:
        """How late the loop wakes a 50 ms sleeper: a write's request time includes any such lag."""
        await looplag.sample_loop_lag(period, self.batch.note_lag)
