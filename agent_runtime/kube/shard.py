"""Shard mode: one pod of a RuntimePool's StatefulSet (or the same process started by a test).

It runs the standalone server (Host + HTTP/WebSocket API) over the pool's shared data volume and,
next to it:
- the controller: a watch on the Agents placed here (`fieldSelector=status.shard=<shard>`, a
  selectable field of the Agent CRD; an object that stops matching arrives as DELETED); an agent
  that arrives is activated (owner lock taken with bounded retries, spec applied to the host, log
  opened), one that leaves (re-placed, deleted) is released (hibernated: snapshot, log closed,
  lock dropped, its clients closed with 1012 so they reconnect through the router);
- the Lease heartbeat: Lease `<shard>` renewed every duration/3, carrying the shard's address;
  a shard that cannot renew for a whole duration releases its agents (it may have been replaced);
- the status reporter: every agent's phase/turns/tokens observed each second, patched to
  `Agent.status` coalesced and under a per-shard rate cap (`agent_runtime.kube.status`).

SIGTERM: stop watching, release every agent (snapshots written), then end the Lease at once (its
renewTime a whole duration back) so the operator re-places the agents without waiting for expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from agent_runtime import errors
from agent_runtime.actor import ActorConfig
from agent_runtime.auth import Role, TokenStore
from agent_runtime.host import AgentHandle, Host, HostConfig
from agent_runtime.kube import fence, folders
from agent_runtime.kube.client import (
    ApiError,
    Conflict,
    KubeClient,
    NotFound,
    Reflector,
    agents_path,
    leases_path,
    object_key,
)
from agent_runtime.kube.names import ADDRESS_ANNOTATION, DRAINING_ANNOTATION, POOL_LABEL, SHARD_FIELD
from agent_runtime.kube.status import AgentStatus, StatusBatcher, Tokens, owned_status_patch, rfc3339
from agent_runtime.kube.tokens import SharedTokenStore, ensure_admin_token
from agent_runtime.manifest import (
    DEFAULT_ON_DELETE, ON_DELETE_MODES, AgentManifest, ManifestError, manifest_from_object,
)
from agent_runtime.providers.registry import ProviderSettings, build_router
from agent_runtime.providers.simulated import SimulatedModelConfig, SimulatedProvider
from agent_runtime.server import make_app
from agent_runtime.server.shared import error_response
from agent_runtime.tools.registry import default_registry

log = logging.getLogger(__name__)

CLOSE_MOVED = 1012  # "service restart": reconnect (through the router) with your cursor
RETRY_FIRST_S = 1.0  # an agent that fails to activate is retried after 1, 2, 4 ... seconds
RETRY_MAX_S = 60.0


def retry_delay(failures: int) -> float:
    """The backoff after an agent's `failures`-th consecutive failed reconcile."""
    return float(min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** max(0, failures - 1)))


@dataclasses.dataclass(frozen=True, slots=True)
class ShardConfig:
    namespace: str
    pool: str
    shard: str
    data_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    advertise: str | None = None
    lease_duration_s: int = 15
    status_rate: float = 20.0  # patches per second, whole shard
    arrival_rate: float = 50.0  # first reports of agents that arrived (placement, drains), their own bucket
    status_interval_s: float = 1.0
    status_in_flight: int = 8  # most status patches awaiting the apiserver at once
    admin_token_file: Path | None = None
    auth: bool = True
    actor: ActorConfig = ActorConfig()
    model: SimulatedModelConfig = SimulatedModelConfig()
    lock_timeout_s: float = 30.0
    activate_concurrency: int = 16
    sqlite_threads: int = 2
    providers: ProviderSettings | None = None  # None: from the environment (the pool's ConfigMap)


def build_host(config: ShardConfig) -> Host:
    """The one place a shard builds its Host: the shard's provider router (the in-process simulated
    model plus one HTTP adapter per provider API over one session; endpoints from the pool's
    ConfigMap `AGENT_RUNTIME_<PROVIDER>_BASE_URL`, keys from `AGENT_RUNTIME_SECRETS_DIR` or the
    environment) and the built-in tools."""
    host_config = HostConfig(data_dir=config.data_dir, actor=config.actor, sqlite_threads=config.sqlite_threads)
    provider = build_router(SimulatedProvider(config.model), config.providers)
    return Host(host_config, provider, default_registry())


