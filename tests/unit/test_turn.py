"""The turn state machine: inputs → events, state → next effect. No IO: events are applied by hand."""

from __future__ import annotations

import itertools

import pytest

from agent_runtime.events import Event, EventKind, NewEvent
from agent_runtime.manifest import make_manifest
from agent_runtime.messages import AssistantMessage, ToolCall, ToolResult, ToolResultMessage, Usage, UserMessage
from agent_runtime.agent.state import AgentState
from agent_runtime.agent.turn import CallModel, Compress, FinishTurn, RunTools, TurnMachine, Wait


class Harness:
    """Applies the machine's events like the actor does (append = give a seq, then apply)."""

    def __init__(self, **spec: object) -> None:
        self.state = AgentState()
        self.machine = TurnMachine(self.state, make_manifest("t", **spec).spec)
        self.log: list[Event] = []
        self._seq = itertools.count(1)

    def commit(self, events: list[NewEvent]) -> list[Event]:
        out = []
        for e in events:
            ev = Event(next(self._seq), e.kind, e.data, 0.0, e.client_id)
            self.state.apply(ev)
            self.log.append(ev)
            out.append(ev)
        return out

    def kinds(self) -> list[str]:
        return [e.kind for e in self.log]


CALL = ToolCall("c1", "list_dir", {"path": "."})
CALL2 = ToolCall("c2", "read_file", {"path": "a.txt"})


def test_idle_agent_waits() -> None:
    h = Harness()
    assert h.machine.next_effect() == Wait()


def test_user_message_starts_a_turn_and_asks_the_model() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "hello"))
    assert h.kinds() == ["user_message", "status"]
    assert h.log[0].client_id == "m1" and h.log[0].data["deferred"] is False
    assert h.state.running and h.machine.next_effect() == CallModel()
    assert isinstance(h.state.messages[-1], UserMessage)


def test_tool_use_then_results_then_final_answer() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "do it"))
    h.commit(h.machine.model_message(AssistantMessage("looking", (CALL, CALL2), "tool_use"), Usage(10, 5), "a1"))
    assert h.machine.next_effect() == RunTools((CALL, CALL2))
    h.commit(h.machine.tool_calls_started([CALL, CALL2]))  # when they start, not with the message
    assert h.machine.tool_calls_started([CALL, CALL2]) == []  # once
    h.commit(h.machine.tool_results([ToolResult("c1", "list_dir", "a.txt"), ToolResult("c2", "read_file", "hi")]))
    assert h.machine.next_effect() == CallModel()
    h.commit(h.machine.model_message(AssistantMessage("done"), Usage(20, 3), "a2"))
    assert h.machine.next_effect() == FinishTurn("end_turn")
    h.commit(h.machine.finish("end_turn"))
    assert h.machine.next_effect() == Wait()
    assert h.kinds() == [
        "user_message", "status", "assistant_message", "usage", "tool_call", "tool_call",
        "tool_result", "tool_result", "assistant_message", "usage", "status",
    ]
    assert h.state.turns == 1 and h.state.model_calls == 2 and h.state.tool_calls == 2
    assert (h.state.input_tokens, h.state.output_tokens) == (30, 8)
    assert [m.role for m in h.state.messages] == ["user", "assistant", "tool", "tool", "assistant"]


def test_partial_results_keep_remaining_calls_open() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.model_message(AssistantMessage("", (CALL, CALL2), "tool_use"), Usage(), "a1"))
    h.commit(h.machine.tool_results([ToolResult("c1", "list_dir", "ok")]))
    assert h.machine.next_effect() == RunTools((CALL2,))


