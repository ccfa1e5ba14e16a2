"""The tool plan of one assistant message: which calls run, when, and which never do (sans-IO).

`ToolSchedule` holds every decision about the calls of one message and does no IO: the shell
(`agent_runtime.agent.tool_runs`) tells it what happened — a call is complete in the stream
(`arrive`, with its `CallFacts`: valid or not, the tool's hints, the autonomy verdict, what the
log says), the message ended (`announce`, `triage`), a `tool_call` event is durable (`durable`),
an operator decided (`decided`), a call finished (`finished`) — and asks it what to do now:
`ready()` names the calls to start, `settled` says every call has its result, `results()` gives
them in call order. The rules (docs/tools.md, "Streaming execution"):

- **Early start.** A call complete mid-stream starts at once if it is valid, allowed, read-only
  (or idempotent, opted in with `streamingStart: readOnlyOrIdempotent`; nothing with `off`) and
  the order allows it: nothing starts early after a valid call with side effects, and a side
  effect starts early only if every earlier valid call started early. An early side effect is
  durable (its own `tool_call` commit) before it starts; an early read-only call is announced
  with its message.
- **The message's end.** Its `tool_call` events announce the early calls and (for a finished
  message) the allowed calls that start once it is committed. Then each open call is: running
  already (early), run again (its `tool_call` is in the log: a restart cut it short), cancelled
  (an unfinished message: `max_tokens`, `content_filter`, `error`), refused (unknown tool, bad
  arguments), denied (a rule, or an operator's earlier answer), asked (an operator decides), or
  started.
- **Order within the message.** A call with side effects starts after every earlier call that
  runs (or waits for an operator) has ended; a read-only call after the last earlier call with
  side effects has ended. A call that never runs is no barrier; one waiting for an operator is.
  So consecutive reads run together, and `[write a, read a]` reads what was written.
- **Durability.** No call starts before its `tool_call` event is durable, except an early
  read-only call (it changes nothing; its message announces it). Results are kept in call
  order, whatever order the calls finish in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Literal

from agent_runtime.agent.autonomy import Verdict
from agent_runtime.agent.turn import is_incomplete
from agent_runtime.messages import ToolCall, ToolResult

StreamingStart = Literal["readOnly", "readOnlyOrIdempotent", "off"]
Approval = Literal["unasked", "pending", "allow", "deny"]
Fate = Literal["undecided", "run", "ask", "never"]
Arrival = Literal["late", "early", "early_durable"]
"""What `arrive` decided: the call waits for the message's end; it starts now; it starts once its
`tool_call` (`early`) is durable (`durable`) and the calls before it have ended."""


@dataclasses.dataclass(frozen=True, slots=True)
class CallFacts:
    """What the shell knows about one call when the schedule needs a decision."""

    call: ToolCall
    refusal: ToolResult | None = None
    """The error result of a call that can never run (unknown tool, invalid arguments), or None."""
    read_only: bool = False
    """The tool's hint; False for a tool the registry does not know (ordering errs on the safe side)."""
    idempotent: bool = False
    verdict: Verdict | None = None
    """The autonomy verdict; None for a refused call."""
    started_before: bool = False
    """Its `tool_call` event is in the log already: a crash cut it short, it runs again."""
    approval: Approval = "unasked"
    """What the log says about asking an operator (`pending`: asked, not answered yet)."""

    @property
    def side_effect(self) -> bool:
        return not self.read_only

    @property
    def allowed(self) -> bool:
        return self.refusal is None and self.verdict is not None and self.verdict.action == "allow"


def denied(call: ToolCall, why: str) -> ToolResult:
    return ToolResult(call.id, call.name, f"error[denied]: tool call refused: {why}", is_error=True)


def cancelled(call: ToolCall, stop: str) -> ToolResult:
    return ToolResult(call.id, call.name,
                      f"error[cancelled]: not run: the message ended with stop reason {stop!r} before it was complete",
                      is_error=True)


@dataclasses.dataclass(slots=True)
class _Call:
    facts: CallFacts
    fate: Fate
    early: bool = False
    held: bool = False  # its `tool_call` is not durable yet: it may not start
    reason: str = ""  # why an operator is asked
    started: bool = False
    ended: bool = False
    result: ToolResult | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Triage:
    """The decisions at the message's end: `start` get their `tool_call` now (one commit with the
    `approval_required` of `ask`), then `durable(start)`; `ask` wait for `decided`."""

    start: tuple[ToolCall, ...]
    ask: tuple[tuple[ToolCall, str], ...]
    jobs: int
    """Calls that run or wait for an operator (early ones included)."""


