"""Deleted Agents: dispose of the agent's folder per `spec.onDelete`, then remove our finalizer.

With `--data` (the pools' shared volume mounted in the operator) the folder is archived or removed
here, in a worker thread (`agent_runtime.kube.folders.dispose`; a folder a shard still holds raises
FolderBusy and the job is retried). Without it, the shard that owns the agent is asked with
`DELETE /v1/agents/{ns}/{name}` and the pool's admin token (re-read once if refused, so a rotated
token is picked up); if that shard is gone the folder stays on the pool volume and a warning says so.

The finalizer is removed by a JSON patch that tests its index first; if the list changed meanwhile
(422), the fresh object's list without ours is written back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from agent_operator import agents as agents_mod
from agent_operator.models import FINALIZER
from agent_operator.paths import path_for
from agent_operator.view import View
from agent_runtime.kube import folders
from agent_runtime.kube.client import ApiError, KubeClient
from agent_runtime.manifest import API_VERSION as GV

log = logging.getLogger("agent_operator")
AdminToken = Callable[[str, str, bool], Awaitable[str | None]]  # (namespace, pool, fresh) -> token


class Finalizer:
    """Finalizes deleted Agents of `view`; `admin_token` reads a pool's token (`pools.AdminTokens.get`)."""

    def __init__(self, api: KubeClient, view: View, admin_token: AdminToken, data_dir: Path | None = None) -> None:
        self.api = api
        self.view = view
        self.admin_token = admin_token
        self.data_dir = data_dir

    async def finalize(self, agent: agents_mod.AgentView) -> None:
        what = await self.dispose(agent)
        log.info("agent %s deleted: %s", agent.key, what)
        path = path_for(GV, "agents", agent.namespace, agent.name)
        idx = agent.finalizers.index(FINALIZER)
        try:
            await self.api.json_patch(path, [
                {"op": "test", "path": f"/metadata/finalizers/{idx}", "value": FINALIZER},
                {"op": "remove", "path": f"/metadata/finalizers/{idx}"}])
        except ApiError as exc:
            if exc.status == 404:
                return
            if exc.status != 422:
                raise
            fresh = await self.api.get(path)
            finals = [f for f in (fresh.get("metadata") or {}).get("finalizers") or [] if f != FINALIZER]
            await self.api.merge_patch(path, {"metadata": {"finalizers": finals or None}})

    async def dispose(self, agent: agents_mod.AgentView) -> str:
        """Archive or remove the agent's folder; what was done, said for the log."""
        if self.data_dir is not None:
            return await asyncio.to_thread(folders.dispose, self.data_dir, agent.namespace, agent.name,
                                           agent.on_delete)
        shard = self.view.shards.get((agent.namespace, agent.status_shard or ""))
        if shard is not None and shard.fresh(self.view.clock()) and shard.address:
            url = f"{shard.address.rstrip('/')}/v1/agents/{agent.namespace}/{agent.name}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                for fresh in (False, True):  # a refused token may have been rotated: re-read it once
                    token = await self.admin_token(agent.namespace, shard.pool, fresh)
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    async with http.delete(url, headers=headers) as resp:
                        if resp.status in (200, 202, 204, 404):
                            return f"shard {shard.name} answered {resp.status} to DELETE"
                        if resp.status in (401, 403) and not fresh:
                            continue
                        raise ApiError(resp.status, "ShardRefused", await resp.text())
        log.warning("agent %s: no data folder configured and its shard is gone; the log folder stays on the "
                    "pool volume", agent.key)
        return "folder left on the pool volume (operator has no --data and the shard is gone)"
