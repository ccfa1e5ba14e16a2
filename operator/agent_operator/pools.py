"""RuntimePools made real: their objects (server-side apply), their status, their admin token, and
the draining marks of shards a scale-down removes.

After each planning step `Pools.reconcile` looks at every pool: it applies the pool's desired objects
(pure `resources.desired_objects`) when its spec, generation or replica count changed since they
were last converged; marks the Leases of shards above the new shard count draining (the StatefulSet
keeps them until they hold no agents: `resources.replicas_for`); and patches the pool's status
(ready shards, agents, the Ready condition), at most once per `status_interval_s`. A pool whose
spec the operator cannot parse gets a Ready=False InvalidSpec status and nothing else.

The admin token Secret is created once (create-only, with a fresh random token); `AdminTokens`
reads it back, cached for ADMIN_TOKEN_TTL_S, so a rotated token is picked up.
"""

from __future__ import annotations

import base64
import functools
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from agent_operator import resources
from agent_operator.models import FIELD_MANAGER
from agent_operator.paths import object_path, path_for
from agent_operator.shards import ordinal
from agent_operator.view import PoolView, View, now_iso
from agent_operator.workqueue import WorkQueue
from agent_runtime import layout
from agent_runtime.kube.client import ApiError, KubeClient
from agent_runtime.kube.names import DRAINING_ANNOTATION
from agent_runtime.manifest import API_VERSION as GV

log = logging.getLogger("agent_operator")
ADMIN_TOKEN_TTL_S = 30.0  # a pool's admin token is re-read from its Secret after this (rotation)


class AdminTokens:
    """Each pool's admin token, read from its Secret `<pool>-admin-token` (create and get only)."""

    def __init__(self, api: KubeClient, clock: Callable[[], float]) -> None:
        self.api = api
        self.clock = clock
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (ns, pool) -> (admin token, read at)

    def known(self, namespace: str, pool: str) -> str | None:
        """The token last read, however old (None: never read)."""
        cached = self._tokens.get((namespace, pool))
        return cached[0] if cached is not None else None

    async def get(self, namespace: str, pool: str, fresh: bool = False) -> str | None:
        """The pool's admin token from its Secret, cached for ADMIN_TOKEN_TTL_S (`fresh`: re-read now,
        e.g. after a shard refused it), so a rotated token is picked up."""
        key = (namespace, pool)
        cached = self._tokens.get(key)
        if cached is not None and not fresh and self.clock() - cached[1] < ADMIN_TOKEN_TTL_S:
            return cached[0]
        try:
            secret = await self.api.get(path_for("v1", "secrets", namespace, f"{pool}-admin-token"))
        except ApiError:
            return cached[0] if cached is not None else None
        raw = (secret.get("data") or {}).get(layout.ADMIN_TOKEN_FILE)
        if not raw:
            self._tokens.pop(key, None)
            return None
        token = base64.b64decode(raw).decode().strip()
        self._tokens[key] = (token, self.clock())
        return token


class Pools:
    """Converges the pools of `view` by jobs on `work`."""

    def __init__(self, api: KubeClient, work: WorkQueue, view: View, tokens: AdminTokens,
                 status_interval_s: float = 1.0) -> None:
        self.api = api
        self.work = work
        self.view = view
        self.tokens = tokens
        self.status_interval_s = status_interval_s

    def reconcile(self, pool: PoolView, current: dict[str, str | None], now: float) -> None:
        """One pool after a step; `current`: its agents (key -> the shard placement counts them on)."""
        skey = f"pool-status:{pool.namespace}/{pool.name}"
        if pool.spec is None:  # the schema should have refused it; say why nothing happens
            cond = {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": pool.error,
                    "lastTransitionTime": now_iso()}
            bad = {"readyShards": 0, "agents": 0, "conditions": [cond]}
            if resources.status_differs(pool.status, bad) and skey not in self.work.inflight:
                self.work.submit(skey, lambda: self.patch_status(pool, bad))
            return
        ref = resources.PoolRef(pool.name, pool.namespace, pool.uid)
        shard_names = self.view.pool_shards(pool.namespace, pool.name)
        retiring = resources.retiring_shards(pool.name, pool.spec.shards, shard_names)
        per_ordinal: dict[int, int] = defaultdict(int)
        for on in current.values():
            if on is not None and (n := ordinal(on, pool.name)) is not None:
                per_ordinal[n] += 1
        replicas = resources.replicas_for(pool.spec.shards, per_ordinal)
        fingerprint = f"{pool.uid}/{pool.generation}/{replicas}"
        key = f"pool:{pool.namespace}/{pool.name}"
        if fingerprint != pool.applied and not self.work.busy(key):
            known = self.tokens.known(pool.namespace, pool.name)
            token = known if known is not None else secrets.token_urlsafe(32)
            objs = resources.desired_objects(ref, pool.spec, replicas, token)
            if self.work.submit(key, lambda: self.apply(pool, objs, fingerprint)):
                pool.applied = fingerprint
        for name in retiring:
            lkey = f"lease:{pool.namespace}/{name}"
            if not self.view.shards[(pool.namespace, name)].draining and lkey not in self.work.inflight:
                self.work.submit(lkey, functools.partial(self.mark_draining, pool.namespace, name))
        ready = len(self.view.eligible(pool.namespace, pool.name, now))
        placed = sum(1 for s in current.values() if s is not None)
        status = resources.pool_status(pool.spec.shards, ready, placed, pool.status, now_iso())
        if resources.status_differs(pool.status, status) and skey not in self.work.inflight:
            if now >= pool.status_at and self.work.submit(skey, lambda: self.patch_status(pool, status)):
                pool.status_at = now + self.status_interval_s

    async def apply(self, pool: PoolView, objs: list[resources.Desired], fingerprint: str) -> None:
        try:
            for obj in objs:
                if obj.create_only:
                    try:
                        await self.api.create(object_path(obj.manifest, named=False), obj.manifest)
                    except ApiError as exc:
                        if exc.status != 409:
                            raise
                else:
                    await self.api.apply(object_path(obj.manifest), obj.manifest, FIELD_MANAGER)
            log.info("pool %s/%s converged (%s objects)", pool.namespace, pool.name, len(objs))
        except BaseException:
            if pool.applied == fingerprint:
                pool.applied = ""
            raise

    async def patch_status(self, pool: PoolView, status: dict[str, Any]) -> None:
        path = path_for(GV, "runtimepools", pool.namespace, pool.name, "status")
        await self.api.merge_patch(path, {"status": status})
        pool.status = dict(status)

    async def mark_draining(self, namespace: str, shard: str) -> None:
        await self.api.merge_patch(path_for("coordination.k8s.io/v1", "leases", namespace, shard),
                                   {"metadata": {"annotations": {DRAINING_ANNOTATION: "true"}}})
