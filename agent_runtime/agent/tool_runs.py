"""The IO shell of one message's tool calls: runs what its `ToolSchedule` decides.

`ToolRuns` is an async context manager around one `asyncio.TaskGroup` per model message (per
attempt: a failed stream's early calls die with its group): the calls that start mid-stream
(`arrive`), the calls that start when the message is committed, the waits for operators
(`approval:<id>` tasks) and the runs (`tool:<id>` tasks). Every decision — which call starts
now, which waits for which, which is refused, cancelled or asked — is the schedule's
(`agent_runtime.agent.schedule`); this module only turns them into commits and tasks: it asks
`ready()` after every change (a call arrived, became durable, was decided, finished) and starts
what it names. Leaving the context (an interrupt, a failed stream, the actor stopping) cancels
what still runs (a tool's cancellation kills its process group) and waits for it.

`facts_of` is what the schedule is told about a call: validity against the agent's tools and the
JSON Schema, the tool's hints, the autonomy verdict on the path the tool will actually touch, and
what the log says (started before a restart, asked already).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from agent_runtime.agent.autonomy import AutonomyPolicy, Verdict
from agent_runtime.agent.mail import UnknownToolCall
from agent_runtime.agent.schedule import Approval, CallFacts, ToolSchedule
from agent_runtime.agent.state import AgentState
from agent_runtime.agent.turn import TurnMachine, is_incomplete
from agent_runtime.events import Event, NewEvent
from agent_runtime.manifest import AgentManifest
from agent_runtime.messages import ToolCall, ToolResult
from agent_runtime.tools.base import ToolContext, ToolError
from agent_runtime.tools.registry import format_tool_error
from agent_runtime.tools.workspace import display_path, resolve_in_workspace

if TYPE_CHECKING:
    from agent_runtime.metrics import Metrics
    from agent_runtime.tools.registry import ToolRegistry


class ToolSettings(Protocol):
    """The shard's settings of tool processes (`ActorConfig`): not the agent's to choose."""

    @property
    def tool_read_paths(self) -> tuple[Path, ...]: ...
    @property
    def tool_confinement_required(self) -> bool: ...


class ToolShell(Protocol):
    """What the tool runs need of their actor (read when used: a spec update applies at once)."""

    @property
    def manifest(self) -> AgentManifest: ...
    @property
    def state(self) -> AgentState: ...
    @property
    def machine(self) -> TurnMachine: ...
    @property
    def tools(self) -> ToolRegistry: ...
    @property
    def workspace(self) -> Path: ...
    @property
    def policy(self) -> AutonomyPolicy: ...
    @property
    def agent_slots(self) -> asyncio.Semaphore: ...
    @property
    def tool_slots(self) -> asyncio.Semaphore: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def config(self) -> ToolSettings: ...
    @property
    def tool_io(self) -> concurrent.futures.Executor | None: ...

    async def commit(self, build: Callable[[], list[NewEvent]]) -> list[Event]: ...


_APPROVAL: dict[str | None, Approval] = {None: "pending", "allow": "allow", "deny": "deny"}
"""`AgentState.approvals` (None: asked, not answered) as the schedule names it."""


def facts_of(shell: ToolShell, call: ToolCall) -> CallFacts:
    """What the schedule needs to know about `call` now."""
    state = shell.state
    approval = _APPROVAL.get(state.approvals.get(call.id, "unasked"), "unasked")
    started_before = call.id in state.started_call_ids
    refusal = _precheck(shell, call)
    known = call.name in shell.tools
    spec = shell.tools.get(call.name).spec if known else None
    return CallFacts(
        call,
        refusal=refusal,
        read_only=spec is not None and spec.read_only,
        idempotent=spec is not None and spec.idempotent,
        verdict=_decide(shell, call) if refusal is None else None,
        started_before=started_before,
        approval=approval,
    )


def context_of(shell: ToolShell) -> ToolContext:
    """The context a call of this agent runs in: its workspace and limits, the shard's settings."""
    limits = shell.manifest.spec.limits
    return ToolContext(
        workspace=shell.workspace,
        timeout_s=limits.tool_timeout_s,
        output_cap=limits.tool_output_cap,
        executor=shell.tool_io,
        memory_mb=limits.tool_memory_mb,
        cpu_s=limits.tool_cpu_s,
        open_files=limits.tool_open_files,
        processes=limits.tool_processes,
        read_paths=shell.config.tool_read_paths,
        confinement_required=shell.config.tool_confinement_required,
    )


def _precheck(shell: ToolShell, call: ToolCall) -> ToolResult | None:
    """The error result of a call that must not run (unknown tool, bad arguments, a call of a
    tool this agent was not given), or None."""
    names = shell.manifest.spec.tools
    if call.name not in names or call.name not in shell.tools:
        text = f"error[unknown_tool]: no tool named {call.name!r}; available tools: {', '.join(names)}"
        return ToolResult(call.id, call.name, text, is_error=True)
    try:
        shell.tools.validate(call.name, call.arguments)
    except ToolError as exc:
        return ToolResult(call.id, call.name, format_tool_error(exc), is_error=True)
    return None


def _decide(shell: ToolShell, call: ToolCall) -> Verdict:
    """The autonomy verdict on `call`. A `path` argument is matched as the workspace-relative path
    the file tools will touch (`~/x`, an absolute path inside the workspace and symlinks that stay
    inside all name the same file as `x`), so a rule cannot be dodged by spelling."""
    read_only = shell.tools.get(call.name).spec.read_only
    arguments = call.arguments
    path = arguments.get("path")
    if isinstance(path, str) and path:
        try:
            resolved = resolve_in_workspace(shell.workspace, path)
        except ToolError:
            pass  # an escape: the tool refuses it anyway
        else:
            arguments = {**arguments, "path": display_path(shell.workspace, resolved)}
    return shell.policy.decide(call.name, arguments, read_only=read_only)


