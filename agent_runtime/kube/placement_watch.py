"""A shard's placement watch: the Agents placed on this shard, activated and released to match.

It watches `fieldSelector=status.shard=<shard>` (a selectable field of the Agent CRD; an object
that stops matching arrives as DELETED) and queues each changed key (`KeyQueue`: once in the
queue, never two workers on one key). A worker reconciles the key: an agent that arrived is
activated (owner lock taken with bounded retries, spec applied to the host, log opened); a spec
change is applied; one that left (re-placed, deleted, or the shard lost its Lease) is released
(hibernated: snapshot, log closed, lock dropped, its clients closed with 1012 so they reconnect
through the router); a deleted one this shard held then has its folder archived or removed
(`spec.onDelete`). A reconcile that fails in a way nobody foresaw is retried with backoff
(`RETRY`: 1 s doubling to 60 s) and reported Failed if the agent could not be activated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from agent_runtime.backoff import Backoff
from agent_runtime.host import Host
from agent_runtime.kube import fence, folders
from agent_runtime.kube.client import KubeClient, Reflector, agents_path, object_key
from agent_runtime.kube.names import CLOSE_MOVED, SHARD_FIELD
from agent_runtime.kube.reporter import StatusReporter
from agent_runtime.manifest import (
    DEFAULT_ON_DELETE, ON_DELETE_MODES, AgentManifest, ManifestError, manifest_from_object,
)

log = logging.getLogger(__name__)

RETRY = Backoff(first_s=1.0, cap_s=60.0, jitter=False)  # an agent that fails to activate: 1, 2, 4 ... 60 s


def retry_delay(failures: int) -> float:
    """The backoff after an agent's `failures`-th consecutive failed reconcile."""
    return RETRY.delay(failures - 1)


def manifest_of(obj: dict[str, Any]) -> AgentManifest:
    """The standalone manifest of an Agent object (`manifest_from_object`, which the operator's
    validation uses too)."""
    return manifest_from_object(obj)


def generation_of(obj: dict[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


@dataclasses.dataclass(slots=True)
class Active:
    """An agent active on this shard: the fd holding its owner lock, the spec generation it runs."""

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


class PlacementWatch:
    """The Agents placed on shard `shard`, made active on `host` (or released) to match.

    `fenced()` says whether the shard lost its Lease (then no agent is wanted here)."""

    def __init__(self, kube: KubeClient, host: Host, reporter: StatusReporter, *, namespace: str, shard: str,
                 data_dir: Path, lock_timeout_s: float, concurrency: int, fenced: Callable[[], bool]) -> None:
        self.host = host
        self.reporter = reporter
        self.shard = shard
        self.data_dir = data_dir
        self.lock_timeout_s = lock_timeout_s
        self.concurrency = concurrency  # reconcile workers, and releases at once
        self.fenced = fenced
        self.desired: dict[str, dict[str, Any]] = {}  # key -> Agent object placed on this shard
        # Agents being deleted (deletionTimestamp seen) -> their spec.onDelete: the shard that
        # has one active releases it, then archives or removes its folder itself.
        self.deleting: dict[str, str] = {}
        self.disposals = 0
        self.active: dict[str, Active] = {}
        self.queue = KeyQueue()
        self.activations = 0
        self.releases = 0
        self.failures: dict[str, int] = {}  # key -> consecutive failed reconciles (backoff)
        self.invalid: dict[str, int] = {}  # key -> the generation whose spec we refused (reported Failed)
        self.reflector = Reflector(kube, agents_path(namespace), self._on_agent,
                                   field_selector=f"{SHARD_FIELD}={shard}")

    # -- what the watch says -------------------------------------------------------------------

    def _on_agent(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        placed_on = (obj.get("status") or {}).get("shard")
        if (obj.get("metadata") or {}).get("deletionTimestamp") and placed_on == self.shard:
            on_delete = (obj.get("spec") or {}).get("onDelete")
            self.deleting[key] = on_delete if on_delete in ON_DELETE_MODES else DEFAULT_ON_DELETE
        if kind == "DELETED" or placed_on != self.shard:
            self.reporter.left(key, was_here=self.desired.pop(key, None) is not None)
        else:
            self.reporter.arrived(kind, key, obj, new=key not in self.desired)
            self.desired[key] = obj
        self.queue.add(key)

    def placed(self, key: str) -> dict[str, Any] | None:
        return self.desired.get(key)

    def reportable(self) -> Iterator[str]:
        return (key for key in list(self.active) if key in self.desired)

    def wanted(self, key: str) -> dict[str, Any] | None:
        obj = self.desired.get(key)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp") or self.fenced():
            return None
        return obj

    def starting(self, key: str) -> bool:
        """Placed on this shard but not active yet (requests get 503, retry)."""
        return key not in self.active and self.wanted(key) is not None

    def refuse_delete(self, key: str) -> str | None:
        """Why `DELETE /v1/agents/{ns}/{name}` is not served here, or None: an Agent is deleted
        through its object (kubectl delete), and its folder follows its `spec.onDelete`."""
        if key in self.deleting or key not in self.active:
            return None
        return "delete the Agent object (kubectl delete agent); its log folder follows spec.onDelete"

    def requeue_all(self) -> None:
        """Reconcile every agent placed here again (the Lease is back: take them back)."""
        for key in self.desired:
            self.queue.add(key)

    # -- reconcile -----------------------------------------------------------------------------

    async def worker(self) -> NoReturn:
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
            await self.reporter.report_failed(obj, "ActivationFailed", f"{what} (attempt {n}, retrying in {delay:.0f}s)")
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
        generation = generation_of(obj)
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
                await self.reporter.report_failed(obj, "InvalidSpec", str(exc))
                return
            await self.host.apply(manifest)
            active.generation = generation

    async def activate(self, key: str, obj: dict[str, Any]) -> None:
        try:
            manifest = manifest_of(obj)
        except ManifestError as exc:  # not retried: the next spec change (a watch event) brings a new try
            log.warning("%s: invalid spec (%s); not activated until the spec changes", key, exc)
            self.invalid[key] = generation_of(obj)
            await self.reporter.report_failed(obj, "InvalidSpec", str(exc))
            return
        folder = self.host.folder_of(manifest.metadata.namespace, manifest.metadata.name)
        try:
            fd = await fence.acquire(folder, self.shard, timeout_s=self.lock_timeout_s)
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
        self.active[key] = Active(fd, generation_of(obj))
        self.activations += 1
        self.reporter.observe_now(key)  # report Running now, not at the next observation tick

    async def dispose(self, key: str, mode: str) -> None:
        """Archive or remove the folder of a deleted agent this shard owned (after `release`: it
        takes the owner lock again, so no new owner can open the log meanwhile)."""
        namespace, name = key.split("/", 1)
        what = await asyncio.to_thread(folders.dispose, self.data_dir, namespace, name, mode)
        self.disposals += 1
        log.info("%s deleted: %s", key, what)

    # -- release -------------------------------------------------------------------------------

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
        self.reporter.forget(key)

    async def release_all(self) -> None:
        """Release every active agent, `concurrency` at a time."""
        keys = list(self.active)
        sem = asyncio.Semaphore(self.concurrency)

        async def one(key: str) -> None:
            async with sem:
                await self.release(key)

        async with asyncio.TaskGroup() as tg:
            for key in keys:
                tg.create_task(one(key))
