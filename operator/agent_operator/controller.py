"""The operator's async shell: holds what the watches report, plans in batches, applies the plan.

The watches (kopf's handlers for pools and Leases, a Reflector for Agents) call `on_agent` /
`on_pool` / `on_lease`, which only update the in-memory view and wake the planner. The planner (`run`) coalesces wake-ups (a short debounce), then in one
`step`: converges each changed RuntimePool's objects (server-side apply), plans every pool's
placement with `placement.plan_pool` (one batch, so a Lease expiry or a drain re-places all of a
shard's agents at once), and queues the patches. A fixed set of workers drains the queue with a
bounded number of requests in flight; an agent with a patch in flight is not planned again until
it lands. It also wakes itself when the next fresh Lease would expire, so expiry needs no event.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import ValidationError

from agent_operator import agents as agents_mod
from agent_operator import placement, resources
from agent_operator.models import FIELD_MANAGER, FINALIZER, RuntimePoolSpec
from agent_operator.paths import object_path, path_for
from agent_operator.shards import Shard, observe_lease, ordinal
from agent_runtime.kube import folders
from agent_runtime.kube.client import ApiError, KubeClient
from agent_runtime.kube.names import DRAINING_ANNOTATION, POOL_LABEL
from agent_runtime.manifest import API_VERSION

log = logging.getLogger("agent_operator")
GV = API_VERSION
MAX_RETRY_S = 300.0
ADMIN_TOKEN_TTL_S = 30.0  # a pool's admin token is re-read from its Secret after this (rotation)
Job = Callable[[], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class PoolView:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: RuntimePoolSpec | None
    error: str = ""
    applied: str = ""  # fingerprint of the last converged desired state
    status: dict[str, Any] = field(default_factory=dict)
    status_at: float = 0.0


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


def lease_quiet_wait(now: float, lease_changed: float, started: float, quiet_s: float, max_s: float) -> float:
    """How much longer the planner waits before planning (0: plan now): until no eligibility-changing
    Lease event came for `quiet_s`, but never more than `max_s` after it `started` waiting."""
    return max(0.0, min(quiet_s - (now - lease_changed), max_s - (now - started)))


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller:
    def __init__(self, api: KubeClient, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.settings = settings
        self.clock = clock
        self.agents: dict[str, agents_mod.AgentView] = {}
        self.pools: dict[tuple[str, str], PoolView] = {}
        self.shards: dict[tuple[str, str], Shard] = {}
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[tuple[str, Job]] = asyncio.Queue(maxsize=10_000)
        self._inflight: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (ns, pool) -> (admin token, read at)
        self._failures: dict[str, int] = {}  # key -> consecutive unforeseen failures (backoff)
        self.steps = 0
        self.patches = 0
        self._task: asyncio.Task[None] | None = None
        self._batch_started: float | None = None
        self._batch_patches = 0
        self._batch_waits: list[float] = []  # seconds each Agent write of the batch took (the request alone)
        self._batch_lag = 0.0  # the longest the event loop fell behind during the batch
        self._lease_changed = float("-inf")  # when a Lease last changed which shards are eligible
        self._eligible_since: dict[tuple[str, str], tuple[frozenset[str], float]] = {}

    # ---- watch input (called by the kopf handlers; no IO) ----------------------------------------

    def on_agent(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        old = self.agents.get(f"{meta.get('namespace')}/{meta.get('name')}")
        view = agents_mod.agent_view(body, old)
        if event_type == "DELETED":
            self.agents.pop(view.key, None)
        elif old is None or view.resource_version >= old.resource_version:
            if old is not None and old.uid == view.uid:
                view.target = old.target if view.key in self._inflight else None
            self.agents[view.key] = view
            if old is not None and agents_mod.placement_fields(old) == agents_mod.placement_fields(view):
                return  # activity only (turns, tokens, Ready): nothing to plan
        self._wake.set()

    def on_pool(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            self.pools.pop(key, None)
            self._wake.set()
            return
        old = self.pools.get(key)
        generation = int(meta.get("generation") or 0)
        if old is not None and old.uid == meta.get("uid") and old.generation == generation:
            return  # a status echo
        try:
            spec, error = RuntimePoolSpec.model_validate(body.get("spec") or {}), ""
        except ValidationError as exc:
            spec, error = None, f"invalid spec: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
        self.pools[key] = PoolView(key[0], key[1], str(meta.get("uid", "")), generation, spec, error,
                                   status=dict(body.get("status") or {}))
        self._wake.set()

    def on_lease(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        now = self.clock()
        old = self.shards.get(key)
        shard = observe_lease(body, now, old)  # expiry on our own clock
        if shard is None:
            return
        if event_type == "DELETED":
            self.shards.pop(key, None)
        else:
            self.shards[key] = shard
        if old is None or event_type == "DELETED" or old.eligible(now) != shard.eligible(now) or old.fresh(now) != shard.fresh(now):
            self._lease_changed = now
            log.info("shard %s/%s: %s", shard.namespace, shard.name, "gone" if event_type == "DELETED" else
                     "eligible" if shard.eligible(now) else "draining" if shard.fresh(now) else "expired")
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

    # ---- the planner -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel the planner and its workers (kopf's cleanup calls this when the operator stops)."""
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        async with asyncio.TaskGroup() as tg:
            for _ in range(self.settings.workers):
                tg.create_task(self._worker())
            tg.create_task(self._watch_lag())
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
        while (wait := lease_quiet_wait(self.clock(), self._lease_changed, started, self.settings.lease_quiet_s,
                                        self.settings.lease_quiet_max_s)) > 0:
            await asyncio.sleep(wait)

    async def _watch_lag(self, period: float = 0.05) -> None:
        """How late the loop wakes a 50 ms sleeper: a write's request time includes any such lag."""
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(period)
            lag = time.monotonic() - t0 - period
            if self._batch_started is not None:
                self._batch_lag = max(self._batch_lag, lag)

    def _next_deadline(self) -> float | None:
        now = self.clock()
        times = [s.expires_at for s in self.shards.values() if s.expires_at is not None and s.expires_at > now]
        times += [t for t in self._retry_at.values()]
        times += [p.status_at for p in self.pools.values() if p.status_at > now]
        times += [since + self.settings.rebalance_after_s for _, since in self._eligible_since.values()
                  if since + self.settings.rebalance_after_s > now]
        if not times:
            return None
        return max(0.01, min(times) - now + 0.01)

    def eligible(self, namespace: str, pool: str, now: float) -> list[str]:
        return [s.name for (ns, _), s in self.shards.items() if ns == namespace and s.pool == pool and s.eligible(now)]

    async def step(self) -> None:
        self.steps += 1
        now = self.clock()
        now_iso = _now_iso()
        self._retry_at = {k: t for k, t in self._retry_at.items() if t > now}
        by_pool: dict[tuple[str, str], dict[str, str | None]] = defaultdict(dict)
        held: dict[str, str] = {}  # agent key -> why its spec's pool change is not followed
        regions: dict[str, dict[str, str]] = defaultdict(dict)
        for (ns, name), pool in self.pools.items():
            if pool.spec is not None:
                regions[ns][name] = pool.spec.region
        for key, agent in self.agents.items():
            if agent.deleting:
                if FINALIZER in agent.finalizers and key not in self._inflight and key not in self._retry_at:
                    self._submit(key, functools.partial(self._finalize, agent))
                continue
            if agent.spec_error is not None:
                self._record_pending(agent, "InvalidSpec", agent.spec_error, now_iso, phase="Failed")
                continue
            pool_name, reason, note = agents_mod.pinned_pool(agent, regions.get(agent.namespace, {}),
                                                             self._pinned_pool(agent))
            if pool_name is None:
                self._record_pending(agent, "NoRuntimePool", reason, now_iso)
                continue
            if note:
                held[key] = note
            by_pool[(agent.namespace, pool_name)][key] = agent.current
        for (ns, pool_name), current in by_pool.items():
            pool = self.pools[(ns, pool_name)]
            assert pool.spec is not None
            eligible = self.eligible(ns, pool_name, now)
            rebalance = self._settled(ns, pool_name, eligible, now)
            plan = placement.plan_pool(current, eligible, pool.spec.capacity_per_shard, self.settings.slack,
                                       rebalance=rebalance)
            if plan.moves:
                log.info("pool %s/%s: placing %d agents (%d unplaced) on %d eligible shards, bound %d%s", ns, pool_name,
                         len(plan.moves), len(plan.unplaced), len(eligible), plan.bound,
                         "" if rebalance else " (shards changing: no balance moves yet)")
                if self._batch_started is None:
                    self._batch_started, self._batch_patches = time.monotonic(), self.patches
            for key, shard in plan.moves.items():
                self._record_placement(self.agents[key], shard, now_iso, pool_name, held.get(key, ""))
            for key in plan.unplaced:
                why = ("no shard of RuntimePool {p} has a fresh Lease and is not draining" if not eligible
                       else "RuntimePool {p} is full ({n} shards x {c} agents)")
                self._record_pending(self.agents[key], "NoEligibleShard" if not eligible else "PoolFull",
                                     why.format(p=pool_name, n=len(eligible), c=pool.spec.capacity_per_shard),
                                     now_iso)
            eligible_set = set(eligible)
            for key, on in current.items():  # placed and staying: make sure the object says so
                agent = self.agents[key]
                if on is not None and key not in plan.moves and on in eligible_set and key not in self._inflight:
                    note = held.get(key, "")
                    # (an agent placed before status.pool existed gets it with its next write, not a write
                    # of its own: with a CRD not yet upgraded the field is pruned, and that would repeat)
                    if (agent.status_shard != on or FINALIZER not in agent.finalizers or note
                            or agent.placed_reason == "PoolPinned"):
                        self._record_placement(agent, on, now_iso, pool_name, note)
        if self.settings.manage_pools:
            for pool in list(self.pools.values()):
                self._reconcile_pool(pool, by_pool.get((pool.namespace, pool.name), {}), now)

    def _settled(self, namespace: str, pool: str, eligible: list[str], now: float) -> bool:
        """Whether the pool's eligible shards have been the same for rebalance_after_s."""
        key, shards = (namespace, pool), frozenset(eligible)
        seen = self._eligible_since.get(key)
        if seen is None or seen[0] != shards:
            self._eligible_since[key] = seen = (shards, now)
        return now - seen[1] >= self.settings.rebalance_after_s

    # ---- agents ----------------------------------------------------------------------------------

    def _pinned_pool(self, agent: agents_mod.AgentView) -> str | None:
        """The pool whose volume holds the agent's log: status.pool, else (placed before status.pool
        existed) the pool of the shard it is on, else None (never placed)."""
        if agent.status_pool is not None:
            return agent.status_pool
        if agent.status_shard is not None:
            shard = self.shards.get((agent.namespace, agent.status_shard))
            if shard is not None:
                return shard.pool
        return None

    def _record_placement(self, agent: agents_mod.AgentView, shard: str, now_iso: str, pool: str | None = None,
                          note: str = "") -> None:
        if agent.key in self._inflight or agent.key in self._retry_at:
            return
        status_patch = agents_mod.placement_patch(agent, shard, now_iso, pool, note)
        meta_patch = agents_mod.finalizer_patch(agent)
        if status_patch is None and meta_patch is None:
            agent.target = None
            return
        if self._submit(agent.key, lambda: self._patch_agent(agent, status_patch, meta_patch)):
            agent.target = shard

    def _record_pending(self, agent: agents_mod.AgentView, reason: str, message: str, now_iso: str,
                        phase: str = "Pending") -> None:
        if agent.key in self._inflight or agent.key in self._retry_at:
            return
        status_patch = agents_mod.pending_patch(agent, reason, message, now_iso, phase)
        meta_patch = agents_mod.finalizer_patch(agent)
        if status_patch is None and meta_patch is None:
            return
        if self._submit(agent.key, lambda: self._patch_agent(agent, status_patch, meta_patch)):
            agent.target = None

    async def _patch_agent(self, agent: agents_mod.AgentView, status_patch: dict[str, Any] | None,
                           meta_patch: dict[str, Any] | None) -> None:
        """One status write records a (re-)placement: the shards watch status.shard. The finalizer
        (only on an Agent that lacks it, i.e. the first time) goes alongside, on metadata."""
        path = path_for(GV, "agents", agent.namespace, agent.name)
        writes = [(path + "/status", status_patch), (path, meta_patch)]
        t0 = time.monotonic()
        bodies = await asyncio.gather(*(self.api.merge_patch(p, patch) for p, patch in writes if patch is not None))
        self._batch_waits.append(time.monotonic() - t0)
        for body in bodies:
            self.on_agent("MODIFIED", body)
            self.patches += 1

    async def _finalize(self, agent: agents_mod.AgentView) -> None:
        what = await self._dispose(agent)
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

    async def _dispose(self, agent: agents_mod.AgentView) -> str:
        if self.settings.data_dir is not None:
            return await asyncio.to_thread(folders.dispose, self.settings.data_dir, agent.namespace, agent.name,
                                           agent.on_delete)
        shard = self.shards.get((agent.namespace, agent.status_shard or ""))
        if shard is not None and shard.fresh(self.clock()) and shard.address:
            url = f"{shard.address.rstrip('/')}/v1/agents/{agent.namespace}/{agent.name}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                for fresh in (False, True):  # a refused token may have been rotated: re-read it once
                    token = await self._admin_token(agent.namespace, shard.pool, fresh=fresh)
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

    async def _admin_token(self, namespace: str, pool: str, fresh: bool = False) -> str | None:
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
        raw = (secret.get("data") or {}).get("admin.token")
        if not raw:
            self._tokens.pop(key, None)
            return None
        token = base64.b64decode(raw).decode().strip()
        self._tokens[key] = (token, self.clock())
        return token

    # ---- pools -----------------------------------------------------------------------------------

    def _reconcile_pool(self, pool: PoolView, current: dict[str, str | None], now: float) -> None:
        skey = f"pool-status:{pool.namespace}/{pool.name}"
        if pool.spec is None:  # the schema should have refused it; say why nothing happens
            cond = {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": pool.error,
                    "lastTransitionTime": _now_iso()}
            bad = {"readyShards": 0, "agents": 0, "conditions": [cond]}
            if resources.status_differs(pool.status, bad) and skey not in self._inflight:
                self._submit(skey, lambda: self._patch_pool_status(pool, bad))
            return
        ref = resources.PoolRef(pool.name, pool.namespace, pool.uid)
        shard_names = [s.name for (ns, _), s in self.shards.items() if ns == pool.namespace and s.pool == pool.name]
        retiring = resources.retiring_shards(pool.name, pool.spec.shards, shard_names)
        per_ordinal: dict[int, int] = defaultdict(int)
        for on in current.values():
            if on is not None and (n := ordinal(on, pool.name)) is not None:
                per_ordinal[n] += 1
        replicas = resources.replicas_for(pool.spec.shards, per_ordinal)
        fingerprint = f"{pool.uid}/{pool.generation}/{replicas}"
        key = f"pool:{pool.namespace}/{pool.name}"
        if fingerprint != pool.applied and key not in self._inflight and key not in self._retry_at:
            known = self._tokens.get((pool.namespace, pool.name))
            token = known[0] if known is not None else secrets.token_urlsafe(32)
            objs = resources.desired_objects(ref, pool.spec, replicas, token)
            if self._submit(key, lambda: self._apply_pool(pool, objs, fingerprint)):
                pool.applied = fingerprint
        for name in retiring:
            lkey = f"lease:{pool.namespace}/{name}"
            if not self.shards[(pool.namespace, name)].draining and lkey not in self._inflight:
                self._submit(lkey, functools.partial(self._mark_draining, pool.namespace, name))
        ready = len(self.eligible(pool.namespace, pool.name, now))
        placed = sum(1 for s in current.values() if s is not None)
        status = resources.pool_status(pool.spec.shards, ready, placed, pool.status, _now_iso())
        if resources.status_differs(pool.status, status) and skey not in self._inflight:
            if now >= pool.status_at and self._submit(skey, lambda: self._patch_pool_status(pool, status)):
                pool.status_at = now + self.settings.pool_status_interval_s

    async def _apply_pool(self, pool: PoolView, objs: list[resources.Desired], fingerprint: str) -> None:
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

    async def _patch_pool_status(self, pool: PoolView, status: dict[str, Any]) -> None:
        path = path_for(GV, "runtimepools", pool.namespace, pool.name, "status")
        await self.api.merge_patch(path, {"status": status})
        pool.status = dict(status)

    async def _mark_draining(self, namespace: str, shard: str) -> None:
        await self.api.merge_patch(path_for("coordination.k8s.io/v1", "leases", namespace, shard),
                                   {"metadata": {"annotations": {DRAINING_ANNOTATION: "true"}}})

    # ---- the work queue --------------------------------------------------------------------------

    def _submit(self, key: str, job: Job) -> bool:
        """Queue `job`; False when the queue is full (the caller leaves its state as it was, and the
        next step, woken as workers finish, plans that key again)."""
        if self._queue.full():
            return False
        self._inflight.add(key)
        self._queue.put_nowait((key, job))
        return True

    async def _worker(self) -> None:
        while True:
            key, job = await self._queue.get()
            try:
                await job()
            except ApiError as exc:
                if exc.status == 404:
                    log.debug("%s: gone (%s)", key, exc)
                else:
                    log.warning("%s: %s; retrying", key, exc)
                    self._retry_at[key] = self.clock() + (0.5 if exc.retryable else 5.0)
                    self._reset_target(key)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # apiserver (or shard) unreachable
                log.warning("%s: %r; retrying", key, exc)
                self._retry_at[key] = self.clock() + 0.5
                self._reset_target(key)
            except folders.FolderBusy as exc:
                log.info("%s: %s; retrying", key, exc)
                self._retry_at[key] = self.clock() + 1.0
            except Exception as exc:  # unforeseen: one line per failure, backoff 5 s doubling to 5 min
                n = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(MAX_RETRY_S, 5.0 * 2 ** (n - 1))
                log.warning("%s: failed (%s: %s); attempt %d, retrying in %.0fs", key, type(exc).__name__, exc, n,
                            delay, exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
                self._retry_at[key] = self.clock() + delay
                self._reset_target(key)
            else:
                self._failures.pop(key, None)
            finally:
                self._inflight.discard(key)
                self._wake.set()
                if not self._inflight and self._batch_started is not None:
                    waits = sorted(self._batch_waits) or [0.0]
                    log.info("writes done: %d patches in %.2fs (request time mean %.3fs, p50 %.3fs, p90 %.3fs, "
                             "max %.3fs; event loop lag max %.3fs)", self.patches - self._batch_patches,
                             time.monotonic() - self._batch_started, sum(waits) / len(waits), waits[len(waits) // 2],
                             waits[len(waits) * 9 // 10], waits[-1], self._batch_lag)
                    self._batch_started = None
                    self._batch_waits = []
                    self._batch_lag = 0.0

    def _reset_target(self, key: str) -> None:
        agent = self.agents.get(key)
        if agent is not None:
            agent.target = None