# -- what a shard reports about one agent -----------------------------------------------------------


def usage_totals(handle: AgentHandle) -> Tokens:
    """Token totals of one agent (from its live state, or the summary it left when it hibernated)."""
    actor = handle.actor
    if actor is not None:
        s = actor.state
        return Tokens(s.input_tokens, s.output_tokens, s.cache_read_tokens, s.cache_write_tokens)
    t = handle.summary.get("tokens") or {}
    return Tokens(int(t.get("input", 0)), int(t.get("output", 0)), int(t.get("cache_read", 0)), int(t.get("cache_write", 0)))


def agent_status(handle: AgentHandle) -> AgentStatus:
    actor = handle.actor
    if actor is not None and not actor.closing:
        s = actor.state
        waiting = any(decision is None for decision in s.approvals.values())
        phase = "WaitingApproval" if waiting else "Running"
        return AgentStatus(phase, s.turns, usage_totals(handle), s.last_activity,
                           compressions=s.compressions, cost_units=round(s.cost_units))
    summary = handle.summary
    compression = summary.get("compression") or {}
    return AgentStatus("Idle", int(summary.get("turns", 0)), usage_totals(handle), float(summary.get("last_activity", 0.0)),
                       compressions=int(compression.get("compressions", 0)), cost_units=round(float(summary.get("cost_units", 0.0))))


def manifest_of(obj: dict[str, Any]) -> AgentManifest:
    """The standalone manifest of an Agent object (`manifest_from_object`, which the operator's
    validation uses too)."""
    return manifest_from_object(obj)


def ready_conditions(observed: dict[str, Any], ready: bool, reason: str, message: str, now: float) -> list[dict[str, Any]]:
    """The observed conditions with only type Ready replaced (merge-patch replaces whole lists)."""
    conditions = [c for c in ((observed.get("status") or {}).get("conditions") or []) if isinstance(c, dict)]
    old = next((c for c in conditions if c.get("type") == "Ready"), None)
    status = "True" if ready else "False"
    changed = old is None or old.get("status") != status
    new = {"type": "Ready", "status": status, "reason": reason, "message": message,
           "lastTransitionTime": rfc3339(now) if changed else old.get("lastTransitionTime", rfc3339(now))}  # type: ignore[union-attr]
    return [c for c in conditions if c.get("type") != "Ready"] + [new]


# -- the controller -----------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Active:
    fd: int
    generation: int