def test_message_during_a_turn_is_deferred_until_the_tool_results_are_in() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "first"))
    h.commit(h.machine.model_message(AssistantMessage("", (CALL,), "tool_use"), Usage(), "a1"))
    h.commit(h.machine.user_message("m2", "also this"))
    assert h.log[-1].data["deferred"] is True
    assert [m.role for m in h.state.messages] == ["user", "assistant"]  # not between tool_use and result
    assert len(h.state.pending) == 1
    h.commit(h.machine.tool_results([ToolResult("c1", "list_dir", "ok")]))
    assert [m.role for m in h.state.messages] == ["user", "assistant", "tool", "user"]
    assert h.machine.next_effect() == CallModel()


def test_message_while_model_streams_joins_after_its_answer_and_is_answered() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "first"))
    h.commit(h.machine.user_message("m2", "second"))  # the model is being asked about "first"
    assert h.state.pending and [m.role for m in h.state.messages] == ["user"]
    h.commit(h.machine.model_message(AssistantMessage("answer to first"), Usage(), "a1"))
    assert [m.role for m in h.state.messages] == ["user", "assistant", "user"]
    assert h.machine.next_effect() == CallModel()  # the turn goes on to answer "second"


def test_interrupt_keeps_partial_text_and_closes_open_calls() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.interrupt("half an ans", "a1"))
    assert h.kinds()[-2:] == ["assistant_message", "status"]
    assert h.log[-2].data["stop_reason"] == "interrupted" and h.log[-2].data["text"] == "half an ans"
    assert h.log[-1].data == {"state": "idle", "reason": "interrupted"}
    assert h.machine.next_effect() == Wait()

    h.commit(h.machine.user_message("m2", "y"))
    h.commit(h.machine.model_message(AssistantMessage("", (CALL,), "tool_use"), Usage(), "a2"))
    h.commit(h.machine.interrupt("", "a3"))
    result = h.state.messages[-1]
    assert isinstance(result, ToolResultMessage) and result.result.is_error and result.result.tool_call_id == "c1"
    assert h.machine.next_effect() == Wait()
    assert h.state.turns == 2


def test_an_interrupted_or_failed_attempt_records_what_it_spent() -> None:
    """The usage an unfinished stream reported is billed: an interrupt records it right after the
    partial message (before the results and the final status); it adds to the totals, not to the
    model calls (the partial message counts as one, as before)."""
    h = Harness()
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.interrupt("half an ans", "a1", spent=Usage(input_tokens=900, output_tokens=3)))
    assert h.kinds()[-3:] == ["assistant_message", "usage", "status"]
    assert h.log[-2].data["attempt"] == "interrupted" and h.log[-2].data["input_tokens"] == 900
    assert h.log[-2].data["cost_units"] > 0
    h.commit(h.machine.user_message("m2", "y"))
    h.commit(h.machine.interrupt("", "a2", spent=Usage(input_tokens=50)))  # nothing streamed yet
    assert h.kinds()[-2:] == ["usage", "status"] and h.log[-2].data["attempt"] == "interrupted"
    h.commit(h.machine.attempt_usage(Usage(input_tokens=7, cache_read_tokens=5), "failed"))
    assert h.log[-1].data["attempt"] == "failed"
    assert (h.state.input_tokens, h.state.output_tokens, h.state.cache_read_tokens) == (957, 3, 5)
    assert h.state.model_calls == h.kinds().count("assistant_message") == 1  # usage events are not calls


def test_interrupt_when_idle_does_nothing() -> None:
    h = Harness()
    assert h.machine.interrupt("x", "a") == []


def test_max_turns_limit_ends_the_turn_with_an_error() -> None:
    h = Harness(limits={"maxTurns": 2})
    h.commit(h.machine.user_message("m1", "loop"))
    for i in range(2):
        h.commit(h.machine.model_message(AssistantMessage("", (ToolCall(f"c{i}", "list_dir", {}),), "tool_use"), Usage(), f"a{i}"))
        h.commit(h.machine.tool_results([ToolResult(f"c{i}", "list_dir", "ok")]))
    assert h.machine.next_effect() == FinishTurn("max_turns")
    h.commit(h.machine.finish("max_turns"))
    assert h.log[-2].kind == EventKind.ERROR and h.log[-2].data["code"] == "max_turns_exceeded"
    assert "maxTurns" in h.log[-2].data["message"]


