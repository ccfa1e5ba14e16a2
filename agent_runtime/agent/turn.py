"""The turn: a sans-IO state machine from inputs to events and effects.

`TurnMachine` never does IO. Each input (a user message, the model's completed message, tool
results, an interrupt, a model error) becomes a list of `NewEvent`s; the shell
(`agent_runtime.agent.actor`) appends them to the log, applies them to `AgentState`, and then asks
`next_effect()` what to do: call the model, run tools, finish the turn, or wait. Because the effect
is a function of the state alone, a restarted agent resumes an interrupted turn by asking the
same question of its replayed state.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from agent_runtime import compression, pricing
from agent_runtime.metrics import CompressionMeter
from agent_runtime.tokens import assistant_texts, count
from agent_runtime.events import EventKind, NewEvent
from agent_runtime.manifest import AgentSpec
from agent_runtime.messages import (
    AssistantMessage,
    Message,
    ProviderState,
    ToolCall,
    ToolResult,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from agent_runtime.agent.state import AgentState

INCOMPLETE_STOPS = frozenset({"max_tokens", "content_filter", "error", "interrupted"})
"""Stop reasons of a message the model did not finish: its calls not yet started never run, the
results of calls it started early are kept but marked `incomplete_message`, and the turn ends."""


def is_incomplete(stop_reason: str) -> bool:
    return stop_reason in INCOMPLETE_STOPS


@dataclasses.dataclass(frozen=True, slots=True)
class CallModel:
    """Ask the model for the next message of this turn."""


@dataclasses.dataclass(frozen=True, slots=True)
class Compress:
    """Fold the oldest `count` live messages into a new frozen chunk (`TurnMachine.compress`)
    before the next model call; `consolidate`: the frozen chunks passed their budget, make them one
    archive chunk first."""

    count: int
    consolidate: bool = False


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


Effect = CallModel | Compress | RunTools | FinishTurn | Wait


LIMIT_ERRORS = {
    "max_turns": ("max_turns_exceeded", "the turn used its {spec.limits.max_turns} model calls (spec.limits.maxTurns)"),
    "token_budget": (
        "token_budget_exceeded",
        "the prompt is over {spec.limits.token_budget} tokens (spec.limits.tokenBudget)",
    ),
}


class TurnMachine:
    """Decides the loop of one agent. Holds the state it reads; never mutates it."""

    def __init__(self, state: AgentState, spec: AgentSpec, meter: CompressionMeter | None = None) -> None:
        self.state = state
        self.spec = spec
        self.meter = meter or CompressionMeter()
        # each live message prepared for folding when it arrives (by identity: the message object
        # is held, so an id is not reused while cached); a fold takes these and drops them
        self._prepared: dict[int, tuple[Message, compression.Prepared]] = {}
        self.prefix_tokens = count(spec.system_prompt) + 32 * len(spec.tools)

    # -- inputs -> events -------------------------------------------------------------------

    def user_message(self, client_id: str, text: str) -> list[NewEvent]:
        """A new user message: deferred into the running turn, or the start of a new turn."""
        running = self.state.running
        events = [
            NewEvent(
                EventKind.USER_MESSAGE,
                {"id": client_id, "text": text, "tokens": self._count(text), "deferred": running},
                client_id=client_id,
            )
        ]
        if not running:
            events.append(NewEvent(EventKind.STATUS, {"state": "running", "turn": self.state.turns + 1}))
        return events

    def model_message(
        self, message: AssistantMessage, usage: Usage, message_id: str, announce: Sequence[tuple[ToolCall, bool]] = ()
    ) -> list[NewEvent]:
        """The model's completed message, a `tool_call` event for each call in `announce` (one
        commit instead of two), and the usage of the call. `announce`: (call, early) pairs, from
        the message's `ToolSchedule.announce` — calls already running (early) and allowed calls that
        start as soon as the message is committed. Other calls get their `tool_call` when they start
        (`tool_calls_started`, `approval`); a call that never starts has none."""
        ids = {c.id for c in message.tool_calls}
        started = self.state.started_call_ids
        tokens = self._count(*assistant_texts(message.text, message.tool_calls))
        return [
            NewEvent(EventKind.ASSISTANT_MESSAGE, {"id": message_id, **message.to_dict(tokens=tokens)}),
            *(
                NewEvent(EventKind.TOOL_CALL, {**c.to_dict(), **({"early": True} if early else {})})
                for c, early in announce
                if c.id in ids and c.id not in started
            ),
            NewEvent(EventKind.USAGE, self.usage_data(usage)),
        ]

    def _count(self, *texts: str) -> int:
        """Tokens of a new message (native, each message counted once when committed)."""
        t0 = time.thread_time()
        n = sum(count(t) for t in texts)
        self.meter.counting_s += time.thread_time() - t0
        self.meter.counted_tokens += n
        return n

    def usage_data(self, usage: Usage) -> dict[str, Any]:
        """A `usage` event's data: the tokens, the cached share of the prompt and the estimated cost
        (input-token units at the provider's list-price multipliers, `agent_runtime.pricing`)."""
        provider = self.spec.model.provider
        return {
            **usage.to_dict(),
            "model": self.spec.model.name,
            "cached_share": round(pricing.cached_share(usage), 4),
            "cost_units": round(pricing.cost(usage, provider), 2),
        }

    def compress(self, count: int, consolidate: bool = False) -> tuple[list[NewEvent], int]:
        """Fold the oldest `count` live messages into the next frozen chunk: the `compression`
        event, and how many messages were analysed (the folded ones, each once). `consolidate`:
        make every frozen chunk one archive chunk instead (`compression.consolidate`)."""
        state = self.state
        if consolidate:
            archive = compression.consolidate(state.frozen_digest, state.frozen_digest_tokens, state.frozen_tokens,
                                             self.spec.frozen_budget(), self._current_request())
            data = archive.event_data(len(state.chunk_ends) + 1, consolidated=True)
            data["folded_messages"] = state.frozen
            data["analysed"] = 0  # nothing analysed again: the chunks' stored lines are joined
            return [NewEvent(EventKind.COMPRESSION, data)], 0
        start = state.frozen
        end = start + count
        later = state.live_paths.copy()
        for path in state.message_paths[start:end]:
            if path is not None:
                later[path] -= 1
        span = state.messages[start:end]
        prepared = [self._prepared.pop(id(m), (None, None)) for m in span]
        result = compression.fold(
            span,
            state.message_tokens[start:end],
            state.message_paths[start:end],
            {p for p, n in later.items() if n > 0},
            self.spec.compression.folded_output_tokens,
            [p if held is m else None for (held, p), m in zip(prepared, span, strict=True)],
        )
        return [NewEvent(EventKind.COMPRESSION, result.event_data(len(state.chunk_ends) + 1))], count

    def tool_calls_started(self, calls: Sequence[ToolCall], *, early: bool = False) -> list[NewEvent]:
        """A `tool_call` event per call about to run, once: a call a crash cut short already has
        one and runs again without a second event (tools run at least once; see docs/tools.md).
        `early`: the call starts while its message is still streaming (read-only/idempotent)."""
        started = self.state.started_call_ids
        extra = {"early": True} if early else {}
        return [NewEvent(EventKind.TOOL_CALL, {**c.to_dict(), **extra}) for c in calls if c.id not in started]

    def approval_required(self, call: ToolCall, reason: str, deadline: float) -> list[NewEvent]:
        """Ask the operators about `call` (once): the call waits until `approval` or `deadline`."""
        if call.id in self.state.approvals:
            return []
        autonomy = self.spec.autonomy
        return [
            NewEvent(
                EventKind.APPROVAL_REQUIRED,
                {
                    "tool_call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments,
                    "reason": reason,
                    "timeout_s": autonomy.approval_timeout_s,
                    "deadline": round(deadline, 3),
                    "default_decision": autonomy.approval_timeout_decision,
                },
            )
        ]

    def approval(self, call: ToolCall, decision: str, by: str) -> list[NewEvent]:
        """The answer for a waiting call (`by`: "operator" or "timeout"); an allowed call starts
        now, so its `tool_call` event is committed with the decision. Nothing if already decided."""
        if self.state.approvals.get(call.id, "missing") is not None:
            return []
        events = [NewEvent(EventKind.APPROVAL, {"tool_call_id": call.id, "decision": decision, "by": by})]
        if decision == "allow":
            events.extend(self.tool_calls_started([call]))
        return events

    def tool_results(self, results: Sequence[ToolResult], incomplete: bool = False) -> list[NewEvent]:
        """Results in the order given (the actor gives call order). `incomplete`: they belong to a
        message the model did not finish (see `INCOMPLETE_STOPS`)."""
        extra = {"incomplete_message": True} if incomplete else {}
        return [
            NewEvent(EventKind.TOOL_RESULT, {**r.to_dict(), "tokens": self._count(r.content), **extra}) for r in results
        ]

    def finish(self, reason: str) -> list[NewEvent]:
        """Close the turn. A limit that ended it is also reported as an `error` event."""
        events: list[NewEvent] = []
        if reason in LIMIT_ERRORS:
            code, message = LIMIT_ERRORS[reason]
            events.append(NewEvent(EventKind.ERROR, {"code": code, "message": message.format(spec=self.spec)}))
        events.append(NewEvent(EventKind.STATUS, {"state": "idle", "reason": reason}))
        return events

    def attempt_usage(self, usage: Usage, outcome: str) -> list[NewEvent]:
        """The `usage` event of a model call that never completed (`outcome`: "failed", retried or
        not, or "interrupted"): the provider bills what it had reported when the stream ended
        (e.g. Anthropic's prompt tokens at `message_start`). It adds to the agent's totals like
        any usage; `attempt` tells it from a completed call's."""
        return [NewEvent(EventKind.USAGE, {**self.usage_data(usage), "attempt": outcome})]

    def model_error(self, code: str, message: str) -> list[NewEvent]:
        """The model call failed for good: record it and wait for the next user message."""
        return [
            NewEvent(EventKind.ERROR, {"code": code, "message": message}),
            *self.finish("error"),
        ]

    def interrupt(
        self,
        partial_text: str,
        message_id: str,
        early_calls: Sequence[ToolCall] = (),
        finished: dict[str, ToolResult] | None = None,
        provider_state: ProviderState | None = None,
        spent: Usage | None = None,
    ) -> list[NewEvent]:
        """Stop the turn, keep history. While streaming: the partial text so far, with the calls
        that had already started (`early_calls`, their `tool_call` events are in the log). Then a
        result for each open call (providers require one for every call): the real one if it
        had finished (`finished`), else `interrupted`. `provider_state`: the reasoning state complete
        so far in the stream, kept with the partial message (its started calls need it back).
        `spent`: the usage the interrupted stream had reported (`attempt_usage`, after the partial
        message)."""
        if not self.state.running:
            return []
        finished = finished or {}
        events: list[NewEvent] = []
        open_calls = self.state.open_calls()
        incomplete = False
        if not open_calls:
            started = list(early_calls)
            if partial_text or started:
                tokens = sum(count(t) for t in assistant_texts(partial_text, started))
                partial = AssistantMessage(partial_text, tuple(started), "interrupted", provider_state=provider_state)
                events.append(NewEvent(EventKind.ASSISTANT_MESSAGE, {"id": message_id, **partial.to_dict(tokens=tokens)}))
                if spent is not None:
                    events.extend(self.attempt_usage(spent, "interrupted"))
                    spent = None
                # read-only calls started mid-stream are announced with their message
                events.extend(self.tool_calls_started(started, early=True))
            open_calls, incomplete = started, True
        results = [
            finished.get(c.id) or ToolResult(c.id, c.name, "interrupted by the user before it finished", is_error=True)
            for c in open_calls
        ]
        if spent is not None:
            events.extend(self.attempt_usage(spent, "interrupted"))
        events.extend(self.tool_results(results, incomplete=incomplete))
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
        if isinstance(last, ToolResultMessage):
            answered = state.last_assistant()
            if answered is not None and is_incomplete(answered.stop_reason):
                return FinishTurn(answered.stop_reason)  # results of an unfinished message: stop
        if last is None:
            return FinishTurn("empty")
        if state.turn_model_calls >= self.spec.limits.max_turns:
            return FinishTurn("max_turns")
        if self.spec.compression.enabled:
            self._prepare_new()
            if (effect := self._compression()) is not None:
                return effect
        if self.context_tokens() > self.spec.limits.token_budget:
            return FinishTurn("token_budget")
        return CallModel()

    def _compression(self) -> Compress | None:
        """A fold or a consolidation due before the next model call, or None. Due when the live
        tail passes its budget or the frozen part passes its own — and whenever the whole prompt
        (system prompt and tools included) is over limits.tokenBudget, with budgets shrunk to fit
        it, so a long system prompt or one huge message cannot leave every turn stopped at the limit."""
        state = self.state
        spec = self.spec
        budget, keep = spec.tail_budget()
        frozen_budget = spec.frozen_budget()
        room = spec.limits.token_budget - self.prefix_tokens  # what the conversation may hold
        over = state.context_tokens > room
        if (state.frozen_tokens > frozen_budget or (over and state.frozen_tokens > room // 3)) and self._consolidation_helps():
            return Compress(state.frozen, consolidate=True)
        tail_tokens = state.tail_tokens()
        if over:  # the tail must fit next to the frozen part
            budget = max(0, min(budget, room - state.frozen_tokens))
            keep = min(keep, budget // 2)
        if tail_tokens <= budget:
            return None
        t0 = time.thread_time()
        n = compression.plan_fold(state.messages, state.message_tokens, state.frozen, tail_tokens, budget, keep,
                                  max_fold=2 * spec.compression.tail_budget)
        self.meter.planning_s += time.thread_time() - t0
        return Compress(n) if n else None

    def _prepare_new(self) -> None:
        """Prepare the live messages that arrived since the last call (newest first, back to the
        first one already prepared): per turn, work on the new messages only."""
        state = self.state
        cache = self._prepared
        max_tokens = self.spec.compression.folded_output_tokens
        i = len(state.messages) - 1
        if i < state.frozen or id(state.messages[i]) in cache:
            return
        t0 = time.thread_time()
        while i >= state.frozen and (m := state.messages[i]) is not None and id(m) not in cache:
            cache[id(m)] = (m, compression.prepare(m, state.message_tokens[i], max_tokens))
            i -= 1
        self.meter.preparing_s += time.thread_time() - t0

    def _current_request(self) -> str | None:
        """The running turn's request when it is frozen (no user message is live): a consolidation
        keeps it in full. Scans the tail and back to the last user message (rare: consolidations)."""
        state = self.state
        if not state.running or any(isinstance(m, UserMessage) for m in state.messages[state.frozen :]):
            return None
        for m in reversed(state.messages[: state.frozen]):
            if isinstance(m, UserMessage):
                if not compression.is_archive(m):
                    return m.text
                at = m.text.find(compression.CURRENT_REQUEST)  # a consolidation earlier in this turn kept it
                return m.text[at + len(compression.CURRENT_REQUEST) + 1 :] if at >= 0 else None
        return None

    def _consolidation_helps(self) -> bool:
        """Consolidating changes something: not a lone archive that is already as short as one gets."""
        state = self.state
        if state.frozen == 0:
            return False
        if state.frozen > 1 or not compression.is_archive(state.messages[0]):
            return True
        return state.frozen_tokens > self.spec.frozen_budget() // 2 + compression.header_tokens()

    def context_tokens(self) -> int:
        """Tokens of the next prompt, kept incrementally (each message counted once)."""
        return self.prefix_tokens + self.state.context_tokens