class KeyQueue:
    """Keys to reconcile: each at most once in the queue, never two workers on one key."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self._again: set[str] = set()

    def add(self, key: str) -> None:
        if key in self._busy:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def get(self) -> str:
        key = await self._queue.get()
        self._queued.discard(key)
        self._busy.add(key)
        return key

    def done(self, key: str) -> None:
        self._busy.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def idle(self) -> bool:
        return not self._queued and not self._busy


class Shard:
    """The controller, Lease and status reporter of one shard, over a running Host."""

    def __init__(self, config: ShardConfig, host: Host, kube: KubeClient, address: str,
                 lease_kube: KubeClient | None = None) -> None:
        self.config = config
        self.host = host
        self.kube = kube
        # The heartbeat has its own connection pool: it never queues behind status patches.
        self.lease_kube = lease_kube or kube
        self.address = address
        self.desired: dict[str, dict[str, Any]] = {}  # key -> Agent object placed on this shard
        # Agents being deleted (deletionTimestamp seen) -> their spec.onDelete: the shard that
        # has one active releases it, then archives or removes its folder itself.
        self.deleting: dict[str, str] = {}
        self.disposals = 0
        self.active: dict[str, Active] = {}
        self.queue = KeyQueue()
        self.batcher = StatusBatcher(config.status_rate, now=time.monotonic(), arrival_rate=config.arrival_rate)
        self.reflector = Reflector(kube, agents_path(config.namespace), self._on_agent,
                                   field_selector=f"{SHARD_FIELD}={config.shard}")
        # its own Lease, watched: a drain (`agentctl drain`, the operator's scale-down) is known at
        # once, and activity reports are held while the agents move away
        self.lease_reflector = Reflector(lease_kube or kube, leases_path(config.namespace), self._on_own_lease,
                                         field_selector=f"metadata.name={config.shard}")
        self.lease_ok = asyncio.Event()
        self._kick = asyncio.Event()  # wakes the status loop when there is something to patch
        self.fenced = False  # could not renew the Lease for a whole duration
        self.patch_errors = 0
        self.disowned_patches = 0  # status patches the apiserver refused because the agent had moved on
        self.max_loop_lag_s = 0.0
        self.activations = 0
        self.releases = 0
        self.failures: dict[str, int] = {}  # key -> consecutive failed reconciles (backoff)
        self.invalid: dict[str, int] = {}  # key -> the generation whose spec we refused (reported Failed)

    # -- watch ----------------------------------------------------------------------------

    def _on_agent(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        placed_on = (obj.get("status") or {}).get("shard")
        if (obj.get("metadata") or {}).get("deletionTimestamp") and placed_on == self.config.shard:
            on_delete = (obj.get("spec") or {}).get("onDelete")
            self.deleting[key] = on_delete if on_delete in ON_DELETE_MODES else DEFAULT_ON_DELETE
        if kind == "DELETED" or placed_on != self.config.shard:
            if self.desired.pop(key, None) is not None:
                self.batcher.note_transition(time.monotonic())  # it left: a re-placement storm may be on
            self.batcher.forget(key)  # nothing more to report for an agent that left (release follows)
        else:
            if key not in self.desired:
                self.batcher.note_transition(time.monotonic())  # it arrived
            if kind == "ADDED":
                self.batcher.owned(key)  # placed here (again), or a re-list that says so
            self.desired[key] = obj
            sent = self.batcher.sent.get(key)
            if sent is not None and not self._shows(obj, sent):
                self.batcher.invalidate(key)  # overwritten (or an older write arrived): patch again
        self.queue.add(key)

    def _on_own_lease(self, kind: str, obj: dict[str, Any]) -> None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        draining = kind != "DELETED" and str(annotations.get(DRAINING_ANNOTATION, "")).lower() == "true"
        if draining != self.batcher.draining:
            log.info("shard %s: %s", self.config.shard, "draining" if draining else "not draining")
            self.batcher.draining = draining
            self._kick.set()

    def _shows(self, obj: dict[str, Any], sent: AgentStatus) -> bool:
        """Whether the object shows what this shard last patched (a previous owner's late patch,
        or the operator's Placed, may have overwritten it)."""
        status = obj.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), {})
        return (status.get("phase") == sent.phase and status.get("turns") == sent.turns
                and ready.get("message") == self.ready_message)

    @property
    def ready_message(self) -> str:
        return f"active on shard {self.config.shard}"

    def wanted(self, key: str) -> dict[str, Any] | None:
        obj = self.desired.get(key)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp") or self.fenced:
            return None
        return obj

    def starting(self, key: str) -> bool:
        """Placed on this shard but not active yet (requests get 503, retry)."""
        return key not in self.active and self.wanted(key) is not None

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.reconcile(key)
            except Exception as exc:
                await self._failed(key, exc)
            else:
                self.failures.pop(key, None)
            finally:
                self.queue.done(key)

    async def _failed(self, key: str, exc: Exception) -> None:
        """A reconcile failed for a reason we did not foresee: retried with backoff (1 s doubling to
        60 s), one log line each (the stack trace at DEBUG level only); an agent that could not be
        activated gets phase Failed with the error in its Ready condition (one still running its
        previous generation keeps running and reporting)."""
        n = self.failures.get(key, 0) + 1
        self.failures[key] = n
        delay = retry_delay(n)
        what = f"{type(exc).__name__}: {exc}"
        log.warning("%s: reconcile failed (%s); attempt %d, retrying in %.0fs", key, what, n, delay,
                    exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
        obj = self.desired.get(key)
        if obj is not None and key not in self.active:  # an active agent (a failed update) keeps running
            await self._report_failed(obj, "ActivationFailed", f"{what} (attempt {n}, retrying in {delay:.0f}s)")
        asyncio.get_running_loop().call_later(delay, self.queue.add, key)

    async def reconcile(self, key: str) -> None:
        obj = self.wanted(key)
        active = self.active.get(key)
        if obj is None:
            self.invalid.pop(key, None)
            if active is not None:
                await self.release(key)
                mode = self.deleting.pop(key, None)
                if mode is not None:
                    await self.dispose(key, mode)
            return
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        if active is None:
            if self.invalid.get(key) == generation:
                return  # its spec was refused and reported; a spec change (new generation) tries again
            await self.activate(key, obj)
        elif key not in self.host.handles:  # deleted through the API (DELETE on this shard)
            await self.release(key)
        elif active.generation != generation:
            try:
                manifest = manifest_of(obj)
            except ManifestError as exc:  # accepted by the apiserver (e.g. an older CRD), not by us
                log.warning("%s: invalid spec (%s); released until the spec changes", key, exc)
                self.invalid[key] = generation
                await self.release(key)
                await self._report_failed(obj, "InvalidSpec", str(exc))
                return
            await self.host.apply(manifest)
            active.generation = generation

    async def activate(self, key: str, obj: dict[str, Any]) -> None:
        try:
            manifest = manifest_of(obj)
        except ManifestError as exc:  # not retried: the next spec change (a watch event) brings a new try
            log.warning("%s: invalid spec (%s); not activated until the spec changes", key, exc)
            self.invalid[key] = int((obj.get("metadata") or {}).get("generation") or 0)
            await self._report_failed(obj, "InvalidSpec", str(exc))
            return
        folder = self.host.folder_of(manifest.metadata.namespace, manifest.metadata.name)
        try:
            fd = await fence.acquire(folder, self.config.shard, timeout_s=self.config.lock_timeout_s)
        except fence.LockTimeout as exc:
            log.warning("%s: %s; will retry", key, exc)
            asyncio.get_running_loop().call_later(1.0, self.queue.add, key)
            return
        try:
            if self.wanted(key) is None:  # it left while we waited for the lock
                await fence.release(fd)
                return
            await self.host.apply(manifest)
            await self.host.wake(key)  # open the log now: Running
        except BaseException:
            self.host.handles.pop(key, None)
            await fence.release(fd)
            raise
        self.active[key] = Active(fd, int((obj.get("metadata") or {}).get("generation") or 0))
        self.activations += 1
        handle = self.host.handles.get(key)
        if handle is not None:  # report Running now, not at the next observation tick
            self.batcher.observe(key, agent_status(handle))
            self._kick.set()

    async def dispose(self, key: str, mode: str) -> None:
        """Archive or remove the folder of a deleted agent this shard owned (after `release`: it
        takes the owner lock again, so no new owner can open the log meanwhile)."""
        namespace, name = key.split("/", 1)
        what = await asyncio.to_thread(folders.dispose, self.config.data_dir, namespace, name, mode)
        self.disposals += 1
        log.info("%s deleted: %s", key, what)

    def refuse_delete(self, key: str) -> str | None:
        """Why `DELETE /v1/agents/{ns}/{name}` is not served here, or None: an Agent is deleted
        through its object (kubectl delete), and its folder follows its `spec.onDelete`."""
        if key in self.deleting or key not in self.active:
            return None
        return "delete the Agent object (kubectl delete agent); its log folder follows spec.onDelete"

    async def release(self, key: str) -> None:
        """Hibernate the agent (snapshot, close the log), drop it from the host, unlock."""
        active = self.active.pop(key, None)
        handle = self.host.handles.get(key)
        if handle is not None:
            async with handle.lock:
                if self.host.handles.get(key) is handle:
                    del self.host.handles[key]  # from now on a wake of this key fails: not here any more
                for sub in list(handle.hub.subscribers):
                    ws = getattr(sub, "ws", None)
                    if ws is not None:
                        with contextlib.suppress(Exception):
                            await ws.close(code=CLOSE_MOVED, message=b"agent moved; reconnect with your cursor")
                actor = handle.actor
                if actor is not None:
                    if handle.task is not None:
                        handle.task.cancel()
                    await actor.closed.wait()
        if active is not None:
            await fence.release(active.fd)
            self.releases += 1
        self.batcher.forget(key)

    async def release_all(self) -> None:
        keys = list(self.active)
        sem = asyncio.Semaphore(self.config.activate_concurrency)

        async def one(key: str) -> None:
            async with sem:
                await self.release(key)

        async with asyncio.TaskGroup() as tg:
            for key in keys:
                tg.create_task(one(key))

    # -- Lease -----------------------------------------------------------------------------------

    def _lease_body(self, existing: dict[str, Any] | None, now_iso: str) -> dict[str, Any]:
        c = self.config
        body = existing or {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": c.shard, "namespace": c.namespace}, "spec": {}}
        meta = body.setdefault("metadata", {})
        meta.setdefault("labels", {})[POOL_LABEL] = c.pool
        meta.setdefault("annotations", {})[ADDRESS_ANNOTATION] = self.address
        spec = body.setdefault("spec", {})
        if spec.get("holderIdentity") != c.shard:
            spec["holderIdentity"] = c.shard
            spec["acquireTime"] = now_iso
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if existing else 0)
        spec["leaseDurationSeconds"] = c.lease_duration_s
        spec["renewTime"] = now_iso
        return body

    async def renew_lease(self, current: dict[str, Any] | None) -> dict[str, Any]:
        """Create or renew the Lease (optimistic concurrency: a Conflict re-reads and retries)."""
        path = leases_path(self.config.namespace)
        for _ in range(5):
            now_iso = _micro_time()
            if current is None:
                try:
                    current = await self.lease_kube.get(f"{path}/{self.config.shard}")
                except NotFound:
                    try:
                        return await self.lease_kube.create(path, self._lease_body(None, now_iso))
                    except Conflict:
                        continue  # created meanwhile
            try:
                return await self.lease_kube.replace(f"{path}/{self.config.shard}", self._lease_body(current, now_iso))
            except (Conflict, NotFound):
                current = None  # someone changed it (e.g. `agentctl drain`): re-read, keep their annotations
        raise ApiError(409, "Conflict", "lease kept changing")

    async def _lease_loop(self) -> None:
        period = self.config.lease_duration_s / 3
        lease: dict[str, Any] | None = None
        last_ok = time.monotonic()
        while True:
            try:
                started = time.monotonic()
                lease = await self.renew_lease(lease)
                last_ok = time.monotonic()
                if last_ok - started > period:
                    log.warning("Lease renewal took %.1fs (period %.1fs)", last_ok - started, period)
                self.lease_ok.set()
                if self.fenced:
                    log.warning("Lease renewed again: taking agents back")
                    self.fenced = False
                    for key in self.desired:
                        self.queue.add(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                lease = None
                log.warning("Lease renewal failed: %s", exc)
                if time.monotonic() - last_ok > self.config.lease_duration_s and not self.fenced:
                    log.error("Lease not renewed for %ss: releasing every agent (we may have been replaced)",
                              self.config.lease_duration_s)
                    self.fenced = True
                    await self.release_all()
                await asyncio.sleep(min(1.0, period))
                continue
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))  # every period, not period + latency

    # -- status ------------------------------------------------------------------------------------

    async def _report_failed(self, obj: dict[str, Any], reason: str, message: str) -> None:
        """Phase Failed with `message` in the Ready condition (best effort: a failed patch is logged).
        The operator keeps a shard's Failed while the agent stays on this shard."""
        meta = obj.get("metadata") or {}
        ops = owned_status_patch(self.config.shard, {
            "phase": "Failed", "conditions": ready_conditions(obj, False, reason, message, time.time())})
        try:
            await self.kube.json_patch(agents_path(meta.get("namespace"), meta.get("name"), status=True), ops)
        except Exception as exc:  # noqa: BLE001 - reporting must not turn one failure into another
            log.warning("could not report %s of %s: %s", reason, object_key(obj), exc)

    async def _patch_status(self, key: str, status: AgentStatus) -> None:
        """Report one agent's status, only while it is still placed here (`owned_status_patch`)."""
        obj = self.desired.get(key)
        ok = False
        try:
            if obj is None:
                ok = True  # it left meanwhile: nothing to report (forgotten already)
                return
            ns, name = key.split("/", 1)
            fields = status.fields()
            observed = [c for c in ((obj.get("status") or {}).get("conditions") or []) if isinstance(c, dict)]
            conditions = ready_conditions(obj, status.ready, "Active", self.ready_message, time.time())
            if conditions != observed:  # Ready as we want it is already there: leave the list alone
                fields["conditions"] = conditions
            kind = "transition" if self.batcher.is_transition(key, status) else "activity"
            await self.kube.json_patch(agents_path(ns, name, status=True), owned_status_patch(self.config.shard, fields))
            self.host.metrics.status_patches_by[kind] += 1
            ok = True
        except NotFound:
            ok = True  # gone: nothing to report
        except ApiError as exc:
            if exc.status != 422 or " is invalid" in exc.message:  # not the test op (e.g. schema validation)
                self.patch_errors += 1
                log.warning("status patch of %s failed: %s", key, exc)
            else:  # the test op failed: status.shard names another shard now (our watch will say so too)
                self.disowned_patches += 1
                self.host.metrics.status_patches_by["refused"] += 1
                log.info("status patch of %s refused: no longer placed on %s (%s)", key, self.config.shard, exc.message)
                self.batcher.refused(key)  # not reported again until our watch says where it is
        except Exception as exc:
            self.patch_errors += 1
            log.warning("status patch of %s failed: %s", key, exc)
        finally:
            self.batcher.done(key, status, ok)
            self._kick.set()

    async def _status_loop(self, tg: asyncio.TaskGroup) -> None:
        interval = self.config.status_interval_s
        next_observe = 0.0
        while True:
            now = time.monotonic()
            if now >= next_observe:
                for key in list(self.active):
                    handle = self.host.handles.get(key)
                    if handle is not None and key in self.desired:  # not for an agent being released
                        self.batcher.observe(key, agent_status(handle))
                next_observe = now + interval
            room = self.config.status_in_flight - len(self.batcher.in_flight)  # slow apiserver: coalesce more
            for key, status in self.batcher.take(now, limit=max(0, room)):
                tg.create_task(self._patch_status(key, status))
            now = time.monotonic()
            full = len(self.batcher.in_flight) >= self.config.status_in_flight  # a finished patch kicks us
            delay = max(0.01, min(next_observe - now, float("inf") if full else self.batcher.wait_s(now)))
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._kick.wait()

    async def _lag_monitor(self) -> None:
        """Log when the event loop falls behind (a late Lease renewal's usual cause)."""
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.5)
            lag = time.monotonic() - t0 - 0.5
            self.max_loop_lag_s = max(self.max_loop_lag_s, lag)
            if lag > 1.0:
                log.warning("event loop %.1fs late", lag)

    # -- run ---------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            lease = tg.create_task(self._lease_loop(), name="lease")
            watch = tg.create_task(self.reflector.run(), name="watch-agents")
            own_lease = tg.create_task(self.lease_reflector.run(), name="watch-own-lease")
            workers = [tg.create_task(self._worker(), name=f"reconcile-{i}") for i in range(self.config.activate_concurrency)]
            status = tg.create_task(self._status_loop(tg), name="status")
            lag = tg.create_task(self._lag_monitor(), name="lag")
            await stop.wait()
            watch.cancel()
            own_lease.cancel()
            for w in workers:
                w.cancel()
            status.cancel()
            lag.cancel()
            await self.release_all()
            lease.cancel()
            await asyncio.wait([lease])  # no renewal may land after the Lease is given up
            await self.give_up_lease()
            # (status patches still in flight finish with the TaskGroup)

    async def give_up_lease(self) -> None:
        """A graceful stop (every agent released) ends the Lease at once — its renewTime moved a
        whole duration back — so the operator re-places the agents now instead of after the Lease
        would have expired (a rolling update no longer costs one Lease duration of downtime). A
        restarted shard renews it as usual. Best effort: on failure the Lease simply expires."""
        path = f"{leases_path(self.config.namespace)}/{self.config.shard}"
        body = {"spec": {"renewTime": _micro_time(-(self.config.lease_duration_s + 1))}}
        try:
            await asyncio.wait_for(self.lease_kube.merge_patch(path, body), timeout=5)
        except Exception as exc:  # noqa: BLE001 - best effort at shutdown
            log.warning("could not end the Lease on stop (it will expire): %s", exc)


