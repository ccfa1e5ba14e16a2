"""A shard's status reporter: what each agent placed here is doing, patched to `Agent.status`.

Every `interval_s` (1 s) it observes the phase/turns/tokens of each agent active here; the
decisions — which changes to send, coalesced, transitions first, under the shard's rate caps —
are `StatusBatcher`'s (`agent_runtime.kube.status`, sans-IO). This module is the IO around it: the
loop that observes and takes, and the JSON patches, each one `owned_status_patch` (applied only
while `status.shard` still names this shard), at most `in_flight` awaiting the apiserver at once.

The placement watch tells it what arrives and leaves (`arrived`, `left`), what was activated
(`observe_now`) and what could not be (`report_failed`); the Lease tells it when the shard
drains (`set_draining`: activity reports are held while the agents move away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from agent_runtime.host import AgentHandle, Host
from agent_runtime.kube.client import ApiError, KubeClient, NotFound, agents_path, object_key
from agent_runtime.kube.status import AgentStatus, StatusBatcher, Tokens, owned_status_patch, rfc3339

log = logging.getLogger(__name__)


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


def ready_conditions(observed: dict[str, Any], ready: bool, reason: str, message: str, now: float) -> list[dict[str, Any]]:
    """The observed conditions with only type Ready replaced (merge-patch replaces whole lists)."""
    conditions = [c for c in ((observed.get("status") or {}).get("conditions") or []) if isinstance(c, dict)]
    old = next((c for c in conditions if c.get("type") == "Ready"), None)
    status = "True" if ready else "False"
    changed = old is None or old.get("status") != status
    new = {"type": "Ready", "status": status, "reason": reason, "message": message,
           "lastTransitionTime": rfc3339(now) if changed else old.get("lastTransitionTime", rfc3339(now))}  # type: ignore[union-attr]
    return [c for c in conditions if c.get("type") != "Ready"] + [new]


class Placed(Protocol):
    """What the reporter asks the placement watch (`PlacementWatch` answers)."""

    def placed(self, key: str) -> dict[str, Any] | None:
        """The Agent object placed on this shard under `key`, or None (it left, or never came)."""

    def reportable(self) -> Iterable[str]:
        """The agents active here and still placed here (not one being released)."""


class StatusReporter:
    def __init__(self, kube: KubeClient, host: Host, shard: str, *, rate: float, arrival_rate: float,
                 interval_s: float, in_flight: int) -> None:
        self.kube = kube
        self.host = host
        self.shard = shard
        self.interval_s = interval_s
        self.in_flight = in_flight  # most status patches awaiting the apiserver at once
        self.batcher = StatusBatcher(rate, now=time.monotonic(), arrival_rate=arrival_rate)
        self._kick = asyncio.Event()  # wakes the status loop when there is something to patch
        self.patch_errors = 0
        self.disowned_patches = 0  # status patches the apiserver refused because the agent had moved on

    @property
    def ready_message(self) -> str:
        return f"active on shard {self.shard}"

    # -- what the placement watch and the Lease tell it ---------------------------------------------

    def arrived(self, kind: str, key: str, obj: dict[str, Any], new: bool) -> None:
        """A watch event of an agent placed here (`new`: it was not placed here before)."""
        if new:
            self.batcher.note_transition(time.monotonic())  # it arrived
        if kind == "ADDED":
            self.batcher.owned(key)  # placed here (again), or a re-list that says so
        sent = self.batcher.sent.get(key)
        if sent is not None and not self.shows(obj, sent):
            self.batcher.invalidate(key)  # overwritten (or an older write arrived): patch again

    def left(self, key: str, was_here: bool) -> None:
        """A watch event of an agent not (or no longer) placed here."""
        if was_here:
            self.batcher.note_transition(time.monotonic())  # it left: a re-placement storm may be on
        self.batcher.forget(key)  # nothing more to report for an agent that left (release follows)

    def forget(self, key: str) -> None:
        """The agent was released: nothing more to report for it."""
        self.batcher.forget(key)

    def observe_now(self, key: str) -> None:
        """Report the agent now (just activated: Running), not at the next observation tick."""
        handle = self.host.handles.get(key)
        if handle is not None:
            self.batcher.observe(key, agent_status(handle))
            self._kick.set()

    def set_draining(self, draining: bool) -> None:
        """The shard's Lease says draining (or no longer): hold (or release) activity reports."""
        self.batcher.draining = draining
        self._kick.set()

    def shows(self, obj: dict[str, Any], sent: AgentStatus) -> bool:
        """Whether the object shows what this shard last patched (a previous owner's late patch,
        or the operator's Placed, may have overwritten it)."""
        status = obj.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), {})
        return (status.get("phase") == sent.phase and status.get("turns") == sent.turns
                and ready.get("message") == self.ready_message)

    # -- patches -----------------------------------------------------------------------------------

    async def report_failed(self, obj: dict[str, Any], reason: str, message: str) -> None:
        """Phase Failed with `message` in the Ready condition (best effort: a failed patch is logged).
        The operator keeps a shard's Failed while the agent stays on this shard."""
        meta = obj.get("metadata") or {}
        ops = owned_status_patch(self.shard, {
            "phase": "Failed", "conditions": ready_conditions(obj, False, reason, message, time.time())})
        try:
            await self.kube.json_patch(agents_path(meta.get("namespace"), meta.get("name"), status=True), ops)
        except Exception as exc:  # noqa: BLE001 - reporting must not turn one failure into another
            log.warning("could not report %s of %s: %s", reason, object_key(obj), exc)

    async def _patch_status(self, placement: Placed, key: str, status: AgentStatus) -> None:
        """Report one agent's status, only while it is still placed here (`owned_status_patch`)."""
        obj = placement.placed(key)
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
            await self.kube.json_patch(agents_path(ns, name, status=True), owned_status_patch(self.shard, fields))
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
                log.info("status patch of %s refused: no longer placed on %s (%s)", key, self.shard, exc.message)
                self.batcher.refused(key)  # not reported again until our watch says where it is
        except Exception as exc:
            self.patch_errors += 1
            log.warning("status patch of %s failed: %s", key, exc)
        finally:
            self.batcher.done(key, status, ok)
            self._kick.set()

    async def run(self, placement: Placed, patches: asyncio.TaskGroup) -> None:
        """The status loop (until cancelled): observe every `interval_s`, hand what the batcher lets
        go to `patches` (a TaskGroup of the caller's: patches in flight finish even after this loop
        is cancelled)."""
        next_observe = 0.0
        while True:
            now = time.monotonic()
            if now >= next_observe:
                for key in list(placement.reportable()):
                    handle = self.host.handles.get(key)
                    if handle is not None:
                        self.batcher.observe(key, agent_status(handle))
                next_observe = now + self.interval_s
            room = self.in_flight - len(self.batcher.in_flight)  # slow apiserver: coalesce more
            for key, status in self.batcher.take(now, limit=max(0, room)):
                patches.create_task(self._patch_status(placement, key, status))
            now = time.monotonic()
            full = len(self.batcher.in_flight) >= self.in_flight  # a finished patch kicks us
            delay = max(0.01, min(next_observe - now, float("inf") if full else self.batcher.wait_s(now)))
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._kick.wait()
