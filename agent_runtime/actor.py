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
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_runtime import errors
from agent_runtime import pricing
from agent_runtime.metrics import CompressionMeter
from agent_runtime.autonomy import AutonomyPolicy, Verdict
from agent_runtime.eventlog.base import DuplicateClientId, EventLog
from agent_runtime.events import Event, NewEvent
from agent_runtime.hub import Hub
from agent_runtime.manifest import AgentManifest
from agent_runtime.messages import AssistantMessage, ProviderState, StopReason, ToolCall, ToolResult, Usage
from agent_runtime.providers.base import (
    MessageCompleted,
    ModelRequest,
    Provider,
    ProviderError,
    ProviderStateUpdated,
    TextDelta,
    ToolCallCompleted,
    UsageReported,
)
from agent_runtime.providers.retry import RetryBudget, backoff_delay
from agent_runtime.state import CONVERSATION_KINDS, AgentState
from agent_runtime.turn import CallModel, Compress, FinishTurn, RunTools, TurnMachine, Wait, is_incomplete

from agent_runtime.tools.base import ToolContext, ToolError
from agent_runtime.tools.registry import format_tool_error
from agent_runtime.tools.workspace import display_path, resolve_in_workspace

if TYPE_CHECKING:
    from agent_runtime.metrics import Metrics
    from agent_runtime.tools.registry import ToolRegistry

log = logging.getLogger(__name__)


class AgentBusy(errors.Error, code="busy"):
    """The agent's mailbox is full: retry later (backpressure)."""


class AgentStopped(errors.Error, code="unavailable"):
    """The agent stopped (deleted, or the server is shutting down) before handling the request."""


class UnknownToolCall(errors.Error, code="unknown_tool_call"):
    """An approval for a tool call that is not waiting for one (never asked, or already decided)."""


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
    # Tool processes (Landlock, agent_runtime.tools.landlock): folders they may read and execute
    # besides the workspace and the system folders; refuse to run them unconfined.
    tool_read_paths: tuple[Path, ...] = ()
    tool_confinement_required: bool = False