def _micro_time(offset_s: float = 0.0) -> str:
    import datetime

    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset_s)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _starting_middleware(shard: Shard, tokens: TokenStore) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.rstrip("/") == "/v1/agents" and request.method == "POST":
            # Agents come through the Agent watch (owner lock first); one created here would write
            # a log on the shared volume without the lock, next to its real owner.
            return error_response(errors.NotSupported("in Kubernetes mode agents are managed with kubectl (kubectl apply agents)"))
        ns, name = request.match_info.get("namespace"), request.match_info.get("name")
        if ns and name and request.method == "DELETE" and request.path.rstrip("/") == f"/v1/agents/{ns}/{name}":
            # The Agent object owns deletion: the shard that holds the agent archives or removes
            # its folder (spec.onDelete) when it sees the deletion timestamp; never rmtree here.
            TokenStore.authorize(tokens.authenticate(request.headers.get("Authorization")), ns, name, Role.ADMIN)
            why = shard.refuse_delete(f"{ns}/{name}")
            if why is not None:
                return error_response(errors.Error(why, code="conflict"))
            accepted: dict[str, object] = {
                "accepted": True, "message": "the owning shard disposes of the folder per spec.onDelete"}
            return web.Response(body=orjson.dumps(accepted), status=202, content_type="application/json")
        if ns and name and shard.starting(f"{ns}/{name}"):
            starting = error_response(errors.Error(f"agent {ns}/{name} is starting on shard {shard.config.shard}; retry",
                                                   code="agent_starting"))
            starting.headers["Retry-After"] = "1"
            return starting
        response: web.StreamResponse = await handler(request)
        return response

    return middleware


