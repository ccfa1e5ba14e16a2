"""The agent actor: the async shell around the sans-IO turn machine.

One `AgentActor` per awake agent. It owns a bounded mailbox handled one message at a time, the
agent's event log and derived state, and at most one running turn task. Every state change goes
through `_commit`: append to the log (durable), apply to the state, publish to the hub — under one
lock, so log order, state order and what clients see are the same order.

The turn task asks `TurnMachine.next_effect()` and runs the effect (stream the model, run tools,
finish) until the machine says wait. After a restart the same question, asked of the replayed
state, resumes an interrupted turn. When nothing happens for `idle_timeout` the actor writes a
snapshot, closes its log and returns: the host keeps a small stub and wakes it on the next message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_runtime.eventlog.base import DuplicateClientId, EventLog
from agent_runtime.events import Event, NewEvent
from agent_runtime.hub import Hub
from agent_runtime.manifest import AgentManifest
from agent_runtime.messages import AssistantMessage, StopReason, ToolCall, ToolResult, Usage
from agent_runtime.providers.base import (
    MessageCompleted,
    ModelRequest,
    Provider,
    ProviderError,
    TextDelta,
    ToolCallCompleted,
)
from agent_runtime.providers.retry import RetryBudget, backoff_delay
from agent_runtime.state import CONVERSATION_KINDS, AgentState
from agent_runtime.turn import CallModel, FinishTurn, RunTools, TurnMachine, Wait

if TYPE_CHECKING:
    from agent_runtime.metrics import Metrics
    from agent_runtime.tools.registry import ToolRegistry

log = logging.getLogger(__name__)


class AgentBusy(Exception):
    """The agent's mailbox is full: retry later (backpressure)."""


class AgentStopped(Exception):
    """The agent stopped (deleted, or the server is shutting down) before handling the request."""


@dataclasses.dataclass(slots=True)
class UserMail:
    client_id: str
    text: str
    reply: asyncio.Future[tuple[int, bool]]


@dataclasses.dataclass(slots=True)
class InterruptMail:
    done: asyncio.Future[bool]


Mail = UserMail | InterruptMail


def reply_of(mail: Mail) -> asyncio.Future[tuple[int, bool]] | asyncio.Future[bool]:
    """The future its sender awaits."""
    return mail.reply if isinstance(mail, UserMail) else mail.done


@dataclasses.dataclass(frozen=True, slots=True)
class ActorConfig:
    mailbox_size: int = 64
    idle_timeout_s: float = 30.0
    snapshot_every: int = 200
    model_retries: int = 3
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0  # cap on one wait, a provider's retry-after hint included
    retry_budget: float = 10.0  # retries an agent may spend in a burst (token bucket) ...
    retry_budget_refill_per_s: float = 0.1  # ... refilled at this rate


