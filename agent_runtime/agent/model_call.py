"""One model call of an actor: the request, the stream, its retries and what failed attempts cost.

`ModelCalls` builds the `ModelRequest` from the spec and the state, reads one stream (text deltas
go to the hub live, not durably; each tool call complete in the stream goes to the message's
`ToolRuns` at once, which may start it early), and on a provider error decides the retry: a
`status retrying` event and the backoff delay (`providers.retry.backoff_delay`, the one
`agent_runtime.backoff` formula, within the agent's retry budget), or the final `error`. The
usage a stream had reported before it failed or was interrupted is billed all the same
(`spent`). The loop over attempts, each with its own `ToolRuns`, is the actor's
(`AgentActor._call_model`): a failed attempt's early calls end with its task group.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from agent_runtime import pricing
from agent_runtime.agent.hub import Hub
from agent_runtime.agent.state import AgentState
from agent_runtime.agent.tool_runs import ToolRuns
from agent_runtime.agent.turn import TurnMachine
from agent_runtime.events import Event, NewEvent
from agent_runtime.manifest import AgentManifest
from agent_runtime.messages import AssistantMessage, ProviderState, StopReason, ToolCall, Usage
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
from agent_runtime.tools.base import ToolSpec

if TYPE_CHECKING:
    from agent_runtime.metrics import Metrics


class RetrySettings(Protocol):
    """The retry settings of an actor (`ActorConfig`)."""

    @property
    def model_retries(self) -> int: ...
    @property
    def retry_base_s(self) -> float: ...
    @property
    def retry_max_s(self) -> float: ...


class ModelShell(Protocol):
    """What a model call needs of its actor (read when used: a spec update applies at once)."""

    @property
    def key(self) -> str: ...
    @property
    def manifest(self) -> AgentManifest: ...
    @property
    def state(self) -> AgentState: ...
    @property
    def machine(self) -> TurnMachine: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def provider(self) -> Provider: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def config(self) -> RetrySettings: ...
    @property
    def tool_specs(self) -> list[ToolSpec]: ...

    async def commit(self, build: Callable[[], list[NewEvent]]) -> list[Event]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Streamed:
    """A completed stream: its message, the usage the provider reported, the seconds spent
    waiting on the model, and the id its live deltas were sent under."""

    message: AssistantMessage
    usage: Usage
    waited: float
    message_id: str


class ModelCalls:
    """The model calls of one actor, one at a time."""

    def __init__(self, shell: ModelShell, retry_budget: RetryBudget) -> None:
        self.shell = shell
        self.retry_budget = retry_budget
        self.partial_state: ProviderState | None = None  # reasoning state of the message being streamed
        self.attempt_usage: Usage | None = None  # usage reported so far by the stream being read

    def request(self) -> ModelRequest:
        shell = self.shell
        spec = shell.manifest.spec
        return ModelRequest(
            model=spec.model.name,
            system=spec.system_prompt,
            messages=shell.state.messages,
            tools=shell.tool_specs,
            max_tokens=spec.limits.max_output_tokens,
            agent_key=shell.key,
            context_tokens=shell.machine.context_tokens(),
            provider=spec.model.provider,
            region=spec.model.region,
            thinking_budget=spec.model.thinking_budget,
            frozen_ends=tuple(shell.state.chunk_ends[-2:]),
        )

    def start(self) -> str:
        """A new attempt: a new message id (clients drop a failed attempt's text), live from now."""
        message_id = uuid.uuid4().hex
        self.shell.hub.start_live(message_id)
        return message_id

    async def stream(self, request: ModelRequest, message_id: str, runs: ToolRuns) -> Streamed:
        """Stream one message. Each tool call goes to `runs` the moment it is complete in the
        stream (allowed read-only/idempotent calls start at once). If the stream fails or is
        cancelled, `runs` (the caller's task group) cancels the early calls still running; their
        finished results stay in its schedule for an interrupt to keep."""
        hub = self.shell.hub
        parts: list[str] = []
        calls: list[ToolCall] = []
        stop: StopReason = "end_turn"
        usage = Usage()
        provider_state: ProviderState | None = None
        waited = 0.0
        self.partial_state = None
        self.attempt_usage = None
        stream = self.shell.provider.stream(request)
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
                    hub.publish_delta(item.text)
                elif isinstance(item, ToolCallCompleted):
                    calls.append(item.call)
                    await runs.arrive(item.call)
                elif isinstance(item, ProviderStateUpdated):
                    self.partial_state = item.provider_state
                elif isinstance(item, UsageReported):
                    self.attempt_usage = item.usage
                elif isinstance(item, MessageCompleted):
                    stop, usage, provider_state = item.stop_reason, item.usage, item.provider_state
        except BaseException:
            if not isinstance(sys.exc_info()[1], asyncio.CancelledError):
                self.partial_state = None  # a failed stream: the retry (or the error) starts over
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        message = AssistantMessage("".join(parts), tuple(calls), stop, provider_state=provider_state)
        return Streamed(message, usage, waited, message_id)

    async def completed(self, streamed: Streamed, runs: ToolRuns) -> None:
        """Commit the message, with a `tool_call` event for each call its schedule announces."""
        shell = self.shell
        self.attempt_usage = None  # the message's own usage supersedes it
        shell.hub.end_live()
        provider = shell.manifest.spec.model.provider
        shell.metrics.model_usage(provider, streamed.usage, pricing.cost(streamed.usage, provider))
        announce = runs.schedule.announce(streamed.message.stop_reason)
        await shell.commit(lambda: shell.machine.model_message(streamed.message, streamed.usage, streamed.message_id,
                                                               announce))

    async def failed(self, exc: ProviderError, attempt: int) -> float | None:
        """A stream failed. Nothing of it was durable (its text was only live deltas), so a retry
        starts again from the last committed event; what the provider reported it had used is
        billed all the same, with the retry's or the error's commit. Returns the delay before the
        retry, or None: the error is committed and the turn waits for the next message."""
        shell = self.shell
        cfg = shell.config
        provider = shell.manifest.spec.model.provider
        shell.hub.end_live()
        spent_usage = self.spent()
        spent = shell.machine.attempt_usage(spent_usage, "failed") if spent_usage is not None else []
        retry = exc.retryable and attempt < cfg.model_retries
        if retry and not self.retry_budget.try_spend(time.monotonic()):
            retry = False
            exc = ProviderError(f"{exc} (retry budget of the agent exhausted)", retryable=False, code=exc.code)
        if not retry:
            shell.metrics.model_error(provider, exc.code)
            final = exc
            await shell.commit(lambda: [*spent, *shell.machine.model_error(final.code, str(final))])
            return None
        delay = backoff_delay(attempt, base_s=cfg.retry_base_s, cap_s=cfg.retry_max_s, hint_s=exc.retry_after_s)
        shell.metrics.model_retry(provider, exc.code)
        status: dict[str, Any] = {"state": "retrying", "reason": exc.code, "attempt": attempt + 1,
                                  "delay_s": round(delay, 3), "provider": provider}
        if exc.retry_after_s is not None:
            status["retry_after_s"] = exc.retry_after_s
        await shell.commit(lambda: [*spent, NewEvent("status", status)])
        return delay

    def spent(self) -> Usage | None:
        """The usage the stream of the model call that just ended without completing (failed or
        interrupted) had reported, if any; counted in /metrics (not as a call)."""
        usage, self.attempt_usage = self.attempt_usage, None
        if usage is not None:
            provider = self.shell.manifest.spec.model.provider
            self.shell.metrics.model_usage(provider, usage, pricing.cost(usage, provider), completed=False)
        return usage