@dataclasses.dataclass(slots=True)
class RunningShard:
    shard: Shard
    host: Host
    url: str
    admin_token: str | None


@contextlib.asynccontextmanager
async def run_shard(config: ShardConfig, kube: KubeClient) -> AsyncIterator[RunningShard]:
    """Serve the shard's API and run its controller until the context exits (then release all)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    token_file = config.admin_token_file or config.data_dir / "admin.token"
    admin = await asyncio.to_thread(ensure_admin_token, token_file) if config.auth else None
    tokens = await asyncio.to_thread(SharedTokenStore, config.data_dir / "tokens.json", admin, config.auth)
    async with build_host(config) as host, KubeClient(kube.config) as lease_kube:
        shard = Shard(config, host, kube, address="", lease_kube=lease_kube)
        app = make_app(host, tokens)
        app.middlewares.append(_starting_middleware(shard, tokens))
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, config.listen_host, config.listen_port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []  # noqa: SLF001
        port = int(sockets[0].getsockname()[1]) if sockets else config.listen_port
        url = f"http://{config.listen_host}:{port}"
        shard.address = config.advertise or url
        stop = asyncio.Event()
        task = asyncio.create_task(shard.run(stop), name="shard")
        token_watch = asyncio.create_task(tokens.watch(), name="tokens")  # other shards' new tokens
        try:
            yield RunningShard(shard, host, url, admin)
        finally:
            stop.set()
            token_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(asyncio.CancelledError):
                await token_watch
            await runner.cleanup()


async def serve_shard(config: ShardConfig, kubeconfig: str | None) -> None:
    """`agentctl shard`: run until SIGTERM/SIGINT, then release every agent and exit."""
    from agent_runtime.kube.client import connect

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with connect(kubeconfig) as kube, run_shard(config, kube) as running:
        print(f"shard {config.shard} of pool {config.namespace}/{config.pool} listening on {running.url} "
              f"(advertised {running.shard.address}, pid {os.getpid()})", flush=True)
        await stop.wait()
        print(f"shard {config.shard}: stopping, releasing {len(running.shard.active)} agents", flush=True)