def test_token_budget_counts_each_message_once_and_stops_the_turn() -> None:
    h = Harness(limits={"tokenBudget": 300}, compression={"enabled": False})
    h.commit(h.machine.user_message("m1", "word " * 50))
    before = h.machine.context_tokens()
    assert h.machine.next_effect() == CallModel()
    h.commit(h.machine.model_message(AssistantMessage("", (CALL,), "tool_use"), Usage(), "a1"))
    h.commit(h.machine.tool_results([ToolResult("c1", "list_dir", "file " * 400)]))
    assert h.machine.context_tokens() > before + 400
    assert h.machine.next_effect() == FinishTurn("token_budget")
    h.commit(h.machine.finish("token_budget"))
    assert h.log[-2].data["code"] == "token_budget_exceeded"


def test_with_compression_a_prompt_over_budget_folds_what_it_can_then_stops() -> None:
    h = Harness(limits={"tokenBudget": 300})
    h.commit(h.machine.user_message("m1", "word " * 50))
    h.commit(h.machine.model_message(AssistantMessage("", (CALL,), "tool_use"), Usage(), "a1"))
    h.commit(h.machine.tool_results([ToolResult("c1", "list_dir", "file " * 400)]))
    effect = h.machine.next_effect()
    assert effect == Compress(1)  # the user message; the call and its result stay together, live
    h.commit(h.machine.compress(effect.count)[0])
    assert h.state.frozen == 1 and h.machine.next_effect() == FinishTurn("token_budget")


def test_model_error_is_recorded_and_the_agent_waits() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.model_error("overloaded", "provider said 529"))
    assert h.kinds()[-2:] == ["error", "status"]
    assert h.machine.next_effect() == Wait()
    assert h.state.errors == 1


@pytest.mark.parametrize("stop", ["max_tokens", "content_filter"])
def test_other_stop_reasons_finish_with_that_reason(stop: str) -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.model_message(AssistantMessage("cut", (), stop), Usage(), "a1"))  # type: ignore[arg-type]
    assert h.machine.next_effect() == FinishTurn(stop)


@pytest.mark.parametrize("end", ["model_error", "interrupt", "max_turns"])
def test_a_turn_that_ends_early_releases_deferred_messages_into_the_conversation(end: str) -> None:
    h = Harness(limits={"maxTurns": 1})
    h.commit(h.machine.user_message("m1", "first"))
    h.commit(h.machine.user_message("m2", "second"))  # deferred: the model is being asked
    assert h.state.pending
    if end == "model_error":
        h.commit(h.machine.model_error("overloaded", "529"))
    elif end == "interrupt":
        h.commit(h.machine.interrupt("", "a1"))
    else:
        h.commit(h.machine.model_message(AssistantMessage("", (CALL,), "tool_use"), Usage(), "a1"))
        h.commit(h.machine.tool_results([ToolResult("c1", "list_dir", "ok")]))  # flushes here already
        h.commit(h.machine.finish("max_turns"))
    assert not h.state.pending and not h.state.running
    assert [m.text for m in h.state.messages if isinstance(m, UserMessage)] == ["first", "second"]
    h.commit(h.machine.user_message("m3", "third"))  # the next turn carries "second" too
    assert [m.text for m in h.state.messages if isinstance(m, UserMessage)] == ["first", "second", "third"]
    assert h.machine.next_effect() == CallModel()


def test_early_calls_before_their_message_stay_started_and_are_announced_once() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.tool_calls_started([CALL], early=True))  # mid-stream
    assert h.log[-1].data == {**CALL.to_dict(), "early": True}
    h.commit(h.machine.model_message(AssistantMessage("", (CALL, CALL2), "tool_use"), Usage(), "a1"))
    assert h.state.started_call_ids == {"c1"}
    assert [e.data["id"] for e in h.machine.tool_calls_started([CALL, CALL2])] == ["c2"]