class ToolRuns:
    """The tasks of one message's tool calls (see the module docstring)."""

    def __init__(self, shell: ToolShell) -> None:
        self.shell = shell
        self.schedule = ToolSchedule(shell.manifest.spec.autonomy.streaming_start)
        self.closed = False  # the results are being committed: nothing here is pending any more
        self._tg = asyncio.TaskGroup()
        self._approvals: dict[str, asyncio.Future[str]] = {}
        self._settled = asyncio.Event()

    async def __aenter__(self) -> ToolRuns:
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            await self._tg.__aexit__(et, exc, tb)
        except BaseExceptionGroup as group:
            # The tasks raise nothing but their cancellation (a tool's failure is its result):
            # give the caller the one exception (the body's own, unchanged), not a group.
            if len(group.exceptions) == 1:
                if group.exceptions[0] is exc:
                    return
                raise group.exceptions[0] from None
            raise
        finally:
            for fut in self._approvals.values():
                if not fut.done():
                    fut.cancel()

    # -- mid-stream -----------------------------------------------------------------------------

    async def arrive(self, call: ToolCall) -> None:
        """A call is complete in the stream: start it now if the schedule says so. An early side
        effect (opted-in idempotent) is durable (`tool_call`, `early`) before it starts; a read-only
        one is announced with its message (a crash before that lost nothing)."""
        arrival = self.schedule.arrive(facts_of(self.shell, call))
        if arrival == "early_durable":
            shell = self.shell
            await shell.commit(lambda: shell.machine.tool_calls_started([call], early=True))
            self.schedule.durable([call.id])
        if arrival != "late":
            self._pump()

    # -- the message's end ----------------------------------------------------------------------

    async def run(self, calls: Sequence[ToolCall]) -> float:
        """Run the open calls of the last message; commit all their results at once, in call
        order, whatever order they finish in (the durable transcript does not depend on tool
        timing). Returns the seconds it took.

        A complete message (`tool_use`): calls started early are awaited; the others are checked
        against the autonomy rules: `allow` starts now, `deny` gets an error result, `ask` commits
        `approval_required` and waits for an operator (or the deadline) without blocking the
        mailbox. An unfinished message (`max_tokens`, `content_filter`, `error`): calls not
        started are cancelled (error results); early results are kept, all marked
        `incomplete_message`."""
        shell = self.shell
        message = shell.state.last_assistant()
        stop = message.stop_reason if message is not None else "tool_use"
        t0 = time.perf_counter()
        triage = self.schedule.triage([facts_of(shell, c) for c in calls], stop)
        loop = asyncio.get_running_loop()
        for call, _ in triage.ask:
            self._approvals[call.id] = loop.create_future()
        deadline = time.time() + shell.manifest.spec.autonomy.approval_timeout_s

        def started() -> list[NewEvent]:
            events = shell.machine.tool_calls_started(triage.start)
            for call, reason in triage.ask:
                events.extend(shell.machine.approval_required(call, reason, deadline))
            return events

        await shell.commit(started)
        self.schedule.durable(c.id for c in triage.start)
        for call, _ in triage.ask:
            self._tg.create_task(self._after_approval(call), name=f"approval:{call.id}")
        self._pump()
        await self._settled.wait()
        results = self.schedule.results()
        self.closed = True
        shell.metrics.tool_runs += triage.jobs
        incomplete = message is not None and is_incomplete(stop)
        await shell.commit(lambda: shell.machine.tool_results(results, incomplete=incomplete))
        return time.perf_counter() - t0

    # -- operators ------------------------------------------------------------------------------

    def approve(self, tool_call_id: str, decision: str) -> None:
        """An operator's answer for a call waiting for approval. `UnknownToolCall` if that call is
        not waiting."""
        fut = None if self.closed else self._approvals.get(tool_call_id)
        if fut is None or fut.done():
            raise UnknownToolCall(f"no approval is pending for tool call {tool_call_id!r}")
        fut.set_result(decision)

    def pending_approvals(self) -> list[str]:
        return [] if self.closed else [k for k, f in self._approvals.items() if not f.done()]

    async def _after_approval(self, call: ToolCall) -> None:
        """Wait for an operator's decision (or the deadline), commit it, and tell the schedule."""
        shell = self.shell
        fut = self._approvals[call.id]
        autonomy = shell.manifest.spec.autonomy
        remaining = shell.state.approval_deadlines.get(call.id, 0.0) - time.time()
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
        await shell.commit(lambda: shell.machine.approval(call, decision, by))
        if (shell.state.approvals.get(call.id) or decision) == "deny":
            who = "an operator denied it" if by == "operator" else f"no operator answered within {autonomy.approval_timeout_s:g} s"
            self.schedule.decided(call.id, False, who)
        else:
            self.schedule.decided(call.id, True)
        self._pump()

    # -- running --------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start what the schedule says may start now; wake `run` once every call has its result."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return  # the message's group is being torn down (interrupt, stop): nothing new starts
        for call in self.schedule.ready():
            self._tg.create_task(self._execute(call), name=f"tool:{call.id}")
        if self.schedule.settled:
            self._settled.set()

    async def _execute(self, call: ToolCall) -> None:
        """Run one call within the agent's and the shard's limits (a call waiting for its turn
        holds no slot)."""
        shell = self.shell
        async with shell.agent_slots, shell.tool_slots:
            result = await shell.tools.execute(call, context_of(shell))
        self.schedule.finished(call.id, result)
        self._pump()
