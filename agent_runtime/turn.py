"""The turn: a sans-IO state machine from inputs to events and effects.

`TurnMachine` never does IO. Each input (a user message, the model's completed message, tool
results, an interrupt, a model error) becomes a list of `NewEvent`s; the shell
(`agent_runtime.actor`) appends them to the log, applies them to `AgentState`, and then asks
`next_effect()` what to do: call the model, run tools, finish the turn, or wait. Because the effect
is a function of the state alone, a restarted agent resumes an interrupted turn by asking the
same question of its replayed state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from agent_runtime import native
from agent_runtime.events import EventKind, NewEvent
from agent_runtime.manifest import AgentSpec
from agent_runtime.messages import AssistantMessage, ToolCall, ToolResult, Usage
from agent_runtime.state import AgentState


@dataclasses.dataclass(frozen=True, slots=True)
class CallModel:
    """Ask the model for the next message of this turn."""


@dataclasses.dataclass(frozen=True, slots=True)
class RunTools:
    """Run these calls (the open calls of the last assistant message), results in call order."""

    calls: tuple[ToolCall, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class FinishTurn:
    """The turn is over; `reason` goes into the closing `status` event."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do until the next input."""


Effect = CallModel | RunTools | FinishTurn | Wait


LIMIT_ERRORS = {
    "max_turns": ("max_turns_exceeded", "the turn used its {spec.limits.max_turns} model calls (spec.limits.maxTurns)"),
    "token_budget": (
        "token_budget_exceeded",
        "the prompt is over {spec.limits.token_budget} tokens (spec.limits.tokenBudget)",
    ),
}


def count(text: str) -> int:
    return native.count_tokens(text) if text else 0


class TurnMachine:
    """Decides the loop of one agent. Holds the state it reads; never mutates it."""

    def __init__(self, state: AgentState, spec: AgentSpec) -> None:
        self.state = state
        self.spec = spec
        self.prefix_tokens = count(spec.system_prompt) + 32 * len(spec.tools)

    # -- inputs -> events -------------------------------------------------------------------

    def user_message(self, client_id: str, text: str) -> list[NewEvent]:
        """A new user message: deferred into the running turn, or the start of a new turn."""
        running = self.state.running
        events = [
            NewEvent(
                EventKind.USER_MESSAGE,
                {"id": client_id, "text": text, "tokens": count(text), "deferred": running},
                client_id=client_id,
            )
        ]
        if not running:
            events.append(NewEvent(EventKind.STATUS, {"state": "running", "turn": self.state.turns + 1}))
        return events

    def model_message(self, message: AssistantMessage, usage: Usage, message_id: str) -> list[NewEvent]:
        """The model's completed message, a `tool_call` event for each call it asks for (they
        run next: one commit instead of two), and the usage of the call."""
        tokens = count(message.text) + sum(count(str(c.arguments)) for c in message.tool_calls)
        return [
            NewEvent(
                EventKind.ASSISTANT_MESSAGE,
                {
                    "id": message_id,
                    "text": message.text,
                    "tool_calls": [c.to_dict() for c in message.tool_calls],
                    "stop_reason": message.stop_reason,
                    "tokens": tokens,
                },
            ),
            *(NewEvent(EventKind.TOOL_CALL, c.to_dict()) for c in message.tool_calls),
            NewEvent(EventKind.USAGE, {**usage.to_dict(), "model": self.spec.model.name}),
        ]

    def tool_calls_started(self, calls: Sequence[ToolCall]) -> list[NewEvent]:
        """A `tool_call` event per call about to run, once: a call a crash cut short already has
        one and runs again without a second event (tools run at least once; see docs/tools.md)."""
        started = self.state.started_call_ids
        return [NewEvent(EventKind.TOOL_CALL, c.to_dict()) for c in calls if c.id not in started]

    def tool_results(self, results: Sequence[ToolResult]) -> list[NewEvent]:
        return [NewEvent(EventKind.TOOL_RESULT, {**r.to_dict(), "tokens": count(r.content)}) for r in results]

    def finish(self, reason: str) -> list[NewEvent]:
        """Close the turn. A limit that ended it is also reported as an `error` event."""
        events: list[NewEvent] = []
        if reason in LIMIT_ERRORS:
            code, message = LIMIT_ERRORS[reason]
            events.append(NewEvent(EventKind.ERROR, {"code": code, "message": message.format(spec=self.spec)}))
        events.append(NewEvent(EventKind.STATUS, {"state": "idle", "reason": reason}))
        return events

    def model_error(self, code: str, message: str) -> list[NewEvent]:
        """The model call failed for good: record it and wait for the next user message."""
        return [
            NewEvent(EventKind.ERROR, {"code": code, "message": message}),
            *self.finish("error"),
        ]

    def interrupt(self, partial_text: str, message_id: str) -> list[NewEvent]:
        """Stop the turn, keep history: the partial text so far, and an `interrupted` result for
        each open tool call (providers require a result for every call)."""
        if not self.state.running:
            return []
        events: list[NewEvent] = []
        open_calls = self.state.open_calls()
        if partial_text and not open_calls:
            events.append(
                NewEvent(
                    EventKind.ASSISTANT_MESSAGE,
                    {"id": message_id, "text": partial_text, "tool_calls": [], "stop_reason": "interrupted",
                     "tokens": count(partial_text)},
                )
            )
        events.extend(
            self.tool_results(
                [ToolResult(c.id, c.name, "interrupted by the user before it finished", is_error=True) for c in open_calls]
            )
        )
        events.extend(self.finish("interrupted"))
        return events

    # -- state -> effect -----------------------------------------------------------------------

    def next_effect(self) -> Effect:
        state = self.state
        if not state.running:
            return Wait()
        open_calls = state.open_calls()
        if open_calls:
            return RunTools(tuple(open_calls))
        last = state.messages[-1] if state.messages else None
        if isinstance(last, AssistantMessage):
            return FinishTurn(last.stop_reason)
        if last is None:
            return FinishTurn("empty")
        if state.turn_model_calls >= self.spec.limits.max_turns:
            return FinishTurn("max_turns")
        if self.context_tokens() > self.spec.limits.token_budget:
            return FinishTurn("token_budget")
        return CallModel()

    def context_tokens(self) -> int:
        """Tokens of the next prompt, kept incrementally (each message counted once)."""
        return self.prefix_tokens + self.state.context_tokens
