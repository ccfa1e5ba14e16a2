"""Frozen-prefix compression, sans-IO: the planner, the fold, and the prompt's byte-stable prefix.

A conversation is driven through the real `TurnMachine` and `AgentState` with a random model and
random tool outputs; after every model call the Anthropic request body (the real codec) is built.
Properties: the prompt of call n+1 starts, byte for byte, with the prompt of call n up to its last
frozen chunk (and with all of it when no fold came between); a state rebuilt from the log (with or
without a snapshot) builds the same bytes; frozen chunks never change; every message is analysed at
most once, when it is folded.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_runtime import compression
from agent_runtime.events import Event, EventKind, NewEvent
from agent_runtime.manifest import AgentSpec, make_manifest
from agent_runtime.messages import AssistantMessage, Message, ToolCall, ToolResult, ToolResultMessage, Usage, UserMessage
from agent_runtime.messages import decode_message, encode_message
from agent_runtime.providers import anthropic
from agent_runtime.providers.base import ModelRequest
from agent_runtime.providers.wire import FragmentCache
from agent_runtime.agent.state import CONVERSATION_KINDS, AgentState
from agent_runtime.tokens import count, message_tokens
from agent_runtime.agent.turn import CallModel, Compress, FinishTurn, RunTools, TurnMachine


def spec(budget: int = 600, keep: int = 200, folded: int = 40, frozen: int = 1_000_000) -> AgentSpec:
    return make_manifest("a", compression={"tailBudget": budget, "keepTail": keep, "foldedOutputTokens": folded,
                                           "frozenBudget": frozen}, limits={"tokenBudget": 4_000_000}).spec


def tool_result(call_id: str, name: str, content: str) -> ToolResultMessage:
    return ToolResultMessage(ToolResult(call_id, name, content))


# -- plan_fold --------------------------------------------------------------------------------------


def test_no_fold_within_budget() -> None:
    msgs: list[Message] = [UserMessage("a"), AssistantMessage("b")]
    assert compression.plan_fold(msgs, [10, 10], 0, 20, 100, 50) == 0


def test_fold_leaves_at_most_keep_and_never_splits_a_call_from_its_result() -> None:
    call = ToolCall("c1", "shell", {"command": "ls"})
    msgs: list[Message] = [
        UserMessage("u1"), AssistantMessage("", (call,), "tool_use"), tool_result("c1", "shell", "x"),
        AssistantMessage("done"), UserMessage("u2"), AssistantMessage("ok"),
    ]
    tokens = [10, 10, 100, 10, 10, 10]
    # keep 30: folding u1, the call (cut would be before its result) moves the cut past the result
    n = compression.plan_fold(msgs, tokens, 0, sum(tokens), 100, 30)
    assert n == 3 and not isinstance(msgs[n], ToolResultMessage)
    # never the newest message, even with keep 0
    assert compression.plan_fold(msgs, tokens, 0, sum(tokens), 100, 0) == 5
    # from a frozen start
    assert compression.plan_fold(msgs, tokens, 3, 40, 30, 10) == 2


def test_no_place_to_cut_means_no_fold() -> None:
    call = ToolCall("c1", "shell", {})
    msgs: list[Message] = [AssistantMessage("", (call,), "tool_use"), tool_result("c1", "shell", "x" * 10)]
    assert compression.plan_fold(msgs, [5, 500], 0, 505, 100, 10) == 0


# -- fold ---------------------------------------------------------------------------------------------


LOG = "collected 3 items\n\ntests/test_app.py::test_one PASSED\ntests/test_app.py::test_two PASSED\n\n3 passed in 0.01s"


def test_fold_elides_superseded_reads_duplicates_and_cuts_long_outputs() -> None:
    big = "\n".join(f"line {i} of a long test log with some words" for i in range(400))
    file_v1 = "\n".join(f"def f{i}(): return {i}" for i in range(60))
    calls = [
        ToolCall("r1", "read_file", {"path": "src/app.py"}),
        ToolCall("s1", "shell", {"command": "pytest"}),
        ToolCall("s2", "shell", {"command": "pytest"}),
        ToolCall("r2", "read_file", {"path": "./src/app.py"}),
        ToolCall("w1", "write_file", {"path": "notes.md", "content": "n" * 4000}),
        ToolCall("r3", "read_file", {"path": "lib.py"}),
    ]
    span: list[Message] = [
        UserMessage("please fix the tests"),
        AssistantMessage("Looking.", tuple(calls), "tool_use"),
        tool_result("r1", "read_file", file_v1),
        tool_result("s1", "shell", LOG),
        tool_result("s2", "shell", LOG),
        tool_result("r2", "read_file", file_v1 + "\n# v2"),
        tool_result("w1", "write_file", "wrote 4000 bytes"),
        tool_result("r3", "read_file", big),
    ]
    paths = [None, None, "src/app.py", None, None, "src/app.py", "notes.md", "lib.py"]
    tokens = [message_tokens(m) for m in span]
    f = compression.fold(span, tokens, paths, {"lib.py"}, 40)
    out = f.messages
    assert out[0] == span[0]  # user messages unchanged
    assert isinstance(out[1], AssistantMessage) and out[1].text == "Looking."
    assert [c.id for c in out[1].tool_calls] == [c.id for c in calls]  # every decision kept
    assert "folded" in out[1].tool_calls[4].arguments["content"]  # long argument cut
    texts = [m.result.content for m in out[2:] if isinstance(m, ToolResultMessage)]
    assert "superseded" in texts[0]  # read again later in the span (./ spelling normalised)
    assert texts[1] == LOG and texts[2] == "[folded: same output as tool call s1]"
    assert texts[3].startswith("def f0") and "# v2" in texts[3] and "folded" in texts[3]  # latest read: head + tail
    assert "superseded" in texts[5]  # read again in the live tail
    assert (f.superseded, f.duplicates, f.truncated) == (2, 1, 2)
    assert f.tokens_after < f.tokens_before
    assert list(f.tokens) == [message_tokens(m) for m in out]
    # deterministic: the same span folds to the same bytes
    again = compression.fold(span, tokens, paths, {"lib.py"}, 40)
    assert orjson.dumps(again.event_data(1)) == orjson.dumps(f.event_data(1))


def test_head_tail_keeps_both_ends_and_says_what_was_cut() -> None:
    text = "\n".join(f"row {i}" for i in range(1000))
    short = compression.head_tail(text, 50, "output")
    assert short is not None and short.startswith("row 0\n") and short.endswith("row 999")
    assert "1000 lines" in short and count(short) < 120
    assert compression.head_tail("small", 50, "output") is None


def test_messages_round_trip_through_the_chunk_encoding() -> None:
    from agent_runtime.messages import ProviderState

    msgs: list[Message] = [
        UserMessage("hi"),
        AssistantMessage("t", (ToolCall("c", "shell", {"command": "ls"}),), "tool_use",
                         provider_state=ProviderState.of("anthropic", {"blocks": [{"type": "thinking", "b": 1}]})),
        ToolResultMessage(ToolResult("c", "shell", "out", is_error=True)),
    ]
    assert [decode_message(encode_message(m)) for m in msgs] == msgs


# -- the loop, property-tested ---------------------------------------------------------------------


class Loop:
    """The actor's loop without IO: the real TurnMachine and state, a random model and tools."""

    def __init__(self, agent_spec: AgentSpec, rng: random.Random, bodies: bool = True) -> None:
        self.spec = agent_spec
        self.record_bodies = bodies
        self.rng = rng
        self.state = AgentState()
        self.machine = TurnMachine(self.state, agent_spec)
        self.log: list[Event] = []
        self.ids = itertools.count(1)
        self.bodies: list[tuple[bytes, int, int]] = []  # (prompt bytes, bytes up to the last frozen end, consolidations)
        self.folded_positions: list[range] = []
        self.analysed = 0  # by folds
        self.consolidations: list[int] = []  # messages analysed by each consolidation
        self.prompt_tokens: list[int] = []  # conversation tokens of each model call
        self.added = 0
        self.cache = FragmentCache()

    def commit(self, new: list[NewEvent]) -> None:
        for n in new:
            e = Event(len(self.log) + 1, n.kind, n.data, ts=float(len(self.log)), client_id=n.client_id)
            self.log.append(e)
            before = len(self.state.messages) - self.state.frozen
            self.state.apply(e)
            if n.kind in (EventKind.USER_MESSAGE, EventKind.ASSISTANT_MESSAGE, EventKind.TOOL_RESULT):
                self.added += max(0, len(self.state.messages) - self.state.frozen - before)

    def model(self) -> AssistantMessage:
        rng = self.rng
        if rng.random() < 0.3:
            return AssistantMessage(f"answer {rng.random():.6f}")
        calls = []
        for _ in range(rng.randint(1, 3)):
            cid = f"call{next(self.ids)}"
            kind = rng.choice(["read_file", "shell", "write_file"])
            path = rng.choice(["a.py", "b.py", "./a.py", "docs/c.md"])
            args: dict[str, Any] = {"path": path} if kind != "shell" else {"command": rng.choice(["pytest", "ls", "make"])}
            if kind == "write_file":
                args["content"] = "x " * rng.randint(1, 200)
            calls.append(ToolCall(cid, kind, args))
        return AssistantMessage(rng.choice(["", "working"]), tuple(calls), "tool_use")

    def output(self, call: ToolCall) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            return "same output"
        return "\n".join(f"{call.name} line {i} {rng.randint(0, 9)}" for i in range(rng.randint(1, 120)))

    def request_bytes(self, state: AgentState) -> tuple[bytes, int]:
        """Canonical prompt bytes (cache markers stripped: moving a breakpoint is not a change) and
        how many of them belong to the frozen chunks."""
        req = ModelRequest(model="m", system="sys", messages=state.messages, tools=(), max_tokens=100, agent_key="k",
                           frozen_ends=tuple(state.chunk_ends[-2:]))
        body = anthropic.build_body(req, cache=self.cache)
        fresh = anthropic.build_body(req)
        assert orjson.dumps(body) == orjson.dumps(fresh)  # fragments change nothing
        marks = 0
        blocks: list[bytes] = []
        for m in orjson.loads(orjson.dumps(body))["messages"]:
            for b in m["content"]:
                marks += "cache_control" in b
                b.pop("cache_control", None)
                blocks.append(orjson.dumps({"role": m["role"], **b}, option=orjson.OPT_SORT_KEYS))
        assert marks + 1 <= 4  # + the system prompt's breakpoint
        frozen_blocks = sum(len(anthropic.blocks_json(m)) for m in state.messages[: state.frozen])
        return b"".join(blocks), len(b"".join(blocks[:frozen_blocks]))

    def rebuilt(self, snapshot_at: int | None) -> AgentState:
        snap = None
        if snapshot_at is not None:
            replay = AgentState()
            for e in self.log[:snapshot_at]:
                replay.apply(e)
            snap = (snapshot_at, replay.snapshot())
        cut = snapshot_at or 0
        refs = AgentState.conversation_refs(snap[1]) if snap is not None else None
        if refs is not None:  # what the actor reads: the events the snapshot names
            messages = [self.log[seq - 1] for seq in sorted(set(refs))]
        else:
            messages = [e for e in self.log[:cut] if e.kind in CONVERSATION_KINDS]
        return AgentState.restore(snap, messages, self.log[cut:])

    def run_turn(self, text: str) -> None:
        self.commit(self.machine.user_message(f"u{next(self.ids)}", text))
        while True:
            effect = self.machine.next_effect()
            if isinstance(effect, Compress):
                start = self.state.frozen
                events, analysed = self.machine.compress(effect.count, effect.consolidate)
                if effect.consolidate:
                    self.consolidations.append(analysed)
                    self.folded_positions = []
                else:
                    self.analysed += analysed
                    self.folded_positions.append(range(start, start + effect.count))
                self.commit(events)
            elif isinstance(effect, CallModel):
                if self.record_bodies:
                    self.bodies.append((*self.request_bytes(self.state), len(self.consolidations)))
                self.prompt_tokens.append(self.state.context_tokens)
                message = self.model()
                self.commit(self.machine.model_message(message, Usage(10, 5), f"m{next(self.ids)}"))
            elif isinstance(effect, RunTools):
                self.commit(self.machine.tool_calls_started(effect.calls))
                results = [ToolResult(c.id, c.name, self.output(c)) for c in effect.calls]
                self.commit(self.machine.tool_results(results))
            elif isinstance(effect, FinishTurn):
                self.commit(self.machine.finish(effect.reason))
                return
            else:
                return


