"""Frozen-prefix compression, adversarially (written in review): a state rebuilt from a snapshot equals a full replay, with everything the real
loop does mixed in (deferred user messages, interrupts, model errors, approvals, incomplete
messages, folds and consolidations), and the prompt stays valid for every codec."""

from __future__ import annotations

import itertools
import random
from typing import Any

import orjson
import pytest

from test_compression import fields  # every field of a state, messages by their encoding

from agent_runtime import compression
from agent_runtime.events import Event, EventKind, NewEvent, decode_data, encode_data
from agent_runtime.manifest import AgentSpec, make_manifest
from agent_runtime.messages import AssistantMessage, ProviderState, ToolCall, ToolResult, Usage
from agent_runtime.agent.state import CONVERSATION_KINDS, AgentState
from agent_runtime.tokens import count, message_tokens
from agent_runtime.agent.turn import CallModel, Compress, FinishTurn, RunTools, TurnMachine, Wait


def spec(frozen: int = 1024) -> AgentSpec:
    return make_manifest("a", compression={"tailBudget": 600, "keepTail": 200, "foldedOutputTokens": 40,
                                           "frozenBudget": frozen}, limits={"tokenBudget": 4_000_000}).spec


class Chaos:
    """The actor's loop without IO, with user messages arriving mid-turn, interrupts, errors and
    approvals at random points."""

    def __init__(self, agent_spec: AgentSpec, rng: random.Random) -> None:
        self.rng = rng
        self.state = AgentState()
        self.machine = TurnMachine(self.state, agent_spec)
        self.log: list[Event] = []
        self.ids = itertools.count(1)

    def commit(self, new: list[NewEvent]) -> None:
        for n in new:  # stored as the log stores it (sorted-key JSON)
            e = Event(len(self.log) + 1, n.kind, decode_data(encode_data(n.data)), float(len(self.log)), n.client_id)
            self.log.append(e)
            self.state.apply(e)

    def user(self, text: str) -> None:
        self.commit(self.machine.user_message(f"u{next(self.ids)}", text))

    def model(self) -> AssistantMessage:
        rng = self.rng
        ps = ProviderState.of("anthropic", {"blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]}) \
            if rng.random() < 0.3 else None
        if rng.random() < 0.25:
            return AssistantMessage(f"answer {rng.random():.4f}", provider_state=ps)
        calls = []
        for _ in range(rng.randint(1, 3)):
            cid = f"call{next(self.ids)}"
            kind = rng.choice(["read_file", "shell", "write_file"])
            path = rng.choice(["a.py", "b.py"])
            args: dict[str, Any] = {"path": path} if kind != "shell" else {"command": "pytest"}
            if kind == "write_file":
                args["content"] = "x " * rng.randint(1, 120)
            calls.append(ToolCall(cid, kind, args))
        stop = "max_tokens" if rng.random() < 0.05 else "tool_use"
        return AssistantMessage(rng.choice(["", "working"]), tuple(calls), stop, provider_state=ps)  # type: ignore[arg-type]

    def output(self, call: ToolCall) -> str:
        return "\n".join(f"{call.name} line {i} {self.rng.randint(0, 9)}" for i in range(self.rng.randint(1, 80)))

    def step(self) -> bool:
        """One step of the loop; False when the turn is over."""
        rng = self.rng
        if self.state.running and rng.random() < 0.08:
            self.user(f"by the way {next(self.ids)}")  # deferred
        if self.state.running and rng.random() < 0.03:
            open_calls = self.state.open_calls()
            early = [] if open_calls else [c for c in self.model().tool_calls[:1]]
            self.commit(self.machine.interrupt("partial" if rng.random() < 0.5 else "", f"i{next(self.ids)}", early))
            return False
        effect = self.machine.next_effect()
        if isinstance(effect, Compress):
            self.commit(self.machine.compress(effect.count, effect.consolidate)[0])
        elif isinstance(effect, CallModel):
            if rng.random() < 0.05:
                self.commit(self.machine.model_error("overloaded", "try later"))
            else:
                self.commit(self.machine.model_message(self.model(), Usage(10, 5), f"m{next(self.ids)}"))
        elif isinstance(effect, RunTools):
            calls = effect.calls
            if rng.random() < 0.3 and not any(c.id in self.state.approvals for c in calls):
                self.commit([e for c in calls[:1] for e in self.machine.approval_required(c, "ask", 1e10)])
                return True
            for c in calls:
                if self.state.approvals.get(c.id, "x") is None:
                    self.commit(self.machine.approval(c, rng.choice(["allow", "deny"]), "operator"))
            self.commit(self.machine.tool_calls_started([c for c in calls if self.state.approvals.get(c.id) != "deny"]))
            self.commit(self.machine.tool_results([ToolResult(c.id, c.name, self.output(c)) for c in calls]))
        elif isinstance(effect, FinishTurn):
            self.commit(self.machine.finish(effect.reason))
            return False
        elif isinstance(effect, Wait):
            return False
        return True


def replay(events: list[Event]) -> AgentState:
    state = AgentState()
    for e in events:
        state.apply(e)
    return state


def from_snapshot(log: list[Event], at: int, upto: int) -> AgentState:
    """What `AgentActor.start` does with a snapshot written at `at`, the log's head at `upto`."""
    snap = (at, orjson.loads(encode_data(replay(log[:at]).snapshot())))
    refs = AgentState.conversation_refs(snap[1])
    if refs is not None:
        named = [log[s - 1] for s in sorted(set(refs)) if 1 <= s <= upto]
    else:
        named = [e for e in log[:at] if e.kind in CONVERSATION_KINDS]
    return AgentState.restore(snap, named, log[at:upto])


@pytest.mark.parametrize("seed", range(4))
def test_snapshot_restore_equals_full_replay_with_everything_mixed_in(seed: int) -> None:
    rng = random.Random(seed)
    loop = Chaos(spec(frozen=rng.choice([1024, 2048, 1_000_000])), rng)
    for t in range(25):
        loop.user(f"task {t}: " + "word " * rng.randint(1, 40))
        for _ in range(60):
            if not loop.step():
                break
    log = loop.log
    assert sum(e.kind == "compression" for e in log) >= 2
    full = [replay(log[:p]) for p in range(len(log) + 1)]
    for p in range(1, len(log) + 1, 3):
        for at in {p, rng.randint(1, p)}:
            rebuilt = from_snapshot(log, at, p)
            assert fields(rebuilt) == fields(full[p]), f"snapshot at {at}, head {p}"
            assert TurnMachine(rebuilt, loop.machine.spec).next_effect() == TurnMachine(full[p], loop.machine.spec).next_effect()


# -- every codec's prompt stays valid for its API after folds and consolidations ----------------------

from agent_runtime.providers import anthropic, gemini, openai_chat, openai_responses  # noqa: E402
from agent_runtime.providers.base import ModelRequest  # noqa: E402
from agent_runtime.tools.base import ToolSpec  # noqa: E402


def anthropic_problems(body: dict[str, Any]) -> list[str]:
    out = []
    msgs = body["messages"]
    marks = sum("cache_control" in b for m in msgs for b in m["content"]) + sum("cache_control" in b for b in body.get("system", ()))
    marks += sum("cache_control" in t for t in body.get("tools", ()))
    if marks > 4:
        out.append(f"{marks} cache_control breakpoints")
    if msgs and msgs[0]["role"] != "user":
        out.append("first message is not user")
    for i, m in enumerate(msgs):
        if i and msgs[i - 1]["role"] == m["role"]:
            out.append(f"two {m['role']} messages in a row at {i}")
        kinds = [b["type"] for b in m["content"]]
        if "tool_result" in kinds and kinds.index("text") < max(j for j, k in enumerate(kinds) if k == "tool_result") \
                if "text" in kinds and "tool_result" in kinds else False:
            out.append(f"text before a tool_result in message {i}")
        uses = [b["id"] for b in m["content"] if b["type"] == "tool_use"]
        if uses:
            nxt = msgs[i + 1]["content"] if i + 1 < len(msgs) else []
            results = [b["tool_use_id"] for b in nxt if b["type"] == "tool_result"]
            if results != uses:
                out.append(f"tool_use {uses} answered by {results} at {i}")
        for b in m["content"]:
            if b["type"] == "tool_result":
                prev = msgs[i - 1]["content"] if i else []
                if b["tool_use_id"] not in [p.get("id") for p in prev if p["type"] == "tool_use"]:
                    out.append(f"tool_result {b['tool_use_id']} without its tool_use right before")
    return out


def openai_chat_problems(body: dict[str, Any]) -> list[str]:
    out = []
    msgs = body["messages"]
    for i, m in enumerate(msgs):
        if m["role"] == "assistant" and m.get("tool_calls"):
            ids = [c["id"] for c in m["tool_calls"]]
            got = []
            for n in msgs[i + 1:]:
                if n["role"] != "tool":
                    break
                got.append(n["tool_call_id"])
            if got != ids:
                out.append(f"tool_calls {ids} answered by {got} at {i}")
        if m["role"] == "tool":
            j = i - 1
            while j >= 0 and msgs[j]["role"] == "tool":
                j -= 1
            if j < 0 or msgs[j]["role"] != "assistant" or m["tool_call_id"] not in [c["id"] for c in msgs[j].get("tool_calls", [])]:
                out.append(f"tool message {m['tool_call_id']} without its call")
    return out


def responses_problems(body: dict[str, Any]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in body["input"]:
        if item["type"] == "function_call":
            seen.add(item["call_id"])
        if item["type"] == "function_call_output" and item["call_id"] not in seen:
            out.append(f"output {item['call_id']} without its call")
    return out


def gemini_problems(body: dict[str, Any]) -> list[str]:
    out = []
    contents = body["contents"]
    if contents and contents[0]["role"] != "user":
        out.append("first content is not user")
    for i, c in enumerate(contents):
        calls = [p["functionCall"]["id"] for p in c["parts"] if "functionCall" in p]
        if calls:
            nxt = contents[i + 1]["parts"] if i + 1 < len(contents) else []
            got = [p["functionResponse"]["id"] for p in nxt if "functionResponse" in p]
            if got != calls:
                out.append(f"functionCalls {calls} answered by {got} at {i}")
    return out


def bodies(state: AgentState, system: str) -> dict[str, dict[str, Any]]:
    tools = (ToolSpec("read_file", "read", {"type": "object"}),)
    req = ModelRequest(model="m", system=system, messages=state.messages, tools=tools, max_tokens=100, agent_key="k",
                       frozen_ends=tuple(state.chunk_ends[-2:]))
    return {
        "anthropic": anthropic.build_body(req),
        "openai": openai_chat.build_body(req),
        "openai-responses": openai_responses.build_body(req),
        "gemini": gemini.build_body(req),
    }


CHECKS = {"anthropic": anthropic_problems, "openai": openai_chat_problems, "openai-responses": responses_problems,
          "gemini": gemini_problems}


@pytest.mark.parametrize("seed", range(4))
def test_every_prompt_is_valid_for_every_api_after_folds(seed: int) -> None:
    rng = random.Random(1000 + seed)
    loop = Chaos(spec(frozen=rng.choice([1024, 2048])), rng)
    problems: list[str] = []
    orig_step = loop.step

    def step() -> bool:
        if isinstance(loop.machine.next_effect(), CallModel):
            for name, body in bodies(loop.state, rng.choice(["", "sys"])).items():
                problems.extend(f"{name}: {p}" for p in CHECKS[name](body))
        return orig_step()

    for t in range(25):
        loop.user(f"task {t}: " + "word " * rng.randint(1, 40))
        for _ in range(60):
            if not step():
                break
    assert not problems, sorted(set(problems))[:10]


def flat(name: str, body: dict[str, Any]) -> list[bytes]:
    """The prompt as a list of (role, block) in order, cache markers removed: what prefix caching sees."""
    def b(role: str, block: Any) -> bytes:
        block = orjson.loads(orjson.dumps(block))
        if isinstance(block, dict):
            block.pop("cache_control", None)
        return orjson.dumps([role, block])

    head = [b("system", body.get("system") or body.get("instructions") or body.get("systemInstruction")),
            b("tools", body.get("tools"))]
    if name == "anthropic":
        return head + [b(m["role"], x) for m in body["messages"] for x in orjson.loads(orjson.dumps(m["content"]))]
    if name == "openai":
        return head + [b("m", m) for m in body["messages"]]
    if name == "openai-responses":
        return head + [b("i", m) for m in body["input"]]
    return head + [b(c["role"], p) for c in body["contents"] for p in orjson.loads(orjson.dumps(c["parts"]))]


def frozen_blocks(name: str, state: AgentState) -> int:
    per = {"anthropic": anthropic.blocks_json, "openai": lambda m: [openai_chat.message_json(m)]
           if not (isinstance(m, AssistantMessage) and not m.text and not m.tool_calls) else [],
           "openai-responses": openai_responses.items_json, "gemini": gemini.parts_json}[name]
    return 2 + sum(len(per(m)) for m in state.messages[: state.frozen])


@pytest.mark.parametrize("seed", range(4))
def test_prefix_is_stable_for_every_codec_across_folds_and_restarts(seed: int) -> None:
    rng = random.Random(2000 + seed)
    loop = Chaos(spec(frozen=rng.choice([1024, 2048, 1_000_000])), rng)
    prev: dict[str, tuple[list[bytes], int, int]] = {}
    checked = 0
    orig_step = loop.step

    def step() -> bool:
        nonlocal checked
        if isinstance(loop.machine.next_effect(), CallModel):
            consolidations = sum(1 for e in loop.log if e.kind == "compression" and e.data.get("consolidated"))
            rebuilt = from_snapshot(loop.log, rng.randint(1, len(loop.log)), len(loop.log))
            for name, body in bodies(loop.state, "sys").items():
                cur = flat(name, body)
                assert flat(name, bodies(rebuilt, "sys")[name]) == cur, f"{name}: a restart changes the prompt"
                if name in prev and prev[name][2] == consolidations:
                    p, pf, _ = prev[name]
                    assert cur[:pf] == p[:pf], f"{name}: the frozen prefix changed"
                    checked += 1
                prev[name] = (cur, frozen_blocks(name, loop.state), consolidations)
        return orig_step()

    for t in range(20):
        loop.user(f"task {t}: " + "word " * rng.randint(1, 40))
        for _ in range(60):
            if not step():
                break
    assert checked > 50


# -- findings, each a failing test ----------------------------------------------------------------------

from agent_runtime.messages import ToolResultMessage, UserMessage  # noqa: E402

FILE = "\n".join(f"def f{i}(): return {i}" for i in range(30))


def test_an_unchanged_file_read_twice_keeps_its_content_once() -> None:
    """The second read is an exact duplicate of the first, and the first is superseded by the
    second: the fold replaces BOTH (one says 'superseded', the other 'same output as <the first>'),
    so the chunk holds no copy of the file at all."""
    r1, r2 = ToolCall("r1", "read_file", {"path": "a.py"}), ToolCall("r2", "read_file", {"path": "a.py"})
    span = [UserMessage("fix a.py"), AssistantMessage("", (r1,), "tool_use"),
            ToolResultMessage(ToolResult("r1", "read_file", FILE)),
            AssistantMessage("once more", (r2,), "tool_use"), ToolResultMessage(ToolResult("r2", "read_file", FILE))]
    f = compression.fold(span, [message_tokens(m) for m in span], [None, None, "a.py", None, "a.py"],
                         set(), 200)
    outputs = [m.result.content for m in f.messages if isinstance(m, ToolResultMessage)]
    assert any("def f29" in o for o in outputs), outputs


def test_a_denied_write_does_not_supersede_the_read_before_it() -> None:
    """`later_paths` / the native analysis count any result with a path, errors too: a write an
    operator denied (the file did not change) makes the fold drop the only copy of the file."""
    r1, w1 = ToolCall("r1", "read_file", {"path": "a.py"}), ToolCall("w1", "write_file", {"path": "a.py", "content": "x"})
    span = [UserMessage("fix a.py"), AssistantMessage("", (r1,), "tool_use"),
            ToolResultMessage(ToolResult("r1", "read_file", FILE)),
            AssistantMessage("", (w1,), "tool_use"),
            ToolResultMessage(ToolResult("w1", "write_file", "error[denied]: tool call refused: an operator denied it",
                                         is_error=True))]
    f = compression.fold(span, [message_tokens(m) for m in span], [None, None, "a.py", None, "a.py"],
                         set(), 200)
    assert "def f29" in f.messages[2].result.content  # type: ignore[union-attr]


def test_folding_never_makes_a_message_longer() -> None:
    """A short duplicate ('ok') becomes a longer note, and an output just over foldedOutputTokens
    becomes head + tail + a note longer than the output."""
    s1, s2 = ToolCall("s1", "shell", {"command": "true"}), ToolCall("s2", "shell", {"command": "true"})
    text = "\n".join(f"w{i}" for i in range(30))
    s3 = ToolCall("s3", "shell", {"command": "seq"})
    span = [UserMessage("x"), AssistantMessage("", (s1, s2), "tool_use"), ToolResultMessage(ToolResult("s1", "shell", "ok")),
            ToolResultMessage(ToolResult("s2", "shell", "ok")), AssistantMessage("", (s3,), "tool_use"),
            ToolResultMessage(ToolResult("s3", "shell", text))]
    tokens = [message_tokens(m) for m in span]
    f = compression.fold(span, tokens, [None] * len(span), set(), count(text) - 1)
    assert all(after <= before for before, after in zip(tokens, f.tokens, strict=True)), (tokens, f.tokens)


def test_the_archive_digest_of_a_short_argument_is_not_longer_than_the_argument() -> None:
    arg = "pytest -q tests/unit/test_compression.py -k something --maxfail=1 -x"
    line = compression._line(arg, 12)
    assert count(line) <= count(arg) and "\n" not in line, line


def test_a_single_huge_frozen_message_is_consolidated_instead_of_stopping_every_turn() -> None:
    """A big first message folded alone makes `frozen == 1`; `next_effect` consolidates only when
    `frozen > 1`, so that message stays in the prompt at full size. With a token budget under
    frozen + tailBudget every later turn ends at once with token_budget_exceeded: the agent can no
    longer work, although consolidation would shrink the message to one archive line."""
    agent = make_manifest("a", limits={"tokenBudget": 30_000}).spec  # tail budget 15000, keep 5625, frozen 10000
    loop = Chaos(agent, random.Random(0))
    loop.user("log line with some words in it\n" * 2600)  # ~20k tokens
    loop.commit(loop.machine.model_message(AssistantMessage("", (ToolCall("c1", "shell", {"command": "ls"}),), "tool_use"),
                                           Usage(), "m1"))
    loop.commit(loop.machine.tool_calls_started(loop.state.open_calls()))
    loop.commit(loop.machine.tool_results([ToolResult("c1", "shell", "a.py")]))
    effect = loop.machine.next_effect()
    assert isinstance(effect, Compress) and effect.count == 1
    loop.commit(loop.machine.compress(effect.count)[0])
    assert loop.state.frozen == 1 and loop.state.frozen_tokens > agent.frozen_budget()
    # the model works on; the tail grows by ~9k tokens of tool output, still under its 15k budget
    for i in range(3):
        call = ToolCall(f"d{i}", "shell", {"command": "cat"})
        loop.commit(loop.machine.model_message(AssistantMessage("", (call,), "tool_use"), Usage(), f"n{i}"))
        loop.commit(loop.machine.tool_calls_started((call,)))
        loop.commit(loop.machine.tool_results([ToolResult(call.id, "shell", "output words here\n" * 800)]))
    assert loop.state.tail_tokens() < agent.tail_budget()[0]
    assert loop.machine.next_effect() != FinishTurn("token_budget"), (
        f"frozen {loop.state.frozen_tokens} (one message, budget {agent.frozen_budget()}) + tail "
        f"{loop.state.tail_tokens()} > tokenBudget 30000: the turn stops instead of consolidating")


def test_the_running_turns_own_instructions_survive_a_consolidation() -> None:
    """Consolidation cuts every user message to ~80 tokens (`_line`), including the message the
    agent is working on right now: mid-turn, a long task description loses its middle while the
    model still needs it (the issue: 'keep every user message and decision')."""
    loop = Chaos(spec(frozen=1024), random.Random(5))
    task = "Requirements:\n" + "\n".join(f"{i}. the function f{i} must return {i * 7} for input {i}" for i in range(40))
    loop.user(task)
    consolidated_mid_turn = False
    for _ in range(400):
        effect = loop.machine.next_effect()
        if isinstance(effect, Compress) and effect.consolidate:
            loop.commit(loop.machine.compress(effect.count, True)[0])
            consolidated_mid_turn = loop.state.running
            break
        if isinstance(effect, (FinishTurn, Wait)):
            break
        if isinstance(effect, CallModel):
            call = ToolCall(f"c{next(loop.ids)}", "shell", {"command": "pytest"})
            loop.commit(loop.machine.model_message(AssistantMessage("", (call,), "tool_use"), Usage(), f"m{next(loop.ids)}"))
        elif isinstance(effect, RunTools):
            loop.commit(loop.machine.tool_calls_started(effect.calls))
            loop.commit(loop.machine.tool_results([ToolResult(c.id, c.name, loop.output(c)) for c in effect.calls]))
        elif isinstance(effect, Compress):
            loop.commit(loop.machine.compress(effect.count)[0])
    assert consolidated_mid_turn
    prompt = "\n".join(getattr(m, "text", "") for m in loop.state.messages)
    assert "f20 must return 140" in prompt, "the running task's requirements were cut out of the prompt"


def test_a_long_system_prompt_does_not_stop_every_turn_at_the_token_budget() -> None:
    """The fold triggers on the tail alone (`tail_budget()` = half of tokenBudget) and consolidation
    on the frozen part alone (a third): neither counts the system prompt and tools
    (`TurnMachine.prefix_tokens`). With tokenBudget 32000 and a 17k-token system prompt, the
    prompt passes the budget while the tail (~15k) is still under its 16k fold budget: the turn
    ends with token_budget_exceeded, and so does every later turn (a new message adds a few
    tokens, no fold triggers): the agent is stuck although folding would make room."""
    agent = make_manifest("a", limits={"tokenBudget": 32_000}, systemPrompt="rule of the house number " * 3400).spec
    loop = Chaos(agent, random.Random(0))
    assert 16_000 < loop.machine.prefix_tokens < 18_000
    loop.user("please run the tests until they pass")
    reasons = []
    for turn in range(4):
        for i in range(200):
            effect = loop.machine.next_effect()
            if isinstance(effect, Compress):
                loop.commit(loop.machine.compress(effect.count, effect.consolidate)[0])
            elif isinstance(effect, CallModel):
                call = ToolCall(f"c{turn}-{i}", "shell", {"command": "pytest"})
                loop.commit(loop.machine.model_message(AssistantMessage("", (call,), "tool_use"), Usage(), f"m{turn}-{i}"))
            elif isinstance(effect, RunTools):
                loop.commit(loop.machine.tool_calls_started(effect.calls))
                loop.commit(loop.machine.tool_results([ToolResult(c.id, c.name, "test output line\n" * 400)
                                                       for c in effect.calls]))
            elif isinstance(effect, FinishTurn):
                reasons.append(effect.reason)
                loop.commit(loop.machine.finish(effect.reason))
                break
        loop.user("continue")
    assert reasons[1:] != ["token_budget"] * 3, (
        f"every turn after the first ended at once at the token budget (tail {loop.state.tail_tokens()} < fold budget "
        f"{agent.tail_budget()[0]}, prompt {loop.machine.context_tokens()} > 32000)")


def test_the_note_of_a_cut_single_line_output_says_something_was_left_out() -> None:
    """One long line (minified JSON, a long log line): the note says '1 lines … 0 lines in the
    middle left out' although almost all of it was cut."""
    text = '{"k": "' + "abcdefgh " * 3000 + '"}'
    short = compression.head_tail(text, 40, "output")
    assert short is not None and "0 lines in the middle left out" not in short, short[:200]
