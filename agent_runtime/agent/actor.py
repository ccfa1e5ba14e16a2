"""The agent actor: the async shell around the sans-IO turn machine.

One `AgentActor` per awake agent. It owns a bounded mailbox handled one message at a time, the
agent's event log and derived state, and at most one running turn task. Every state change goes
through `commit`: append to the log (durable), apply to the state, publish to the hub — under one
lock, so log order, state order and what clients see are the same order.

The turn task asks `TurnMachine.next_effect()` and runs the effect until the machine says wait:
a model call (`model_call.ModelCalls`: the stream, retries) whose message's tool calls run in one
task group (`tool_runs.ToolRuns`, deciding nothing: `schedule.ToolSchedule` decides), a
compression, the end of the turn. After a restart the same question, asked of the replayed state,
resumes an interrupted turn. When nothing happens for `idle_timeout` the actor writes a snapshot,
closes its log and returns: the host keeps a small stub and wakes it on the next message.
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
from typing import TYPE_CHECKING

from agent_runtime.agent.autonomy import AutonomyPolicy
from agent_runtime.agent.hub import Hub
from agent_runtime.agent.mail import AgentBusy, AgentStopped, Mail, UnknownToolCall, UserMail, reply_of
from agent_runtime.agent.model_call import ModelCalls
from agent_runtime.agent.state import CONVERSATION_KINDS, AgentState
from agent_runtime.agent.tool_runs import ToolRuns
from agent_runtime.agent.turn import CallModel, Compress, FinishTurn, RunTools, TurnMachine, Wait
from agent_runtime.metrics import CompressionMeter
from agent_runtime.eventlog.base import DuplicateClientId, EventLog
from agent_runtime.events import Event, NewEvent
from agent_runtime.manifest import AgentManifest
from agent_runtime.messages import ToolCall
from agent_runtime.providers.base import Provider, ProviderError
from agent_runtime.providers.retry import RetryBudget

if TYPE_CHECKING:
    from agent_runtime.metrics import Metrics
    from agent_runtime.tools.registry import ToolRegistry

log = logging.getLogger(__name__)


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
    # Tool processes (Landlock, agent_runtime.tools.landlock): folders they may read and execute
    # besides the workspace and the system folders; refuse to run them unconfined.
    tool_read_paths: tuple[Path, ...] = ()
    tool_confinement_required: bool = False


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
        retry_budget: RetryBudget | None = None,
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
        self.meter = CompressionMeter()  # this actor's compression CPU (kept across spec updates)
        self.machine = TurnMachine(self.state, manifest.spec, self.meter)
        self.mailbox: asyncio.Queue[Mail] = asyncio.Queue(config.mailbox_size)
        self.closing = False
        self.closed = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._turn: asyncio.Task[None] | None = None
        self._last_snapshot = 0
        self.tool_specs = tools.specs(manifest.spec.tools)
        # The host passes the agent's budget, kept on its handle: a wake from hibernation must not refill it.
        self.model = ModelCalls(self, retry_budget or RetryBudget(config.retry_budget, config.retry_budget_refill_per_s))
        self.policy = AutonomyPolicy(manifest.spec.autonomy)
        self._slots_limit = manifest.spec.limits.max_running_tools
        self.agent_slots = asyncio.Semaphore(self._slots_limit)
        # The tool calls of the message being streamed or run (its task group and its schedule:
        # what started early, what finished, what waits for an operator). An interrupt reads it.
        self._runs: ToolRuns | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the log and rebuild the state: the latest snapshot (counters and the events its
        conversation is made of) + the events after it."""
        await self.log.open()
        try:
            snapshot = await self.log.latest_snapshot()
            snap_seq = snapshot[0] if snapshot else 0
            refs = AgentState.conversation_refs(snapshot[1]) if snapshot else None
            tail = await self.log.read(after=snap_seq)
            state: AgentState | None = None
            if refs is not None:  # the events the snapshot names: bounded, whatever the log's length
                try:
                    state = AgentState.restore(snapshot, await self.log.read_seqs(refs), tail)
                except ValueError as exc:  # a snapshot that does not match its log: replay instead
                    log.warning("agent %s: snapshot at seq %d unusable (%s); replaying the log", self.key, snap_seq, exc)
            if state is None:  # no snapshot, one from before snapshots named the conversation, or a bad one
                counters = (snap_seq, {k: v for k, v in snapshot[1].items() if k != "conversation"}) if snapshot else None
                message_events = [e for e in await self.log.read_kinds(CONVERSATION_KINDS) if e.seq <= snap_seq]
                state = AgentState.restore(counters, message_events, tail)
            self.state = state
        except BaseException:
            await self.log.close()
            raise
        self.machine = TurnMachine(self.state, self.manifest.spec, self.meter)
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
            # The turn task (and with it every tool call of its message, started mid-stream or
            # not) has ended with the task group above: nothing outlives the actor.
            self._forget_message_tools()
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
        self.machine = TurnMachine(self.state, manifest.spec, self.meter)
        self.tool_specs = self.tools.specs(manifest.spec.tools)
        self.policy = AutonomyPolicy(manifest.spec.autonomy)
        if manifest.spec.limits.max_running_tools != self._slots_limit:
            # Calls running now release the old semaphore; new calls use the new limit.
            self._slots_limit = manifest.spec.limits.max_running_tools
            self.agent_slots = asyncio.Semaphore(self._slots_limit)

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
            committed = await self.commit(lambda: self.machine.user_message(client_id, text))
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
        runs = self._runs if self._runs is not None and not self._runs.closed else None
        early = runs.schedule.early_calls() if runs is not None else []
        finished = runs.schedule.ran() if runs is not None else {}
        state = self.model.partial_state
        spent = self.model.spent()
        self._forget_message_tools()
        await self.commit(lambda: self.machine.interrupt(partial, message_id, early, finished, provider_state=state,
                                                         spent=spent))
        return True

    def approve(self, tool_call_id: str, decision: str) -> None:
        """An operator's answer for a call waiting for approval (the waiting turn commits the
        `approval` event). `UnknownToolCall` if that call is not waiting."""
        if decision not in ("allow", "deny"):
            raise ValueError(f"decision must be 'allow' or 'deny', not {decision!r}")
        if self._runs is None:
            raise UnknownToolCall(f"no approval is pending for tool call {tool_call_id!r}")
        self._runs.approve(tool_call_id, decision)

    def pending_approvals(self) -> list[str]:
        return self._runs.pending_approvals() if self._runs is not None else []

    def _maybe_start_turn(self, tg: asyncio.TaskGroup) -> None:
        if (self._turn is None or self._turn.done()) and not isinstance(self.machine.next_effect(), Wait):
            self._turn = tg.create_task(self._drive_turn(), name=f"turn:{self.key}")

    # -- commits ------------------------------------------------------------------------------

    async def commit(self, build: Callable[[], list[NewEvent]]) -> list[Event]:
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
                elif isinstance(effect, Compress):
                    await self._compress()
                elif isinstance(effect, RunTools):
                    waited += await self._run_tools(effect.calls)
                elif isinstance(effect, FinishTurn):
                    reason = effect.reason

                    def finish(reason: str = reason) -> list[NewEvent]:
                        # Re-check under the lock: a deferred user message may have joined.
                        now = self.machine.next_effect()
                        return self.machine.finish(reason) if isinstance(now, FinishTurn) else []

                    committed = await self.commit(finish)
                    if committed:
                        self.metrics.turn_finished(time.perf_counter() - started - waited)
                        started, waited = time.perf_counter(), 0.0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not kill the agent: record it and stop the turn
            log.exception("turn of %s failed", self.key)
            self._forget_message_tools()
            await self.commit(lambda: self.machine.model_error("internal", f"{type(exc).__name__}: {exc}"))

    async def _compress(self) -> None:
        """Fold the oldest live messages into a new frozen chunk (one `compression` event)."""
        meter = self.meter
        spent = [0.0]

        def build() -> list[NewEvent]:
            effect = self.machine.next_effect()  # again under the lock: the state may have moved
            if not isinstance(effect, Compress):
                return []
            t0 = time.thread_time()
            events, analysed = self.machine.compress(effect.count, effect.consolidate)
            spent[0] = time.thread_time() - t0
            meter.folding_s += spent[0]
            meter.analysed += analysed
            meter.folds += 1
            return events

        committed = await self.commit(build)
        for event in committed:
            d = event.data
            self.metrics.compressed(int(d["folded_messages"]), int(d["tokens_before"]), int(d["tokens_after"]), spent[0],
                                    consolidated=bool(d.get("consolidated")))

    async def _call_model(self) -> float:
        """Stream one model message (retrying), commit it, and run its tool calls. Each attempt has
        its own `ToolRuns`: a failed stream's early calls end with it. Returns the seconds spent
        waiting on the model and the tools."""
        model = self.model
        request = model.request()
        waited = 0.0
        for attempt in range(self.config.model_retries + 1):
            message_id = model.start()
            t0 = time.perf_counter()
            try:
                async with ToolRuns(self) as runs:
                    self._runs = runs
                    streamed = await model.stream(request, message_id, runs)
                    waited += streamed.waited
                    await model.completed(streamed, runs)
                    if isinstance(effect := self.machine.next_effect(), RunTools):
                        waited += await runs.run(effect.calls)
                return waited
            except ProviderError as exc:
                waited += time.perf_counter() - t0
                self._runs = None  # a failed stream: the retry (or the error) starts over
                delay = await model.failed(exc, attempt)
                if delay is None:
                    return waited
                await asyncio.sleep(delay)
                waited += delay
        return waited

    async def _run_tools(self, calls: tuple[ToolCall, ...]) -> float:
        """Run the open calls of the last message (a turn resumed after a restart, or cut between
        its message and its tools); see `ToolRuns.run`."""
        async with ToolRuns(self) as runs:
            self._runs = runs
            return await runs.run(calls)

    def _forget_message_tools(self) -> None:
        self._runs = None
        self.model.partial_state = None
