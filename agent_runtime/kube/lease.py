"""A shard's Lease: the heartbeat that says the shard is alive and where it listens.

Lease `<shard>` (coordination.k8s.io/v1, in the pool's namespace) carries the pool label and the
shard's address (annotation, read by the router). It is renewed every duration/3 — create or
replace with optimistic concurrency; a Conflict re-reads it, keeping annotations others wrote
(`agentctl drain`). A shard that cannot renew for a whole duration has *lost* its Lease (it may
have been replaced): `on_lost` releases its agents; a later renewal takes them back
(`on_regained`). On a graceful stop `give_up` ends the Lease at once (renewTime a whole duration
back) so the operator re-places the agents without waiting for expiry.

The shard also watches its own Lease (`reflector`): a drain (the `draining` annotation, written by
`agentctl drain` or the operator's scale-down) is known at once and handed to `on_draining`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from agent_runtime.kube.client import ApiError, Conflict, KubeClient, NotFound, Reflector, leases_path
from agent_runtime.kube.names import ADDRESS_ANNOTATION, DRAINING_ANNOTATION, POOL_LABEL

log = logging.getLogger(__name__)


def micro_time(offset_s: float = 0.0) -> str:
    """A Lease timestamp (MicroTime) `offset_s` from now."""
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset_s)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    """The Lease of shard `shard` of pool `namespace/pool`, over its own client (the heartbeat has
    its own connection pool: it never queues behind status patches)."""

    def __init__(self, kube: KubeClient, namespace: str, pool: str, shard: str, duration_s: int,
                 on_draining: Callable[[bool], None]) -> None:
        self.kube = kube
        self.namespace = namespace
        self.pool = pool
        self.shard = shard
        self.duration_s = duration_s
        self.address = ""  # the base URL the router uses; set once the server is bound
        self.ok = asyncio.Event()  # renewed at least once
        self.lost = False  # could not renew for a whole duration (agents released until renewed)
        self.draining = False
        self._on_draining = on_draining
        self.reflector = Reflector(kube, leases_path(namespace), self._on_own_lease,
                                   field_selector=f"metadata.name={shard}")

    @property
    def path(self) -> str:
        return f"{leases_path(self.namespace)}/{self.shard}"

    def _on_own_lease(self, kind: str, obj: dict[str, Any]) -> None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        draining = kind != "DELETED" and str(annotations.get(DRAINING_ANNOTATION, "")).lower() == "true"
        if draining != self.draining:
            log.info("shard %s: %s", self.shard, "draining" if draining else "not draining")
            self.draining = draining
            self._on_draining(draining)

    def body(self, existing: dict[str, Any] | None, now_iso: str) -> dict[str, Any]:
        """The Lease to write: `existing` (or a new one) held by this shard, renewed at `now_iso`."""
        body = existing or {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": self.shard, "namespace": self.namespace}, "spec": {}}
        meta = body.setdefault("metadata", {})
        meta.setdefault("labels", {})[POOL_LABEL] = self.pool
        meta.setdefault("annotations", {})[ADDRESS_ANNOTATION] = self.address
        spec = body.setdefault("spec", {})
        if spec.get("holderIdentity") != self.shard:
            spec["holderIdentity"] = self.shard
            spec["acquireTime"] = now_iso
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if existing else 0)
        spec["leaseDurationSeconds"] = self.duration_s
        spec["renewTime"] = now_iso
        return body

    async def renew(self, current: dict[str, Any] | None) -> dict[str, Any]:
        """Create or renew the Lease (optimistic concurrency: a Conflict re-reads and retries)."""
        collection = leases_path(self.namespace)
        for _ in range(5):
            now_iso = micro_time()
            if current is None:
                try:
                    current = await self.kube.get(self.path)
                except NotFound:
                    try:
                        return await self.kube.create(collection, self.body(None, now_iso))
                    except Conflict:
                        continue  # created meanwhile
            try:
                return await self.kube.replace(self.path, self.body(current, now_iso))
            except (Conflict, NotFound):
                current = None  # someone changed it (e.g. `agentctl drain`): re-read, keep their annotations
        raise ApiError(409, "Conflict", "lease kept changing")

    async def run(self, on_lost: Callable[[], Awaitable[None]], on_regained: Callable[[], None]) -> NoReturn:
        """The heartbeat (until cancelled): renew every duration/3, on time (not period + latency)."""
        period = self.duration_s / 3
        lease: dict[str, Any] | None = None
        last_ok = time.monotonic()
        while True:
            try:
                started = time.monotonic()
                lease = await self.renew(lease)
                last_ok = time.monotonic()
                if last_ok - started > period:
                    log.warning("Lease renewal took %.1fs (period %.1fs)", last_ok - started, period)
                self.ok.set()
                if self.lost:
                    log.warning("Lease renewed again: taking agents back")
                    self.lost = False
                    on_regained()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                lease = None
                log.warning("Lease renewal failed: %s", exc)
                if time.monotonic() - last_ok > self.duration_s and not self.lost:
                    log.error("Lease not renewed for %ss: releasing every agent (we may have been replaced)",
                              self.duration_s)
                    self.lost = True
                    await on_lost()
                await asyncio.sleep(min(1.0, period))
                continue
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))  # every period, not period + latency

    async def give_up(self) -> None:
        """A graceful stop (every agent released) ends the Lease at once — its renewTime moved a
        whole duration back — so the operator re-places the agents now instead of after the Lease
        would have expired (a rolling update no longer costs one Lease duration of downtime). A
        restarted shard renews it as usual. Best effort: on failure the Lease simply expires."""
        body = {"spec": {"renewTime": micro_time(-(self.duration_s + 1))}}
        try:
            await asyncio.wait_for(self.kube.merge_patch(self.path, body), timeout=5)
        except Exception as exc:  # noqa: BLE001 - best effort at shutdown
            log.warning("could not end the Lease on stop (it will expire): %s", exc)
