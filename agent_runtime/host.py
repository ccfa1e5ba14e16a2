"""The host: every agent of one shard (one process), by key, awake or hibernated.

It maps `namespace/name` to an `AgentHandle` (a small stub: manifest, hub, a summary) and starts
the `AgentActor` on demand. Actor tasks belong to the host's `TaskGroup`; an actor that returns
has hibernated (snapshot written, log closed) and is woken again by the next message, client
or read. At boot the host finds every agent on disk and wakes those whose last turn a crash cut
short, so they finish by themselves.

A damaged event log (`LogCorrupt`, at boot, on a wake, a read or a commit) quarantines its agent
only: phase `failed` (reason `corrupt`), its actor stopped, its clients told, every request for it
answered `log_corrupt`, its files left as they are until `agent_runtime.recovery` salvages them
(docs/durability.md). This module is a little over 400 lines: the quarantine guards wake and boot,
and belongs beside them.

Files: `<data_dir>/agents/<namespace>/<name>/{manifest.yaml, events.db, workspace/}` (`agent_runtime.layout`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import yaml

from agent_runtime import atomicfile, errors, layout
from agent_runtime.agent.actor import ActorConfig, AgentActor
from agent_runtime.agent.mail import AgentStopped, InterruptMail, UnknownToolCall, UserMail
from agent_runtime.eventlog.base import LogClosed, LogCorrupt
from agent_runtime.eventlog.executor import SqliteExecutor
from agent_runtime.eventlog.sqlite import SqliteEventLog
from agent_runtime.events import Event, EventKind
from agent_runtime.agent.hub import Hub, Subscriber
from agent_runtime.manifest import AgentManifest, load_manifests_text
from agent_runtime.metrics import Metrics
from agent_runtime.providers.base import Provider
from agent_runtime.providers.retry import RetryBudget
from agent_runtime.tools.landlock import abi_version
from agent_runtime.tools.registry import ToolRegistry
from agent_runtime.tools.sandbox import landlock_available

log = logging.getLogger(__name__)


class AgentNotFound(errors.Error, KeyError, code="agent_not_found"):
    """No agent with this key on this host."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no agent {self.key!r}"


@dataclasses.dataclass(frozen=True, slots=True)
class HostConfig:
    data_dir: Path
    actor: ActorConfig = ActorConfig()
    max_running_tools: int = 32
    sqlite_threads: int = 2
    tool_io_threads: int = 2


@dataclasses.dataclass(slots=True)
class AgentHandle:
    """What the host keeps for every agent, awake or not."""

    manifest: AgentManifest
    folder: Path
    hub: Hub = dataclasses.field(default_factory=Hub)
    actor: AgentActor | None = None
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    wakes: int = 0
    task: asyncio.Task[None] | None = None  # runs the awake actor
    retry_budget: RetryBudget | None = None  # the agent's model retries: outlives its actors (hibernation)
    failure: LogCorrupt | None = None  # quarantined: its log is damaged (until `recovery.recover`)

    @property
    def key(self) -> str:
        return self.manifest.key

    def refuse_if_failed(self) -> None:
        """Raise (a copy of) the error that quarantined this agent, if any."""
        if self.failure is not None:
            raise self.failure.again()

    def phase(self) -> str:
        if self.failure is not None:
            return "failed"
        actor = self.actor
        if actor is None or actor.closing:
            return "hibernated"
        return "running" if actor.state.running else "idle"