class AgentActor:
    """One awake agent."""

    def __init__(
        self,
        manifest: AgentManifest,
        log_: EventLog,
        workspace: Path,
        hub: Hub,
        provider: Provider,
        tools: ToolRegistry,
        tool_slots: asyncio.Semaphore,
        metrics: Metrics,
        config: ActorConfig,
        tool_io: concurrent.futures.Executor | None = None,
    ) -> None:
        self.manifest = manifest
        self.key = manifest.key
        self.log = log_
        self.workspace = workspace
        self.hub = hub
        self.provider = provider
        self.tools = tools
        self.tool_slots = tool_slots
        self.tool_io = tool_io
        self.metrics = metrics
        self.config = config
        self.state = AgentState()
        self.machine = TurnMachine(self.state, manifest.spec)
        self.mailbox: asyncio.Queue[Mail] = asyncio.Queue(config.mailbox_size)
        self.closing = False
        self.closed = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._turn: asyncio.Task[None] | None = None
        self._last_snapshot = 0
        self._tool_specs = tools.specs(manifest.spec.tools)
        self._retry_budget = RetryBudget(config.retry_budget, config.retry_budget_refill_per_s)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the log and rebuild the state: latest snapshot + the events after it."""
        await self.log.open()
        try:
            snapshot = await self.log.latest_snapshot()
            snap_seq = snapshot[0] if snapshot else 0
            message_events = [e for e in await self.log.read_kinds(CONVERSATION_KINDS) if e.seq <= snap_seq]
            tail = await self.log.read(after=snap_seq)
            self.state = AgentState.restore(snapshot, message_events, tail)
        except BaseException:
            await self.log.close()
            raise
        self.machine = TurnMachine(self.state, self.manifest.spec)
        self._last_snapshot = snap_seq

    async def run(self) -> None:
        """The mailbox loop. Returns when the agent hibernates; the host owns this task."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._maybe_start_turn(tg)  # resume a turn a restart interrupted
                while True:
                    try:
                        # Not wait_for: on 3.11 it can swallow a cancel that races a new message.
                        async with asyncio.timeout(self.config.idle_timeout_s):
                            mail = await self.mailbox.get()
                    except TimeoutError:
                        if self._can_hibernate():
                            self.closing = True  # no await between the check and the flag
                            break
                        continue
                    await self._handle(mail, tg)
        finally:
            self.closing = True
            self._fail_mail(AgentStopped(f"agent {self.key} stopped"))
            with contextlib.suppress(Exception):
                await self._snapshot()
            await self.log.close()
            self.closed.set()

    def _can_hibernate(self) -> bool:
        return self.mailbox.empty() and (self._turn is None or self._turn.done()) and not self.hub.subscribers

    def _fail_mail(self, exc: Exception) -> None:
        while not self.mailbox.empty():
            fut = reply_of(self.mailbox.get_nowait())
            if not fut.done():
                fut.set_exception(exc)

    def update_manifest(self, manifest: AgentManifest) -> None:
        """A new spec for the next model call (the conversation is kept)."""
        self.manifest = manifest
        self.machine = TurnMachine(self.state, manifest.spec)
        self._tool_specs = self.tools.specs(manifest.spec.tools)

    # -- the mailbox --------------------------------------------------------------------------

    def submit(self, mail: Mail) -> None:
        """Put mail in the box without waiting (callers hold no await between wake and submit)."""
        if self.closing:
            raise AgentStopped(f"agent {self.key} is closing")
        try:
            self.mailbox.put_nowait(mail)
        except asyncio.QueueFull:
            raise AgentBusy(f"agent {self.key} has {self.mailbox.qsize()} messages waiting") from None

    async def _handle(self, mail: Mail, tg: asyncio.TaskGroup) -> None:
        try:
            await self._handle_one(mail, tg)
        except BaseException:  # cancelled (delete, shutdown): never leave the sender waiting
            fut = reply_of(mail)
            if not fut.done():
                fut.set_exception(AgentStopped(f"agent {self.key} stopped"))
            raise

    async def _handle_one(self, mail: Mail, tg: asyncio.TaskGroup) -> None:
        if isinstance(mail, UserMail):
            try:
                seq, duplicate = await self._user_message(mail.client_id, mail.text)
            except Exception as exc:  # a failed commit must reach the sender, not kill the actor
                if not mail.reply.done():
                    mail.reply.set_exception(exc)
                return
            if not mail.reply.done():
                mail.reply.set_result((seq, duplicate))
            self._maybe_start_turn(tg)
        else:
            stopped = await self._interrupt()
            if not mail.done.done():
                mail.done.set_result(stopped)
            self._maybe_start_turn(tg)

    async def _user_message(self, client_id: str, text: str) -> tuple[int, bool]:
        existing = await self.log.find_client_id(client_id)
        if existing is not None:
            return existing, True
        try:
            committed = await self._commit(lambda: self.machine.user_message(client_id, text))
        except DuplicateClientId as dup:
            return dup.seq, True
        return committed[0].seq, False

    async def _interrupt(self) -> bool:
        turn = self._turn
        if turn is None or turn.done():
            return False
        turn.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await turn
        live = self.hub.live  # the message being streamed: its deltas are superseded by this event
        message_id = live.message_id if live is not None else uuid.uuid4().hex
        partial = self.hub.end_live()
        await self._commit(lambda: self.machine.interrupt(partial, message_id))
        return True

    def _maybe_start_turn(self, tg: asyncio.TaskGroup) -> None:
        if (self._turn is None or self._turn.done()) and not isinstance(self.machine.next_effect(), Wait):
            self._turn = tg.create_task(self._drive_turn(), name=f"turn:{self.key}")

    # -- commits ------------------------------------------------------------------------------

    async def _commit(self, build: Callable[[], list[NewEvent]]) -> list[Event]:
        """Build events from the current state, append (durable), apply, publish — atomically
        with respect to other commits, and shielded from cancellation once started."""
        return await asyncio.shield(self._commit_locked(build))

    async def _commit_locked(self, build: Callable[[], list[NewEvent]]) -> list[Event]:
        async with self._commit_lock:
            new = build()
            if not new:
                return []
            committed = await self.log.append(new)
            for event in committed:
                self.state.apply(event)
                self.hub.publish_event(event)
            self.metrics.events_appended += len(committed)
            if self.state.seq - self._last_snapshot >= self.config.snapshot_every:
                await self._snapshot_locked()
            return committed

    async def _snapshot(self) -> None:
        async with self._commit_lock:
            await self._snapshot_locked()

    async def _snapshot_locked(self) -> None:
        if self.state.seq > self._last_snapshot:
            await self.log.save_snapshot(self.state.seq, self.state.snapshot())
            self._last_snapshot = self.state.seq

    # -- the turn -----------------------------------------------------------------------------

    async def _drive_turn(self) -> None:
        started = time.perf_counter()
        waited = 0.0
        try:
            while True:
                effect = self.machine.next_effect()
                if isinstance(effect, Wait):
                    return
                if isinstance(effect, CallModel):
                    waited += await self._call_model()
                elif isinstance(effect, RunTools):
                    waited += await self._run_tools(effect.calls)
                elif isinstance(effect, FinishTurn):
                    reason = effect.reason

                    def finish(reason: str = reason) -> list[NewEvent]:
                        # Re-check under the lock: a deferred user message may have joined.
                        now = self.machine.next_effect()
                        return self.machine.finish(reason) if isinstance(now, FinishTurn) else []

                    committed = await self._commit(finish)
                    if committed:
                        self.metrics.turn_finished(time.perf_counter() - started - waited)
                        started, waited = time.perf_counter(), 0.0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not kill the agent: record it and stop the turn
            log.exception("turn of %s failed", self.key)
            await self._commit(lambda: self.machine.model_error("internal", f"{type(exc).__name__}: {exc}"))

    async def _call_model(self) -> float:
        """Stream one model message and commit it. Returns the seconds spent waiting on the model."""
        spec = self.manifest.spec
        request = ModelRequest(
            model=spec.model.name,
            system=spec.system_prompt,
            messages=self.state.messages,
            tools=self._tool_specs,
            max_tokens=spec.limits.max_output_tokens,
            agent_key=self.key,
            context_tokens=self.machine.context_tokens(),
            provider=spec.model.provider,
            region=spec.model.region,
        )
        provider = spec.model.provider
        cfg = self.config
        waited = 0.0
        for attempt in range(cfg.model_retries + 1):
            message_id = uuid.uuid4().hex  # a new id per attempt: clients drop the failed one's text
            self.hub.start_live(message_id)
            t0 = time.perf_counter()
            try:
                message, usage, stream_time = await self._stream(request)
            except ProviderError as exc:
                # Nothing of the failed attempt was durable (its text was only live deltas), so the
                # retry starts again from the last committed event.
                waited += time.perf_counter() - t0
                self.hub.end_live()
                retry = exc.retryable and attempt < cfg.model_retries
                if retry and not self._retry_budget.try_spend(time.monotonic()):
                    retry = False
                    exc = ProviderError(f"{exc} (retry budget of the agent exhausted)", retryable=False, code=exc.code)
                if retry:
                    delay = backoff_delay(attempt, base_s=cfg.retry_base_s, cap_s=cfg.retry_max_s,
                                          hint_s=exc.retry_after_s)
                    self.metrics.model_retry(provider, exc.code)
                    status: dict[str, Any] = {"state": "retrying", "reason": exc.code, "attempt": attempt + 1,
                                              "delay_s": round(delay, 3), "provider": provider}
                    if exc.retry_after_s is not None:
                        status["retry_after_s"] = exc.retry_after_s
                    await self._commit(lambda: [NewEvent("status", status)])
                    await asyncio.sleep(delay)
                    waited += delay
                    continue
                self.metrics.model_error(provider, exc.code)
                await self._commit(lambda: self.machine.model_error(exc.code, str(exc)))
                return waited
            waited += stream_time
            self.hub.end_live()
            self.metrics.model_usage(provider, usage)
            await self._commit(lambda: self.machine.model_message(message, usage, message_id))
            return waited
        return waited

    async def _stream(self, request: ModelRequest) -> tuple[AssistantMessage, Usage, float]:
        parts: list[str] = []
        calls: list[ToolCall] = []
        stop: StopReason = "end_turn"
        usage = Usage()
        waited = 0.0
        stream = self.provider.stream(request)
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    item = await anext(stream)
                except StopAsyncIteration:
                    break
                finally:
                    waited += time.perf_counter() - t0
                if isinstance(item, TextDelta):
                    parts.append(item.text)
                    self.hub.publish_delta(item.text)
                elif isinstance(item, ToolCallCompleted):
                    calls.append(item.call)
                elif isinstance(item, MessageCompleted):
                    stop, usage = item.stop_reason, item.usage
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return AssistantMessage("".join(parts), tuple(calls), stop), usage, waited

    async def _run_tools(self, calls: tuple[ToolCall, ...]) -> float:
        """Run the open calls concurrently (bounded per shard); append results in call order."""
        from agent_runtime.tools.base import ToolContext

        await self._commit(lambda: self.machine.tool_calls_started(calls))
        limits = self.manifest.spec.limits
        ctx = ToolContext(workspace=self.workspace, timeout_s=limits.tool_timeout_s, output_cap=limits.tool_output_cap,
                          executor=self.tool_io)

        async def one(call: ToolCall) -> ToolResult:
            async with self.tool_slots:
                return await self.tools.execute(call, ctx)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(c) for c in calls))
        waited = time.perf_counter() - t0
        self.metrics.tool_runs += len(results)
        await self._commit(lambda: self.machine.tool_results(results))
        return waited