def test_a_stale_early_call_of_a_failed_stream_is_forgotten_by_the_next_message() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.tool_calls_started([ToolCall("old", "read_file", {"path": "a"})], early=True))
    h.commit(h.machine.model_message(AssistantMessage("", (CALL,), "tool_use"), Usage(), "a1"))
    assert h.state.started_call_ids == set() and h.machine.next_effect() == RunTools((CALL,))


@pytest.mark.parametrize("stop", ["max_tokens", "content_filter", "error"])
def test_results_of_an_unfinished_message_end_the_turn(stop: str) -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.model_message(AssistantMessage("", (CALL,), stop), Usage(), "a1"))  # type: ignore[arg-type]
    assert h.machine.next_effect() == RunTools((CALL,))
    h.commit(h.machine.tool_results([ToolResult("c1", "list_dir", "a.txt")], incomplete=True))
    assert h.log[-1].data["incomplete_message"] is True
    assert h.machine.next_effect() == FinishTurn(stop)


def test_approval_is_asked_once_and_decided_once() -> None:
    h = Harness(autonomy={"approvalTimeoutS": 30, "approvalTimeoutDecision": "allow"})
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.model_message(AssistantMessage("", (CALL,), "tool_use"), Usage(), "a1"))
    asked = h.commit(h.machine.approval_required(CALL, "ask by rule 0", deadline=1000.0))
    assert asked[0].data == {"tool_call_id": "c1", "name": "list_dir", "arguments": {"path": "."}, "reason": "ask by rule 0",
                             "timeout_s": 30.0, "deadline": 1000.0, "default_decision": "allow"}
    assert h.machine.approval_required(CALL, "again", deadline=2000.0) == []
    assert h.state.approvals == {"c1": None} and h.state.approval_deadlines == {"c1": 1000.0}
    decided = h.commit(h.machine.approval(CALL, "allow", "operator"))
    assert [e.kind for e in decided] == ["approval", "tool_call"]
    assert h.machine.approval(CALL, "deny", "timeout") == []
    assert h.state.approvals == {"c1": "allow"} and h.state.started_call_ids == {"c1"}


def test_interrupt_mid_stream_keeps_started_calls_and_finished_results() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.tool_calls_started([CALL, CALL2], early=True))
    done = ToolResult("c1", "list_dir", "a.txt")
    h.commit(h.machine.interrupt("partial", "a1", [CALL, CALL2], {"c1": done}))
    assert h.kinds()[-4:] == ["assistant_message", "tool_result", "tool_result", "status"]
    message = h.log[-4].data
    assert message["stop_reason"] == "interrupted" and [c["id"] for c in message["tool_calls"]] == ["c1", "c2"]
    assert h.log[-3].data["content"] == "a.txt" and h.log[-3].data["incomplete_message"]
    assert h.log[-2].data["is_error"] and "interrupted" in h.log[-2].data["content"]
    assert h.machine.next_effect() == Wait()


def test_calls_announced_with_their_message_in_one_commit() -> None:
    h = Harness()
    h.commit(h.machine.user_message("m1", "x"))
    h.commit(h.machine.tool_calls_started([CALL2], early=True))  # a side effect started mid-stream
    announce = ((CALL, True), (CALL2, True), (ToolCall("zz", "shell", {}), False))
    message = AssistantMessage("", (CALL, CALL2), "tool_use")
    events = h.machine.model_message(message, Usage(), "a1", announce)
    assert [(e.kind, e.data.get("early")) for e in events] == [
        ("assistant_message", None), ("tool_call", True), ("usage", None),  # CALL2 once; "zz" is not in it
    ]
    # Nothing is kept between calls: without `announce`, a message announces no call.
    assert [e.kind for e in h.machine.model_message(message, Usage(), "a2")] == ["assistant_message", "usage"]