class Host:
    """All agents of one process. Use as `async with Host(...) as host:`."""

    def __init__(self, config: HostConfig, provider: Provider, tools: ToolRegistry, metrics: Metrics | None = None) -> None:
        self.config = config
        self.provider = provider
        self.tools = tools
        self.metrics = metrics or Metrics()
        self.handles: dict[str, AgentHandle] = {}
        self.executor = SqliteExecutor(max_workers=config.sqlite_threads)
        # Blocking file IO of tools (write_file, big reads): a small fixed pool, never a thread per call.
        self.tool_io = concurrent.futures.ThreadPoolExecutor(max_workers=config.tool_io_threads, thread_name_prefix="tool-io")
        self.tool_slots = asyncio.Semaphore(config.max_running_tools)
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Host:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        assert self._tg is not None
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            self._tg = None
            await self._close_pools()
            await self.provider.aclose()

    async def _close_pools(self) -> None:
        """Join the SQLite and tool-IO pools — off the loop: a file-IO job still running (a big
        read on a slow disk) must not stall the other work of the loop meanwhile. One short-lived
        thread does the joining; the host's exit waits for it."""
        loop = asyncio.get_running_loop()
        joined: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not joined.done():
                joined.set_result(None)

        def join() -> None:
            try:
                self.executor.close()
                self.tool_io.shutdown(wait=True, cancel_futures=True)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(wake)

        threading.Thread(target=join, name="host-pools-join", daemon=True).start()
        await asyncio.shield(joined)

    # -- agents ---------------------------------------------------------------------------------

    def folder_of(self, namespace: str, name: str) -> Path:
        return layout.agent_folder(self.config.data_dir, namespace, name)

    def get(self, key: str) -> AgentHandle:
        handle = self.handles.get(key)
        if handle is None:
            raise AgentNotFound(key)
        return handle

    def _log(self, handle: AgentHandle) -> SqliteEventLog:
        return SqliteEventLog(layout.event_log(handle.folder), self.executor,
                              on_corrupt=lambda exc: self._quarantine(handle, exc))

    def _quarantine(self, handle: AgentHandle, exc: LogCorrupt) -> None:
        """Stop the actor of a damaged log and tell its clients (its files are left as they are)."""
        if handle.failure is not None:
            return
        handle.failure = exc
        log.error("agent %s quarantined: %s (recover with `agentctl recover %s`)", handle.key, exc, handle.key)
        if handle.task is not None and not handle.task.done():
            handle.task.cancel()
        for sub in tuple(handle.hub.subscribers):
            failed = getattr(sub, "agent_failed", None)  # a WebSocket client: error frame, then close
            if failed is not None:
                failed(exc)

    async def apply(self, manifest: AgentManifest) -> tuple[AgentHandle, bool]:
        """Create or update an agent from its manifest. Returns (handle, created)."""
        folder = self.folder_of(manifest.metadata.namespace, manifest.metadata.name)
        known = self.handles.get(manifest.key)
        if known is None or known.manifest != manifest:
            text = yaml.dump(manifest.to_dict(), Dumper=_YAML_DUMPER, sort_keys=False)
            await self.executor.run(lambda: _write_manifest(folder, text))
        handle = self.handles.get(manifest.key)  # again: no await between this and what follows
        if handle is None:
            handle = AgentHandle(manifest=manifest, folder=folder)
            self.handles[manifest.key] = handle
            return handle, True
        handle.manifest = manifest
        if handle.actor is not None and not handle.actor.closing:
            handle.actor.update_manifest(manifest)
        return handle, False

    async def delete(self, key: str) -> None:
        """Stop the agent and remove its files."""
        handle = self.get(key)
        async with handle.lock:
            # Unregister first: from now on a wake of this key fails instead of restarting it.
            if self.handles.get(key) is not handle:
                raise AgentNotFound(key)
            del self.handles[key]
            actor = handle.actor
            if actor is not None:
                if handle.task is not None:
                    handle.task.cancel()
                await actor.closed.wait()
            await self.executor.run(lambda: shutil.rmtree(handle.folder, ignore_errors=True))

    async def boot(self) -> int:
        """Register every agent found on disk; wake those a crash left mid-turn. Returns how many woke."""
        woken = 0
        for manifest_path in layout.find_manifests(self.config.data_dir):
            for manifest in load_manifests_text(manifest_path.read_text(encoding="utf-8"), str(manifest_path)):
                if manifest.key not in self.handles:
                    self.handles[manifest.key] = AgentHandle(manifest=manifest, folder=manifest_path.parent)
        for handle in list(self.handles.values()):
            try:
                if layout.event_log(handle.folder).exists() and await self._was_running(handle):
                    await self.wake(handle.key)
                    woken += 1
            except LogCorrupt:
                continue  # quarantined (`_quarantine` logged it): the other agents serve
        return woken

    async def _was_running(self, handle: AgentHandle) -> bool:
        probe = self._log(handle)
        await probe.open()
        try:
            last = await probe.last_of_kind(EventKind.STATUS)
        finally:
            await probe.close()
        return last is not None and last.data.get("state") != "idle"

    async def wake(self, key: str) -> AgentActor:
        """The awake actor of `key`, starting it if needed. No await follows the closing check,
        so the caller may `submit` to the returned actor before it can start hibernating."""
        handle = self.get(key)
        while True:
            if self.handles.get(key) is not handle:
                raise AgentNotFound(key)  # deleted while we waited
            handle.refuse_if_failed()
            actor = handle.actor
            if actor is not None and actor.closing:
                await actor.closed.wait()
                continue
            if actor is not None:
                return actor
            async with handle.lock:
                if handle.actor is None and self.handles.get(key) is handle:
                    await self._start_actor(handle)
            # loop: re-check after the last await

    async def _start_actor(self, handle: AgentHandle) -> None:
        assert self._tg is not None, "host is not running"
        handle.folder.mkdir(parents=True, exist_ok=True)
        workspace = layout.workspace(handle.folder)
        workspace.mkdir(exist_ok=True)
        if handle.retry_budget is None:
            handle.retry_budget = RetryBudget(self.config.actor.retry_budget, self.config.actor.retry_budget_refill_per_s)
        actor = AgentActor(
            manifest=handle.manifest,
            log_=self._log(handle),
            workspace=workspace,
            hub=handle.hub,
            provider=self.provider,
            tools=self.tools,
            tool_slots=self.tool_slots,
            tool_io=self.tool_io,
            metrics=self.metrics,
            config=self.config.actor,
            retry_budget=handle.retry_budget,
        )
        await actor.start()
        handle.actor = actor
        handle.wakes += 1
        task = self._tg.create_task(self._run_actor(handle, actor), name=f"actor:{handle.key}")
        handle.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_actor(self, handle: AgentHandle, actor: AgentActor) -> None:
        try:
            await actor.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            if handle.failure is None:  # a quarantine was logged by `_quarantine`
                log.exception("agent %s crashed; it will be woken again by its next message", handle.key)
        finally:
            handle.summary = summarize(actor)
            if handle.actor is actor:
                handle.actor = None

    # -- operations -----------------------------------------------------------------------------

    async def user_message(self, key: str, client_id: str, text: str) -> tuple[int, bool]:
        """Append a user message (idempotent by `client_id`); returns (seq, duplicate)."""
        self.metrics.messages_received += 1
        actor = await self.wake(key)
        reply: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        actor.submit(UserMail(client_id, text, reply))
        try:
            return await reply
        except AgentStopped:
            handle = self.handles.get(key)
            if handle is not None:
                handle.refuse_if_failed()  # stopped by a quarantine: say why
            raise

    async def interrupt(self, key: str) -> bool:
        actor = await self.wake(key)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        actor.submit(InterruptMail(done))
        return await done

    async def head(self, key: str) -> int:
        """The seq of the agent's last committed event (waking it if needed)."""
        return (await self.wake(key)).state.seq

    def approve(self, key: str, tool_call_id: str, decision: str) -> None:
        """Hand an operator's decision to the agent's waiting call; `UnknownToolCall` if none is
        waiting. A call can only wait while its agent is awake and in a turn, so a hibernated (or
        closing) agent has nothing pending."""
        actor = self.get(key).actor
        if actor is None or actor.closing:
            raise UnknownToolCall(f"no approval is pending for tool call {tool_call_id!r}")
        actor.approve(tool_call_id, decision)

    async def read_events(self, key: str, after: int, limit: int | None = None) -> list[Event]:
        for _ in range(3):
            actor = await self.wake(key)
            try:
                return await actor.log.read(after=after, limit=limit)
            except LogClosed:
                continue  # it hibernated between the wake and the read: wake it again
        raise AgentStopped(f"agent {key} keeps stopping; try again")

    def subscribe(self, key: str, sub: Subscriber) -> Hub:
        hub = self.get(key).hub
        hub.subscribe(sub)
        return hub

    def unsubscribe(self, key: str, sub: Subscriber) -> None:
        handle = self.handles.get(key)
        if handle is not None:
            handle.hub.unsubscribe(sub)

    # -- views ----------------------------------------------------------------------------------

    def describe(self, handle: AgentHandle) -> dict[str, Any]:
        summary = summarize(handle.actor) if handle.actor is not None else dict(handle.summary)
        failed = {"reason": "corrupt", "error": str(handle.failure)} if handle.failure is not None else {}
        return {"namespace": handle.manifest.metadata.namespace, "name": handle.manifest.metadata.name,
                "phase": handle.phase(), "model": handle.manifest.spec.model.name, **summary, **failed}

    def counts_by_phase(self) -> dict[str, int]:
        """Agents by phase (`failed` only when some are)."""
        counts = {"running": 0, "idle": 0, "hibernated": 0}
        for handle in self.handles.values():
            phase = handle.phase()
            counts[phase] = counts.get(phase, 0) + 1
        return counts

    def gauges(self) -> dict[str, float]:
        phases = {"failed": 0, **self.counts_by_phase()}
        out: dict[str, float] = {f'agent_runtime_agents{{phase="{p}"}}': n for p, n in phases.items()}
        # 0: tool processes run unconfined here (no Landlock); else the kernel's Landlock ABI.
        out["agent_runtime_tool_confinement_abi"] = abi_version() if landlock_available() else 0
        return out


