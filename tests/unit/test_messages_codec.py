"""The one message codec (`agent_runtime.messages`): what the events and compression chunks store.

Old logs and snapshots must load unchanged, and new ones must be written byte for byte as before:
`tests/fixtures/codec/session_v1.json` is a scripted session (`session()` below) as the runtime
wrote it before the codec had one place (commit 13adf9b: the message events' data built in
`turn.py`, decoded in `state.py`, chunks coded in `compression.py`): each event's stored bytes
(sorted keys), its live frame data (insertion order, as clients receive it), and a snapshot.
Regenerate only for a deliberate format change:
`python tests/unit/test_messages_codec.py > tests/fixtures/codec/session_v1.json`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from agent_runtime.events import Event, NewEvent, decode_data, encode_data
from agent_runtime.manifest import make_manifest
from agent_runtime.messages import AssistantMessage, Message, ProviderState, ToolCall, ToolResult, ToolResultMessage, Usage
from agent_runtime.messages import UserMessage, decode_message, encode_message
from agent_runtime.agent.state import CONVERSATION_KINDS, AgentState
from agent_runtime.agent.turn import TurnMachine

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "codec" / "session_v1.json"
SPEC = make_manifest("p", model={"provider": "anthropic", "name": "c"},
                     compression={"tailBudget": 512, "keepTail": 100, "foldedOutputTokens": 20}).spec
PS = ProviderState.of("anthropic", {"blocks": [{"type": "thinking", "thinking": "hm", "signature": "sig"}]})
C1 = ToolCall("c1", "read_file", {"path": "a.py"})
C2 = ToolCall("c2", "shell", {"command": "pytest -x"})
C3 = ToolCall("c3", "read_file", {"path": "b.py"})


def session() -> tuple[list[Event], list[str], int, bytes]:
    """Every kind of message event (with and without provider state, an interrupted partial
    message, failed and incomplete results, a deferred-free user message with non-ASCII text) and a
    fold. Returns the log, each event's live data as JSON (key order kept), the snapshot's seq and bytes."""
    state = AgentState()
    machine = TurnMachine(state, SPEC)
    log: list[Event] = []
    live: list[str] = []
    snapshot: tuple[int, bytes] = (0, b"")

    def commit(events: list[NewEvent]) -> None:
        for e in events:
            live.append(orjson.dumps(e.data).decode())
            ev = Event(len(log) + 1, e.kind, decode_data(encode_data(e.data)), float(len(log)), e.client_id)
            state.apply(ev)
            log.append(ev)

    commit(machine.user_message("u1", "fix the bug"))
    commit(machine.model_message(AssistantMessage("reading", (C1, C2), "tool_use", provider_state=PS), Usage(10, 5, 2, 1), "m1",
                                 announce=((C1, True),)))
    commit(machine.tool_calls_started([C2]))
    commit(machine.tool_results([ToolResult("c1", "read_file", "print(1)\n" * 60, duration_ms=1.23456),
                                 ToolResult("c2", "shell", "FAILED test_x", is_error=True, duration_ms=7.0)]))
    commit(machine.model_message(AssistantMessage("done"), Usage(3, 4), "m2"))
    commit(machine.finish("end_turn"))
    commit(machine.user_message("u2", "again, with ünïcode ✓"))
    commit(machine.interrupt("partial", "m3", [C3], {"c3": ToolResult("c3", "read_file", "b", duration_ms=0.5)},
                             provider_state=PS, spent=Usage(1, 1)))
    commit(machine.user_message("u3", "go on"))
    commit(machine.compress(4)[0])
    snapshot = (state.seq, encode_data(state.snapshot()))
    commit(machine.model_message(AssistantMessage("ok"), Usage(1, 1), "m4"))
    return log, live, *snapshot


def fixture() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return value


def stored_events() -> list[Event]:
    return [Event(seq, kind, decode_data(data.encode()), ts) for seq, kind, ts, data, _live in fixture()["events"]]


def test_events_and_snapshots_are_written_as_before() -> None:
    """Disk (sorted keys) and wire (the live frame's data, in insertion order) byte for byte."""
    log, live, snapshot_seq, snapshot = session()
    old = fixture()
    assert [(e.seq, e.kind, e.ts, encode_data(e.data).decode(), w) for e, w in zip(log, live, strict=True)] == \
        [tuple(e) for e in old["events"]]
    assert (snapshot_seq, snapshot.decode()) == (old["snapshot_seq"], old["snapshot"])


EXPECTED_LIVE: list[Message] = [
    # the frozen chunk (`compression` event 21): the first four messages folded
    UserMessage("fix the bug"),
    AssistantMessage("reading", (C1, C2), "tool_use", provider_state=PS),
    ToolResultMessage(ToolResult("c1", "read_file", "print(1)\n" * 60, duration_ms=1.235)),
    ToolResultMessage(ToolResult("c2", "shell", "FAILED test_x", is_error=True, duration_ms=7.0)),
    # the live tail, from the message events
    AssistantMessage("done"),
    UserMessage("again, with ünïcode ✓"),
    AssistantMessage("partial", (C3,), "interrupted", provider_state=PS),
    ToolResultMessage(ToolResult("c3", "read_file", "b", duration_ms=0.5)),
    UserMessage("go on"),
    AssistantMessage("ok"),
]


def test_an_old_log_replays_and_restores_to_the_same_conversation() -> None:
    """The old log, replayed in full and restored from its snapshot, rebuilds the conversation the
    messages describe: the frozen chunk as stored (a tool result's duration is not stored in a
    chunk; the long read was cut), the live tail exactly."""
    events = stored_events()
    replayed = AgentState()
    for e in events:
        replayed.apply(e)
    assert replayed.frozen == 4 and replayed.messages[4:] == EXPECTED_LIVE[4:]
    chunk = replayed.messages[:4]
    assert chunk[:2] == EXPECTED_LIVE[:2]
    assert chunk[3] == ToolResultMessage(ToolResult("c2", "shell", "FAILED test_x", is_error=True))
    assert isinstance(chunk[2], ToolResultMessage) and chunk[2].result.content.startswith("print(1)\n")
    assert "folded" in chunk[2].result.content
    old = fixture()
    snapshot = (int(old["snapshot_seq"]), decode_data(old["snapshot"].encode()))
    refs = set(AgentState.conversation_refs(snapshot[1]) or ())
    restored = AgentState.restore(snapshot, [e for e in events if e.seq in refs and e.kind in CONVERSATION_KINDS],
                                  [e for e in events if e.seq > snapshot[0]])
    assert restored.messages == replayed.messages
    assert restored.message_tokens == replayed.message_tokens
    assert encode_data(restored.snapshot()) == encode_data(replayed.snapshot())


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)
calls = st.builds(ToolCall, st.text(min_size=1, max_size=6), st.text(min_size=1, max_size=6),
                  st.dictionaries(st.text(max_size=5), json_values, max_size=3))
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(UserMessage, st.text()),
    st.builds(AssistantMessage, st.text(), st.lists(calls, max_size=3).map(tuple),
              st.sampled_from(["end_turn", "tool_use", "max_tokens", "content_filter", "interrupted", "error"]),
              provider_state=st.none() | st.builds(ProviderState.of, st.sampled_from(["anthropic", "gemini"]), json_values)),
    st.builds(lambda *a, **k: ToolResultMessage(ToolResult(*a, **k)), st.text(min_size=1), st.text(), st.text(),
              is_error=st.booleans()),
)


@given(messages)
def test_every_message_round_trips_through_its_stored_bytes(m: Message) -> None:
    """Chunk form and event form: decoded from the stored bytes (sorted keys), the same message."""
    assert decode_message(decode_data(encode_data(encode_message(m)))) == m
    if isinstance(m, AssistantMessage):
        assert AssistantMessage.from_dict(decode_data(encode_data({"id": "x", **m.to_dict(tokens=3)}))) == m
    elif isinstance(m, ToolResultMessage):
        assert ToolResult.from_dict(decode_data(encode_data({**m.result.to_dict(), "tokens": 3}))) == m.result
    else:
        assert UserMessage.from_dict(decode_data(encode_data({"id": "x", **m.to_dict(), "deferred": False}))) == m


if __name__ == "__main__":  # regenerate the fixture (see the module docstring)
    log_, live_, seq_, snap_ = session()
    json.dump({"events": [[e.seq, e.kind, e.ts, encode_data(e.data).decode(), w] for e, w in zip(log_, live_, strict=True)],
               "snapshot_seq": seq_, "snapshot": snap_.decode()}, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
