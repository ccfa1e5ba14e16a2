"""Derived state: a replay equals the live state; snapshot + tail equals a full replay."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_runtime.events import Event, NewEvent
from agent_runtime.manifest import make_manifest
from agent_runtime.messages import AssistantMessage, ToolCall, ToolResult, Usage
from agent_runtime.agent.state import CONVERSATION_KINDS, AgentState
from agent_runtime.agent.turn import CallModel, FinishTurn, RunTools, TurnMachine, Wait

SPEC = make_manifest("p").spec


def run_script(script: list[tuple[str, int]]) -> list[Event]:
    """Drive a machine with a random script of user messages, model answers, tools and interrupts."""
    state = AgentState()
    machine = TurnMachine(state, SPEC)
    log: list[Event] = []
    seq = itertools.count(1)
    ids = itertools.count()

    def commit(events: list[NewEvent]) -> None:
        for e in events:
            ev = Event(next(seq), e.kind, e.data, float(len(log)), e.client_id)
            state.apply(ev)
            log.append(ev)

    for action, n in script:
        effect = machine.next_effect()
        if action == "user":
            commit(machine.user_message(f"u{next(ids)}", f"message {n}"))
        elif action == "interrupt":
            commit(machine.interrupt("partial" * (n % 2), f"i{next(ids)}"))
        elif isinstance(effect, CallModel):
            calls = tuple(ToolCall(f"c{next(ids)}", "list_dir", {"path": str(k)}) for k in range(n % 3))
            stop = "tool_use" if calls else "end_turn"
            commit(machine.model_message(AssistantMessage(f"text {n}", calls, stop), Usage(n, 1, n // 2), f"a{next(ids)}"))
        elif isinstance(effect, RunTools):
            commit(machine.tool_calls_started(effect.calls))
            take = effect.calls[: max(1, n % (len(effect.calls) + 1))]
            commit(machine.tool_results([ToolResult(c.id, c.name, f"out {n}") for c in take]))
        elif isinstance(effect, FinishTurn):
            commit(machine.finish(effect.reason))
        else:
            assert isinstance(effect, Wait)
    return log


def replay(events: list[Event]) -> AgentState:
    state = AgentState()
    for e in events:
        state.apply(e)
    return state


def fingerprint(state: AgentState) -> tuple[object, ...]:
    return (state.snapshot(), tuple(state.messages), tuple(state.pending), state.context_tokens, tuple(state.open_call_ids))


scripts = st.lists(
    st.tuples(st.sampled_from(["user", "step", "step", "step", "interrupt"]), st.integers(0, 20)), max_size=60
)


@settings(max_examples=150, deadline=None)
@given(scripts, st.data())
def test_snapshot_plus_tail_equals_full_replay(script: list[tuple[str, int]], data: st.DataObject) -> None:
    log = run_script(script)
    full = replay(log)
    cut = data.draw(st.integers(0, len(log)))
    at_cut = replay(log[:cut])
    snapshot = (at_cut.seq, at_cut.snapshot()) if cut else None
    restored = AgentState.restore(
        snapshot, [e for e in log[:cut] if e.kind in CONVERSATION_KINDS], log[cut:]
    )
    assert fingerprint(restored) == fingerprint(full)


@settings(max_examples=100, deadline=None)
@given(scripts)
def test_prompt_never_has_a_user_message_between_tool_use_and_its_results(script: list[tuple[str, int]]) -> None:
    state = replay(run_script(script))
    assert state.running or not state.pending, "a message deferred into a finished turn was never released"
    open_ids: set[str] = set()
    for m in state.messages:
        if isinstance(m, AssistantMessage):
            assert not open_ids, "a new assistant message before every call had its result"
            open_ids = {c.id for c in m.tool_calls}
        elif m.role == "tool":
            open_ids.discard(m.result.tool_call_id)  # type: ignore[union-attr]
        else:
            assert not open_ids, "a user message between tool_use and tool_result"


def test_applying_out_of_order_is_refused() -> None:
    state = AgentState()
    state.apply(Event(1, "status", {"state": "running"}, 0.0))
    try:
        state.apply(Event(1, "status", {"state": "idle"}, 0.0))
    except ValueError as exc:
        assert "seq 1" in str(exc)
    else:
        raise AssertionError("re-applying a seq must fail")


def test_provider_state_is_stored_with_the_message_and_rebuilt() -> None:
    """The `assistant_message` event carries the message's reasoning state; replay rebuilds it
    equal (keys sorted, as stored), and a message without one stores no key (older logs unchanged)."""
    from agent_runtime.events import decode_data, encode_data
    from agent_runtime.messages import ProviderState

    state = AgentState()
    machine = TurnMachine(state, SPEC)
    seq = itertools.count(1)
    log: list[Event] = []

    def commit(events: list[NewEvent]) -> None:
        for e in events:  # through the stored bytes, as the event logs do
            ev = Event(next(seq), e.kind, decode_data(encode_data(e.data)), 0.0, e.client_id)
            state.apply(ev)
            log.append(ev)

    commit(machine.user_message("u1", "task"))
    ps = ProviderState.of("anthropic", {"blocks": [{"type": "thinking", "thinking": "t", "signature": "sig"}]})
    message = AssistantMessage("", (ToolCall("c1", "list_dir", {"path": "."}),), "tool_use", provider_state=ps)
    commit(machine.model_message(message, Usage(), "m1"))
    commit(machine.model_message(AssistantMessage("plain"), Usage(), "m2"))
    stored = [e.data for e in log if e.kind == "assistant_message"]
    assert stored[0]["provider_state"] == {"provider": "anthropic", "data": {"blocks": [
        {"signature": "sig", "thinking": "t", "type": "thinking"}]}}
    assert "provider_state" not in stored[1]
    replayed = AgentState()
    for e in log:
        replayed.apply(e)
    rebuilt = [m for m in replayed.messages if isinstance(m, AssistantMessage)]
    assert rebuilt[0].provider_state == ps and rebuilt[0].state_for("anthropic") == ps.data
    assert rebuilt[0].state_for("gemini") is None and rebuilt[1].provider_state is None