class ToolSchedule:
    """The plan of one message's calls (see the module docstring). Never does IO."""

    def __init__(self, streaming_start: StreamingStart = "readOnly") -> None:
        self.streaming_start = streaming_start
        self._calls: list[_Call] = []
        self._by_id: dict[str, _Call] = {}
        self._side_effect_seen = False  # a valid call with side effects arrived: nothing starts early after it
        self._not_started_seen = False  # a valid call did not start early: no side effect starts early after it
        self.triaged = False

    # -- the stream ---------------------------------------------------------------------------

    def arrive(self, facts: CallFacts) -> Arrival:
        """A call is complete in the stream: does it start early?"""
        call = facts.call
        if call.id in self._by_id:  # the same id twice: only the first can start
            return "late"
        early = self._may_start_early(facts)
        if facts.refusal is None:
            self._side_effect_seen = self._side_effect_seen or facts.side_effect
            self._not_started_seen = self._not_started_seen or not early
        entry = _Call(facts, "run" if early else ("never" if facts.refusal is not None else "undecided"), early=early,
                      held=early and facts.side_effect)
        self._calls.append(entry)
        self._by_id[call.id] = entry
        if not early:
            return "late"
        return "early_durable" if facts.side_effect else "early"

    def _may_start_early(self, f: CallFacts) -> bool:
        mode = self.streaming_start
        if mode == "off" or f.started_before or f.refusal is not None:
            return False
        if not (f.read_only or (f.idempotent and mode == "readOnlyOrIdempotent")):
            return False
        if self._side_effect_seen or (f.side_effect and self._not_started_seen):
            return False
        return f.allowed

    def announce(self, stop: str) -> list[tuple[ToolCall, bool]]:
        """The stream ended with `stop`: the calls the message's commit announces (`tool_call`
        event), with whether each started early: the early ones, and for a finished message the
        allowed ones, which start as soon as it is committed."""
        return [(c.facts.call, c.early) for c in self._calls
                if c.early or (not is_incomplete(stop) and c.facts.allowed)]

    def early_calls(self) -> list[ToolCall]:
        """The calls that started mid-stream (an early side effect once its `tool_call` is durable)."""
        return [c.facts.call for c in self._calls if c.early and not c.held]

    # -- the message's end --------------------------------------------------------------------

    def triage(self, facts: Sequence[CallFacts], stop: str) -> Triage:
        """Decide every open call of the message (`facts`, in call order; fresh facts, the log may
        have moved since the stream). Calls started early keep running."""
        incomplete = is_incomplete(stop)
        calls: list[_Call] = []
        start: list[ToolCall] = []
        ask: list[tuple[ToolCall, str]] = []
        seen: dict[str, _Call] = {}
        for f in facts:
            call = f.call
            known = self._by_id.get(call.id)
            if known is not None and known.early:
                calls.append(known)
                continue
            if call.id in seen:  # the same id again (a malformed stream): the same call, one run, one result
                calls.append(seen[call.id])
                continue
            entry = _Call(f, "never")
            if f.started_before:
                entry.fate, entry.held = "run", True
                start.append(call)
            elif incomplete:
                entry.result = cancelled(call, stop)
            elif f.refusal is not None:
                entry.result = f.refusal
            elif f.approval == "deny":
                entry.result = denied(call, "an operator denied it")
            elif f.approval == "pending":  # asked before a restart: wait again until the same deadline
                entry.fate = "ask"
                ask.append((call, ""))
            elif f.verdict is None or f.verdict.action == "deny":
                entry.result = denied(call, f.verdict.reason if f.verdict is not None else "no verdict")
            elif f.verdict.action == "ask":
                entry.fate, entry.reason = "ask", f.verdict.reason
                ask.append((call, f.verdict.reason))
            else:
                entry.fate, entry.held = "run", True
                start.append(call)
            if entry.fate == "never":
                entry.ended = True
            calls.append(entry)
            seen[call.id] = entry
        self._calls = calls
        self._by_id = {c.facts.call.id: c for c in calls}
        self.triaged = True
        return Triage(tuple(start), tuple(ask), sum(c.fate != "never" for c in self._by_id.values()))

    # -- what the shell reports ---------------------------------------------------------------

    def durable(self, ids: Iterable[str]) -> None:
        """The `tool_call` events of these calls are committed: they may start."""
        for i in ids:
            if (c := self._by_id.get(i)) is not None:
                c.held = False

    def decided(self, call_id: str, allow: bool, why: str = "") -> None:
        """An operator's decision (or the deadline's) is committed; an allowed call's `tool_call`
        with it. `why`: the refusal's reason."""
        c = self._by_id[call_id]
        if allow:
            c.fate, c.held = "run", False
        else:
            c.ended, c.result = True, denied(c.facts.call, why)

    def finished(self, call_id: str, result: ToolResult) -> None:
        c = self._by_id[call_id]
        c.ended, c.result = True, result

    # -- what to do ---------------------------------------------------------------------------

    def ready(self) -> list[ToolCall]:
        """The calls to start now (in call order); each is named once."""
        out = []
        for i, c in enumerate(self._calls):
            if c.fate == "run" and not c.started and not c.held and not self._barriers(i):
                c.started = True
                out.append(c.facts.call)
        return out

    def _barriers(self, i: int) -> list[_Call]:
        """The earlier calls the order makes call `i` wait for that have not ended: every one for a
        side effect, the last side effect for a read. Calls still undecided (the message is
        streaming) count as barriers."""
        earlier = self._calls[:i]
        if self._calls[i].facts.side_effect:
            return [c for c in earlier if not c.ended and c.fate != "never"]
        last = next((c for c in reversed(earlier) if c.fate != "never" and c.facts.side_effect), None)
        return [] if last is None or last.ended else [last]

    def waiting_for(self, call_id: str) -> list[str]:
        """The calls `call_id` waits for now (barriers not yet ended), for logs and tests."""
        i = next(n for n, c in enumerate(self._calls) if c.facts.call.id == call_id)
        return [c.facts.call.id for c in self._barriers(i)]

    @property
    def settled(self) -> bool:
        """Triaged, and every call has its result."""
        return self.triaged and all(c.ended for c in self._calls)

    def results(self) -> list[ToolResult]:
        """Every call's result, in call order (once `settled`)."""
        out = []
        for c in self._calls:
            assert c.result is not None, f"call {c.facts.call.id} has no result yet"
            out.append(c.result)
        return out

    def ran(self) -> dict[str, ToolResult]:
        """The results of the calls that ran and finished so far (an interrupt keeps them)."""
        return {c.facts.call.id: c.result for c in self._calls if c.started and c.result is not None}