def fields(state: AgentState) -> dict[str, Any]:
    """Every field of the state (messages compared by their encoding)."""
    out = {name: getattr(state, name) for name in AgentState.__slots__}
    out["messages"] = [encode_message(m) for m in state.messages]
    out["pending"] = [m.text for m in state.pending]
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), turns=st.integers(5, 25), budget=st.integers(512, 1500),
       frozen=st.sampled_from([1024, 2048, 1_000_000]))
def test_prefix_is_byte_stable_across_folds_and_restarts(seed: int, turns: int, budget: int, frozen: int) -> None:
    rng = random.Random(seed)
    loop = Loop(spec(budget=budget, keep=budget // 3, frozen=frozen), rng)
    frozen_seen: list[bytes] = []
    for t in range(turns):
        consolidated = len(loop.consolidations)
        loop.run_turn(f"task {t}: " + "word " * rng.randint(1, 60))
        # frozen chunks never change once written (until a consolidation replaces them all)
        now = [orjson.dumps(encode_message(m)) for m in loop.state.messages[: loop.state.frozen]]
        if len(loop.consolidations) == consolidated:
            assert now[: len(frozen_seen)] == frozen_seen
        frozen_seen = now
        # a state rebuilt from the log (no snapshot, or a snapshot at a random point) is the same state
        at = rng.choice([None, rng.randint(1, len(loop.log))])
        rebuilt = loop.rebuilt(at)
        assert loop.request_bytes(rebuilt) == loop.request_bytes(loop.state)
        assert fields(rebuilt) == fields(loop.state)
    for (prev, prev_frozen, gen), (cur, _, cur_gen) in zip(loop.bodies, loop.bodies[1:], strict=False):
        if gen == cur_gen:  # no consolidation between the two calls
            assert cur[:prev_frozen] == prev[:prev_frozen]
    if frozen < 1_000_000 and loop.consolidations:
        assert loop.state.frozen_tokens <= frozen + budget  # the frozen part stays bounded
    # tokens are kept right through folds
    assert loop.state.context_tokens == sum(loop.state.message_tokens)
    assert loop.state.frozen_tokens == sum(loop.state.message_tokens[: loop.state.frozen])
    # each message is analysed at most once by a fold: folded spans are the live messages at the
    # time, disjoint from every earlier chunk, and the total never exceeds the messages ever added
    ends = [0, *loop.state.chunk_ends] if not loop.consolidations else [*loop.state.chunk_ends]
    for span, chunk_start in zip(loop.folded_positions, ends, strict=False):
        assert span.start == chunk_start
    assert loop.analysed <= loop.added


def test_every_call_after_a_fold_starts_with_the_previous_prompt_when_no_fold_came_between() -> None:
    loop = Loop(spec(budget=3000, keep=1000), random.Random(7))
    for t in range(30):
        loop.run_turn(f"task {t}")
    assert loop.state.compressions >= 3
    chunks_at = []  # the frozen bytes of each call
    stable = 0
    for (prev, prev_frozen, _), (cur, cur_frozen, _) in zip(loop.bodies, loop.bodies[1:], strict=False):
        chunks_at.append(cur_frozen)
        if cur_frozen == prev_frozen:  # no fold between: the whole previous prompt is a prefix
            assert cur.startswith(prev)
            stable += 1
    assert stable > len(loop.bodies) // 2


def test_work_per_turn_is_bounded_by_the_new_messages() -> None:
    """Counts, not times: over a long session the planner analyses each message at most once, so
    the messages analysed up to any turn never exceed the messages added up to it, and late turns
    analyse no more than early ones."""
    loop = Loop(spec(budget=700, keep=250), random.Random(3), bodies=False)
    per_turn: list[tuple[int, int]] = []
    for t in range(120):
        a0, n0 = loop.analysed, loop.added
        loop.run_turn(f"task {t}")
        per_turn.append((loop.analysed - a0, loop.added - n0))
        assert loop.analysed <= loop.added
    early = sum(a for a, _ in per_turn[10:40])
    late = sum(a for a, _ in per_turn[90:120])
    added_late = sum(n for _, n in per_turn[90:120])
    assert late <= added_late + 40  # a fold may take messages of the turn before
    assert late <= 2 * early + 40
    assert loop.state.compressions >= 10


def test_compression_disabled_never_folds() -> None:
    off = make_manifest("a", compression={"enabled": False, "tailBudget": 512, "keepTail": 100}).spec
    loop = Loop(off, random.Random(1))
    for t in range(15):
        loop.run_turn(f"task {t}")
    assert loop.state.compressions == 0 and loop.state.frozen == 0


def test_a_corrupt_compression_event_is_refused() -> None:
    state = AgentState()
    state.apply(Event(1, EventKind.USER_MESSAGE, {"id": "u", "text": "hi", "tokens": 1}, 0.0))
    bad = Event(2, EventKind.COMPRESSION, {"folded_messages": 5, "messages": [], "message_tokens": []}, 0.0)
    try:
        state.apply(bad)
    except ValueError as exc:
        assert "live tail has 1" in str(exc)
    else:
        raise AssertionError("a chunk folding more messages than exist was applied")


def test_usage_event_carries_cached_share_and_cost() -> None:
    machine = TurnMachine(AgentState(), make_manifest("a", model={"provider": "anthropic", "name": "c"}).spec)
    events = machine.model_message(AssistantMessage("hi"), Usage(100, 10, cache_read_tokens=900, cache_write_tokens=0), "m")
    usage = events[-1].data
    assert usage["cached_share"] == 0.9
    assert usage["cost_units"] == 100 + 90 + 50  # 1x input, 0.1x read, 5x output


def test_the_cli_shows_a_compression_event_in_one_line() -> None:
    from agent_runtime.cli.render import render_event

    line = render_event({"type": "event", "seq": 9, "kind": "compression",
                         "data": {"chunk": 2, "folded_messages": 14, "tokens_before": 9000, "tokens_after": 800,
                                  "superseded": 3, "duplicates": 1, "truncated": 4, "messages": []}}, color=False)
    assert line == "[    9] compression chunk 2: 14 messages, 9000 → 800 tokens (superseded 3, duplicates 1, cut 4)"


def test_consolidation_keeps_the_prompt_bounded_over_a_long_session() -> None:
    """Append-only chunks grow with the history; past `frozenBudget` they become one archive chunk,
    so the prompt at turn 200 is no bigger than the budgets allow, and consolidations are rare."""
    loop = Loop(spec(budget=900, keep=300, folded=40, frozen=2048), random.Random(11), bodies=False)
    calls_per_consolidation = []
    last = 0
    for t in range(200):
        loop.run_turn(f"task {t}: fix module {t % 7}")
        assert loop.state.frozen_tokens <= 2048 + 900
        if len(loop.consolidations) > last:
            calls_per_consolidation.append(len(loop.prompt_tokens))
            last = len(loop.consolidations)
    assert len(loop.consolidations) >= 3
    # every model call's conversation: frozen (≤ budget + one chunk) + tail (≤ budget + one step)
    assert max(loop.prompt_tokens) <= 2048 + 900 + 900 + 4000
    grows = Loop(spec(budget=900, keep=300, folded=40), random.Random(11), bodies=False)
    for t in range(200):
        grows.run_turn(f"task {t}: fix module {t % 7}")
    assert max(grows.prompt_tokens) > 2 * max(loop.prompt_tokens)  # without it the prompt keeps growing
    gaps = [b - a for a, b in zip(calls_per_consolidation, calls_per_consolidation[1:], strict=False)]
    assert min(gaps) >= 5  # many calls read the same frozen prefix between two consolidations
    # a consolidation analyses nothing again: it joins the lines stored with the chunks
    assert set(loop.consolidations) == {0}
    assert loop.analysed <= loop.added
    archive = loop.state.messages[0]
    assert compression.is_archive(archive) and loop.state.chunk_ends[0] == 1


def test_archive_lists_user_messages_and_decisions_in_order() -> None:
    frozen: list[Message] = [
        UserMessage("please fix the parser"),
        AssistantMessage("Reading it.", (ToolCall("c1", "read_file", {"path": "parser.py"}),), "tool_use"),
        tool_result("c1", "read_file", "x = 1\n" * 500),
        AssistantMessage("", (ToolCall("c2", "shell", {"command": "pytest -q"}),), "tool_use"),
        ToolResultMessage(ToolResult("c2", "shell", "exit 1: 3 failed", is_error=True)),
        AssistantMessage("Fixed."),
    ]
    first_lines = [compression.digest(m) for m in frozen]
    out = compression.consolidate(first_lines, [count(x) for x in first_lines], 5000, 48_000)
    assert len(out.messages) == 1 and compression.is_archive(out.messages[0])
    text = out.messages[0].text  # type: ignore[union-attr]
    body = text.split("\n")[1:]
    assert body == [
        "user: please fix the parser",
        "you: Reading it. → called read_file(path=parser.py)",
        "you: → called shell(command=pytest -q)",
        "  shell failed: exit 1: 3 failed",
        "you: Fixed.",
    ]
    assert "x = 1" not in text and out.tokens_after < 100
    assert out.tokens_after == count(text)
    assert list(out.digest) == body
    # a second consolidation keeps the first archive's lines on top, as they were
    lines = [*out.digest, *(compression.digest(m) for m in [UserMessage("now the lexer"), AssistantMessage("On it.")])]
    again = compression.consolidate(lines, [count(x) for x in lines], 200, 48_000)
    assert again.messages[0].text.split("\n")[1:] == [*body, "user: now the lexer", "you: On it."]  # type: ignore[union-attr]


def test_a_cut_with_no_boundary_after_it_moves_back_to_the_one_before() -> None:
    call = ToolCall("c1", "shell", {})
    msgs: list[Message] = [UserMessage("u"), AssistantMessage("a"), UserMessage("v"),
                           AssistantMessage("", (call,), "tool_use"), tool_result("c1", "shell", "x")]
    tokens = [100, 100, 100, 10, 500]
    # keep 300 would cut before the last result (not allowed, nothing allowed after it): cut before the call
    assert compression.plan_fold(msgs, tokens, 0, sum(tokens), 600, 300) == 3


def test_a_pointer_never_points_at_an_elided_output() -> None:
    """Reading an unchanged file twice and then again in the tail: the first read is superseded,
    the second is an exact duplicate of it — it must not point at the elided first one."""
    text = "\n".join(f"line {i}" for i in range(10))
    calls = (ToolCall("r1", "read_file", {"path": "a.py"}), ToolCall("r2", "read_file", {"path": "a.py"}))
    span: list[Message] = [AssistantMessage("", calls, "tool_use"), tool_result("r1", "read_file", text),
                           tool_result("r2", "read_file", text)]
    f = compression.fold(span, [message_tokens(m) for m in span], [None, "a.py", "a.py"], set(), 200)
    first, second = (m.result.content for m in f.messages[1:])  # type: ignore[union-attr]
    assert "superseded" in first and second == text  # the kept one is the newest read, shown whole
    assert f.duplicates == 0


def test_a_long_near_duplicate_output_becomes_a_diff() -> None:
    log1 = "\n".join(f"tests/test_{i}.py::test_case PASSED" for i in range(300))
    log2 = log1.replace("test_7.py::test_case PASSED", "test_7.py::test_case FAILED")
    calls = (ToolCall("s1", "shell", {"command": "pytest"}), ToolCall("s2", "shell", {"command": "pytest"}))
    span: list[Message] = [AssistantMessage("", calls, "tool_use"), tool_result("s1", "shell", log1),
                           tool_result("s2", "shell", log2)]
    f = compression.fold(span, [message_tokens(m) for m in span], [None, None, None], set(), 100)
    first, second = (m.result.content for m in f.messages[1:])  # type: ignore[union-attr]
    assert "folded" in first  # cut to head and tail
    assert second.startswith("[folded: the output of tool call s1") and "+tests/test_7.py::test_case FAILED" in second
    assert (f.similar, f.truncated) == (1, 1) and f.tokens_after < f.tokens_before // 5


def test_prepared_messages_fold_to_the_same_chunk() -> None:
    """The turn machine prepares each message as it arrives; folding with those equals folding from
    scratch (what a restarted agent does for messages it has not prepared)."""
    loop = Loop(spec(budget=1200, keep=400), random.Random(5), bodies=False)
    for t in range(12):
        loop.commit(loop.machine.user_message(f"u{t}", f"task {t}"))
        while not isinstance(effect := loop.machine.next_effect(), (FinishTurn,)):
            if isinstance(effect, Compress):
                st = loop.state
                start, end = st.frozen, st.frozen + effect.count
                args = (st.messages[start:end], st.message_tokens[start:end], st.message_paths[start:end], set(), 40)
                fresh = compression.fold(*args)
                ready = [compression.prepare(m, n, 40) for m, n in zip(args[0], args[1], strict=True)]
                assert compression.fold(*args, prepared=ready) == fresh
                loop.commit(loop.machine.compress(effect.count, effect.consolidate)[0])
            elif isinstance(effect, CallModel):
                loop.commit(loop.machine.model_message(loop.model(), Usage(1, 1), f"m{next(loop.ids)}"))
            elif isinstance(effect, RunTools):
                loop.commit(loop.machine.tool_calls_started(effect.calls))
                loop.commit(loop.machine.tool_results([ToolResult(c.id, c.name, loop.output(c)) for c in effect.calls]))
        loop.commit(loop.machine.finish(effect.reason))
    assert loop.state.compressions >= 3