@dataclasses.dataclass(slots=True)
class _StreamOrder:
    """What the calls seen so far in the message being streamed mean for the next one's early
    start: a valid call with side effects was seen (nothing starts early after it), a valid call
    did not start early (a side effect may not start early after it). Invalid calls never run."""

    side_effect: bool = False
    not_started: bool = False

    def saw(self, valid: bool, side_effect: bool, started: bool) -> None:
        if valid:
            self.side_effect = self.side_effect or side_effect
            self.not_started = self.not_started or not started


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
        self._tool_specs = tools.specs(manifest.spec.tools)
        # The host passes the agent's budget, kept on its handle: a wake from hibernation must not refill it.
        self._retry_budget = retry_budget or RetryBudget(config.retry_budget, config.retry_budget_refill_per_s)
        self.policy = AutonomyPolicy(manifest.spec.autonomy)
        self._slots_limit = manifest.spec.limits.max_running_tools
        self.agent_slots = asyncio.Semaphore(self._slots_limit)
        # The tool calls of the message being streamed (or just committed) that started early,
        # the results of this message's calls that have finished, and the calls waiting for an
        # operator's decision. All three are emptied when the message's results are committed.
        self._early: dict[str, tuple[ToolCall, asyncio.Task[ToolResult]]] = {}
        self._results: dict[str, ToolResult] = {}
        self._partial_state: ProviderState | None = None  # reasoning state of the message being streamed
        self._attempt_usage: Usage | None = None  # usage reported so far by the stream being read
        self._approvals: dict[str, asyncio.Future[str]] = {}

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
            # A turn stopped between its stream and its tools (delete, shutdown) leaves the calls
            # it started mid-stream: they must not outlive the actor.
            await self._cancel_early()
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
        announce = self.machine.announce
        self.machine = TurnMachine(self.state, manifest.spec, self.meter)
        self.machine.announce = announce
        self._tool_specs = self.tools.specs(manifest.spec.tools)
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
        early = [call for call, _ in self._early.values()]
        finished = dict(self._results)
        state = self._partial_state
        spent = self._spent_by_attempt()
        self._forget_message_tools()
        await self._commit(lambda: self.machine.interrupt(partial, message_id, early, finished, provider_state=state,
                                                          spent=spent))
        return True

    def _spent_by_attempt(self) -> Usage | None:
        """The usage the stream of the model call that just ended without completing (failed or
        interrupted) had reported, if any; counted in /metrics (not as a call)."""
        usage, self._attempt_usage = self._attempt_usage, None
        if usage is not None:
            provider = self.manifest.spec.model.provider
            self.metrics.model_usage(provider, usage, pricing.cost(usage, provider), completed=False)
        return usage

    def approve(self, tool_call_id: str, decision: str) -> None:
        """An operator's answer for a call waiting for approval (the waiting turn commits the
        `approval` event). `UnknownToolCall` if that call is not waiting."""
        if decision not in ("allow", "deny"):
            raise ValueError(f"decision must be 'allow' or 'deny', not {decision!r}")
        fut = self._approvals.get(tool_call_id)
        if fut is None or fut.done():
            raise UnknownToolCall(f"no approval is pending for tool call {tool_call_id!r}")
        fut.set_result(decision)

    def pending_approvals(self) -> list[str]:
        return [k for k, f in self._approvals.items() if not f.done()]

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

                    committed = await self._commit(finish)
                    if committed:
                        self.metrics.turn_finished(time.perf_counter() - started - waited)
                        started, waited = time.perf_counter(), 0.0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not kill the agent: record it and stop the turn
            log.exception("turn of %s failed", self.key)
            self._forget_message_tools()
            await self._commit(lambda: self.machine.model_error("internal", f"{type(exc).__name__}: {exc}"))

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

        committed = await self._commit(build)
        for event in committed:
            d = event.data
            self.metrics.compressed(int(d["folded_messages"]), int(d["tokens_before"]), int(d["tokens_after"]), spent[0],
                                    consolidated=bool(d.get("consolidated")))

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
            thinking_budget=spec.model.thinking_budget,
            frozen_ends=tuple(self.state.chunk_ends[-2:]),
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
                # retry starts again from the last committed event. What the provider reported it
                # had used is billed all the same: recorded with the retry's or the error's commit.
                waited += time.perf_counter() - t0
                self.hub.end_live()
                spent_usage = self._spent_by_attempt()
                spent = self.machine.attempt_usage(spent_usage, "failed") if spent_usage is not None else []
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
                    await self._commit(lambda: [*spent, NewEvent("status", status)])
                    await asyncio.sleep(delay)
                    waited += delay
                    continue
                self.metrics.model_error(provider, exc.code)
                await self._commit(lambda: [*spent, *self.machine.model_error(exc.code, str(exc))])
                return waited
            waited += stream_time
            self._attempt_usage = None  # the message's own usage supersedes it
            self.hub.end_live()
            self.metrics.model_usage(provider, usage, pricing.cost(usage, provider))
            await self._commit(lambda: self.machine.model_message(message, usage, message_id))
            return waited
        return waited

    async def _stream(self, request: ModelRequest) -> tuple[AssistantMessage, Usage, float]:
        """Stream one message. Each tool call is looked at the moment it is complete in the
        stream: allowed read-only/idempotent calls start at once (an idempotent call with side
        effects after its `tool_call` event is committed; a read-only one is announced with the
        message), the rest wait for the message's end (`_run_tools`). If the stream fails or is
        cancelled, early calls still running are cancelled (their process groups killed);
        finished results stay in `_results` for an interrupt to keep."""
        parts: list[str] = []
        calls: list[ToolCall] = []
        stop: StopReason = "end_turn"
        usage = Usage()
        provider_state: ProviderState | None = None
        waited = 0.0
        order = _StreamOrder()
        self._forget_message_tools()
        self._attempt_usage = None
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
                    early = self._may_start_early(item.call, order)
                    order.saw(self._precheck(item.call) is None, self._has_side_effects(item.call), early)
                    if early:
                        call = item.call
                        after: list[asyncio.Future[ToolResult]] = []
                        if self._has_side_effects(call):
                            # A side effect (opted-in idempotent) is durable before it runs, and
                            # runs after every earlier call (all started early) has finished; a
                            # read-only call is announced with its message (a crash before it
                            # lost nothing).
                            await self._commit(lambda: self.machine.tool_calls_started([call], early=True))
                            after = [task for _, task in self._early.values()]
                        task = asyncio.get_running_loop().create_task(self._execute(call, after), name=f"tool:{call.id}")
                        self._early[call.id] = (call, task)
                elif isinstance(item, ProviderStateUpdated):
                    self._partial_state = item.provider_state
                elif isinstance(item, UsageReported):
                    self._attempt_usage = item.usage
                elif isinstance(item, MessageCompleted):
                    stop, usage, provider_state = item.stop_reason, item.usage, item.provider_state
        except BaseException:
            await self._cancel_early()
            self.machine.announce = ()
            if not isinstance(sys.exc_info()[1], asyncio.CancelledError):
                self._forget_message_tools()  # a failed stream: the retry (or the error) starts over
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        # Announce in the message's own commit: calls running already, and (for a finished
        # message) the allowed calls that start as soon as it is committed.
        self.machine.announce = tuple(
            (c, c.id in self._early) for c in calls if c.id in self._early or (not is_incomplete(stop) and self._starts_at_end(c))
        )
        message = AssistantMessage("".join(parts), tuple(calls), stop, provider_state=provider_state)
        return message, usage, waited

    # -- tools --------------------------------------------------------------------------------

    def _tool_context(self) -> ToolContext:
        limits = self.manifest.spec.limits
        return ToolContext(
            workspace=self.workspace,
            timeout_s=limits.tool_timeout_s,
            output_cap=limits.tool_output_cap,
            executor=self.tool_io,
            memory_mb=limits.tool_memory_mb,
            cpu_s=limits.tool_cpu_s,
            open_files=limits.tool_open_files,
            processes=limits.tool_processes,
            read_paths=self.config.tool_read_paths,
            confinement_required=self.config.tool_confinement_required,
        )

    def _precheck(self, call: ToolCall) -> ToolResult | None:
        """The error result of a call that must not run (unknown tool, bad arguments, a call of
        a tool this agent was not given), or None."""
        if call.name not in self.manifest.spec.tools or call.name not in self.tools:
            text = f"error[unknown_tool]: no tool named {call.name!r}; available tools: {', '.join(self.manifest.spec.tools)}"
            return ToolResult(call.id, call.name, text, is_error=True)
        try:
            self.tools.validate(call.name, call.arguments)
        except ToolError as exc:
            return ToolResult(call.id, call.name, format_tool_error(exc), is_error=True)
        return None

    def _hints(self, name: str) -> tuple[bool, bool]:
        spec = self.tools.get(name).spec
        return spec.read_only, spec.idempotent

    def _decide(self, call: ToolCall) -> Verdict:
        """The autonomy verdict on `call`. A `path` argument is matched as the workspace-relative
        path the file tools will touch (`~/x`, an absolute path inside the workspace and symlinks
        that stay inside all name the same file as `x`), so a rule cannot be dodged by spelling."""
        read_only, _ = self._hints(call.name)
        arguments = call.arguments
        path = arguments.get("path")
        if isinstance(path, str) and path:
            try:
                resolved = resolve_in_workspace(self.workspace, path)
            except ToolError:
                pass  # an escape: the tool refuses it anyway
            else:
                arguments = {**arguments, "path": display_path(self.workspace, resolved)}
        return self.policy.decide(call.name, arguments, read_only=read_only)

    def _has_side_effects(self, call: ToolCall) -> bool:
        """Whether running `call` may change something: not a known read-only tool (a call that
        can never run, for its tool is unknown, counts too: ordering errs on the safe side)."""
        return call.name not in self.tools or not self._hints(call.name)[0]

    def _may_start_early(self, call: ToolCall, order: _StreamOrder | None = None) -> bool:
        """A call complete in the stream starts at once if it is valid, allowed by the autonomy
        rules, and read-only (or, opted in with `autonomy.streamingStart: readOnlyOrIdempotent`,
        idempotent) — and the order within the message allows it (`order`: what the calls
        before it in the message were): nothing starts early after a valid call with side
        effects, and a side effect starts early only if every earlier valid call started early
        (it then waits for them to finish; see `_run_tools`)."""
        mode = self.manifest.spec.autonomy.streaming_start
        if mode == "off" or call.id in self._early or call.id in self.state.started_call_ids:
            return False
        if self._precheck(call) is not None:
            return False
        read_only, idempotent = self._hints(call.name)
        if not (read_only or (idempotent and mode == "readOnlyOrIdempotent")):
            return False
        if order is not None and (order.side_effect or (not read_only and order.not_started)):
            return False
        return self._decide(call).action == "allow"

    def _starts_at_end(self, call: ToolCall) -> bool:
        """A call of a finished message that starts right after the message is committed."""
        if self._precheck(call) is not None:
            return False
        return self._decide(call).action == "allow"

    async def _execute(self, call: ToolCall, after: Sequence[asyncio.Future[ToolResult]] = ()) -> ToolResult:
        """Run one call within the agent's and the shard's limits, once the calls it must follow
        (`after`) have ended, whatever their outcome; remember its result."""
        if after:
            await asyncio.wait(after)  # holds no slot while it waits
        async with self.agent_slots, self.tool_slots:
            result = await self.tools.execute(call, self._tool_context())
        self._results[call.id] = result
        return result

    async def _cancel_early(self) -> None:
        running = [task for _, task in self._early.values() if not task.done()]
        for task in running:
            task.cancel()  # a tool's cancellation kills and reaps its process group
        if running:
            await asyncio.wait(running)

    def _forget_message_tools(self) -> None:
        for _, task in self._early.values():
            if not task.done():
                task.cancel()
        self._early = {}
        self._results = {}
        self._partial_state = None
        for fut in self._approvals.values():
            if not fut.done():
                fut.cancel()
        self._approvals = {}

    async def _run_tools(self, calls: tuple[ToolCall, ...]) -> float:
        """Run the open calls of the last message; commit all their results at once, in call
        order, whatever order they finish in (the durable transcript does not depend on tool
        timing).

        A complete message (`tool_use`): calls started early are awaited; the others are
        checked against the autonomy rules: `allow` starts now, `deny` gets an error result,
        `ask` commits `approval_required` and waits for an operator (or the deadline) without
        blocking the mailbox. An unfinished message (`max_tokens`, `content_filter`, `error`):
        calls not started are cancelled (error results); early results are kept, all marked
        `incomplete_message`."""
        message = self.state.last_assistant()
        incomplete = message is not None and is_incomplete(message.stop_reason)
        stop = message.stop_reason if message is not None else "tool_use"
        state = self.state
        t0 = time.perf_counter()
        jobs: dict[str, asyncio.Future[ToolResult]] = {}
        done: dict[str, ToolResult] = {}
        start_now: list[ToolCall] = []
        ask: list[tuple[ToolCall, str]] = []
        loop = asyncio.get_running_loop()
        for call in calls:
            if call.id in self._early:
                jobs[call.id] = self._early[call.id][1]
                continue
            if call.id in state.started_call_ids:  # started before a restart: runs again (at least once)
                start_now.append(call)
                continue
            if incomplete:
                done[call.id] = ToolResult(
                    call.id, call.name,
                    f"error[cancelled]: not run: the message ended with stop reason {stop!r} before it was complete",
                    is_error=True,
                )
                continue
            refused = self._precheck(call)
            if refused is not None:
                done[call.id] = refused
                continue
            decided = state.approvals.get(call.id, "unasked")
            if decided == "deny":
                done[call.id] = self._denied(call, "an operator denied it")
                continue
            if decided is None:  # asked before a restart: keep waiting until the same deadline
                ask.append((call, ""))
                continue
            verdict = self._decide(call)
            if verdict.action == "deny":
                done[call.id] = self._denied(call, verdict.reason)
            elif verdict.action == "ask":
                ask.append((call, verdict.reason))
            else:
                start_now.append(call)
        for call, _ in ask:
            self._approvals[call.id] = loop.create_future()
        deadline = time.time() + self.manifest.spec.autonomy.approval_timeout_s

        def started() -> list[NewEvent]:
            events = self.machine.tool_calls_started(start_now)
            for call, reason in ask:
                events.extend(self.machine.approval_required(call, reason, deadline))
            return events

        await self._commit(started)
        # Order within the message: consecutive read-only calls run together; a call with side
        # effects runs after every earlier call has ended, and every later call after it.
        starting = {c.id for c in start_now}
        asking = {c.id for c, _ in ask}
        so_far: list[asyncio.Future[ToolResult]] = []
        barrier: list[asyncio.Future[ToolResult]] = []  # the last call with side effects
        for call in calls:
            side_effects = self._has_side_effects(call)
            after = list(so_far) if side_effects else list(barrier)
            if call.id in starting:
                jobs[call.id] = loop.create_task(self._execute(call, after), name=f"tool:{call.id}")
            elif call.id in asking:
                jobs[call.id] = loop.create_task(self._after_approval(call, after), name=f"approval:{call.id}")
            elif call.id not in jobs:
                continue  # never runs
            so_far.append(jobs[call.id])
            if side_effects:
                barrier = [jobs[call.id]]
        try:
            if jobs:
                await asyncio.gather(*jobs.values())
        except BaseException:
            for job in jobs.values():
                job.cancel()
            raise
        results = [done[c.id] if c.id in done else jobs[c.id].result() for c in calls]
        self._forget_message_tools()
        self.metrics.tool_runs += len(jobs)
        await self._commit(lambda: self.machine.tool_results(results, incomplete=incomplete))
        return time.perf_counter() - t0

    @staticmethod
    def _denied(call: ToolCall, why: str) -> ToolResult:
        return ToolResult(call.id, call.name, f"error[denied]: tool call refused: {why}", is_error=True)

    async def _after_approval(self, call: ToolCall, after: Sequence[asyncio.Future[ToolResult]] = ()) -> ToolResult:
        """Wait for an operator's decision (or the deadline), commit it, then run (after the calls
        in `after`) or refuse."""
        fut = self._approvals[call.id]
        autonomy = self.manifest.spec.autonomy
        remaining = self.state.approval_deadlines.get(call.id, 0.0) - time.time()
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                decision, by = await asyncio.shield(fut), "operator"
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                # An answer that arrived in the tick the deadline fired was accepted (`approve`
                # found the future open): it decides, as its sender was told.
                decision, by = fut.result(), "operator"
            else:
                decision, by = autonomy.approval_timeout_decision, "timeout"
        if not fut.done():
            fut.cancel()  # from now on a late answer is refused (unknown_tool_call)
        await self._commit(lambda: self.machine.approval(call, decision, by))
        if (self.state.approvals.get(call.id) or decision) == "deny":
            who = "an operator denied it" if by == "operator" else f"no operator answered within {autonomy.approval_timeout_s:g} s"
            return self._denied(call, who)
        return await self._execute(call, after)