def summarize(actor: AgentActor | None) -> dict[str, Any]:
    if actor is None:
        return {}
    s = actor.state
    return {
        "seq": s.seq,
        "turns": s.turns,
        "model_calls": s.model_calls,
        "tool_calls": s.tool_calls,
        "errors": s.errors,
        "tokens": {"input": s.input_tokens, "output": s.output_tokens, "cache_read": s.cache_read_tokens,
                   "cache_write": s.cache_write_tokens},
        "context_tokens": actor.machine.context_tokens(),
        "cached_share": round(s.cache_read_tokens / prompt, 4) if (prompt := s.input_tokens + s.cache_read_tokens
                                                                    + s.cache_write_tokens) else 0.0,
        "cost_units": round(s.cost_units, 2),
        "compression": {"chunks": len(s.chunk_ends), "frozen_messages": s.frozen, "frozen_tokens": s.frozen_tokens,
                        "tail_tokens": s.tail_tokens(), "compressions": s.compressions, "tokens_folded": s.tokens_folded},
        "last_activity": s.last_activity,
    }


_YAML_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when PyYAML has it


def _write_manifest(folder: Path, text: str) -> None:
    """Write manifest.yaml atomically, unless it already says `text` (an agent moving to another
    shard of its pool finds the file its previous owner wrote). A failed write (a full disk) leaves
    the old file whole and no temporary file."""
    path = layout.manifest_file(folder)
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8") == text:
            return
    atomicfile.write_text_atomic(path, text)

