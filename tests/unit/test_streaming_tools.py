"""Streaming tool execution in the actor: when calls start, what an unfinished message does to
them, approvals, limits and the order of results. Scripted model (exact stream events at exact
times), in-memory log, in-process tools that record when they ran.

The rules themselves (which call starts when, barriers, triage) are decided by the pure
`ToolSchedule` and tested exhaustively in test_schedule.py; these tests check that the shell
(`ModelCalls`, `ToolRuns`, the actor) carries them out with real tasks and real time: commits and
their order, mid-stream starts, cancellation, approvals, interrupts, limits."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_runtime.agent.actor import ActorConfig, AgentActor
from agent_runtime.agent.mail import InterruptMail, UnknownToolCall, UserMail
from agent_runtime.eventlog.memory import MemoryEventLog
from agent_runtime.events import Event
from agent_runtime.agent.hub import Hub
from agent_runtime.manifest import make_manifest
from agent_runtime.messages import ToolCall
from agent_runtime.metrics import Metrics
from agent_runtime.providers.base import ProviderError
from agent_runtime.tools.base import Tool, ToolContext, ToolOutput, ToolSpec
from agent_runtime.tools.registry import ToolRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _scripted import Call, Fail, Hang, Say, ScriptedProvider, Stop  # noqa: E402


class Probe(Tool):
    """Records start/end times; sleeps `sleep` seconds (argument) or waits for `release`."""

    def __init__(self, name: str, read_only: bool, idempotent: bool, journal: list[tuple[str, str, float]],
                 durations: dict[str, float]) -> None:
        self.spec = ToolSpec(name, name, {"type": "object", "properties": {"sleep": {"type": "number"}, "path": {"type": "string"},
                                                                           "command": {"type": "string"}},
                                           "additionalProperties": False}, read_only=read_only, idempotent=idempotent)
        self.journal = journal
        self.durations = durations
        self.running = 0
        self.peak = 0

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        self.journal.append(("start", str(args.get("path") or args.get("command") or ""), time.perf_counter()))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            label = str(args.get("path") or args.get("command") or "")
            await asyncio.sleep(float(args.get("sleep", self.durations.get(label, 0.0))))
        except asyncio.CancelledError:
            self.journal.append(("cancelled", str(args.get("path") or args.get("command") or ""), time.perf_counter()))
            raise
        finally:
            self.running -= 1
        self.journal.append(("end", str(args.get("path") or args.get("command") or ""), time.perf_counter()))
        return ToolOutput(f"{self.spec.name}({args.get('path') or args.get('command')}) ok")


class World:
    def __init__(self, scripts: Any, **spec: Any) -> None:
        self.journal: list[tuple[str, str, float]] = []
        self.durations: dict[str, float] = {}
        self.tools = {
            "read_file": Probe("read_file", True, True, self.journal, self.durations),
            "list_dir": Probe("list_dir", True, True, self.journal, self.durations),
            "write_file": Probe("write_file", False, True, self.journal, self.durations),
            "shell": Probe("shell", False, False, self.journal, self.durations),
        }
        self.provider = ScriptedProvider(scripts)
        self.log = MemoryEventLog()
        self.spec = spec
        self.actor = self.new_actor()
        self.runner: asyncio.Task[None] | None = None

    def new_actor(self) -> AgentActor:
        return AgentActor(
            manifest=make_manifest("a1", **self.spec), log_=self.log, workspace=Path("/nonexistent"), hub=Hub(),
            provider=self.provider, tools=ToolRegistry(self.tools.values()), tool_slots=asyncio.Semaphore(16),
            metrics=Metrics(), config=ActorConfig(idle_timeout_s=30.0, retry_base_s=0.001),
        )

    async def __aenter__(self) -> World:
        await self.actor.start()
        self.runner = asyncio.create_task(self.actor.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        self.runner.cancel()
        await asyncio.gather(self.runner, return_exceptions=True)

    async def send(self, text: str = "go", client_id: str = "m1") -> None:
        reply: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        self.actor.submit(UserMail(client_id, text, reply))
        await reply

    async def until(self, predicate: Any, what: str = "condition") -> None:
        for _ in range(4000):
            if predicate():
                return
            await asyncio.sleep(0.002)
        raise AssertionError(f"timed out waiting for {what}: {self.actor.state.snapshot()}")

    async def idle(self, turns: int = 1) -> list[Event]:
        await self.until(lambda: self.actor.state.turns >= turns and not self.actor.state.running, "the turn to end")
        return await self.log.read()

    def started(self, label: str) -> float | None:
        return next((t for kind, name, t in self.journal if kind == "start" and name == label), None)

    def ended(self, label: str) -> float | None:
        return next((t for kind, name, t in self.journal if kind == "end" and name == label), None)

    def span(self, label: str) -> tuple[float, float]:
        start, end = self.started(label), self.ended(label)
        assert start is not None and end is not None, (label, self.journal)
        return start, end


def tc(i: str, name: str, **args: Any) -> ToolCall:
    return ToolCall(i, name, args)


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def results(events: list[Event]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.kind == "tool_result"]


async def test_read_only_calls_start_mid_stream_side_effects_wait_for_the_tool_use_stop() -> None:
    # The default (`streamingStart: readOnly`): only read-only calls start mid-stream; every side
    # effect, idempotent or not, waits for the message's stop reason.
    script = [Say("let me look"), Call(tc("r1", "read_file", path="a")), Call(tc("w1", "write_file", path="b")),
              Call(tc("s1", "shell", command="make")), Say("still talking", after_s=0.15), Stop("tool_use", after_s=0.05)]
    async with World([script]) as w:
        await w.send()
        events = await w.idle()
    end = w.provider.busy[0][1]
    r1, wr, s1 = w.started("a"), w.started("b"), w.started("make")
    assert r1 is not None and wr is not None and s1 is not None
    assert r1 < end  # read-only: at once, mid-stream
    assert wr >= end and s1 >= end  # side effects: only after the tool_use stop
    # The read-only call and the calls that start at the stop are announced with the message.
    k = kinds(events)
    first_message = k.index("assistant_message")
    window = events[first_message: first_message + 5]
    assert [(e.kind, e.data.get("id") if e.kind == "tool_call" else None, e.data.get("early")) for e in window] == [
        ("assistant_message", None, None), ("tool_call", "r1", True), ("tool_call", "w1", None),
        ("tool_call", "s1", None), ("usage", None, None),
    ]
    assert [r["tool_call_id"] for r in results(events)] == ["r1", "w1", "s1"]
    assert not any(r.get("incomplete_message") for r in results(events))


async def test_idempotent_calls_start_mid_stream_only_when_opted_in() -> None:
    script = [Say("let me look"), Call(tc("r1", "read_file", path="a")), Call(tc("w1", "write_file", path="b")),
              Call(tc("s1", "shell", command="make")), Say("still talking", after_s=0.15), Stop("tool_use", after_s=0.05)]
    async with World([script], autonomy={"streamingStart": "readOnlyOrIdempotent"}) as w:
        await w.send()
        events = await w.idle()
    end = w.provider.busy[0][1]
    r1, wr, s1 = w.started("a"), w.started("b"), w.started("make")
    assert r1 is not None and wr is not None and s1 is not None
    assert r1 < end and wr < end  # read-only and idempotent: at once, mid-stream
    assert s1 >= end  # side effects that are not idempotent: only after the tool_use stop
    # The idempotent side effect is durable before it runs (its own commit, mid-stream); the
    # read-only call and the call that starts at the stop are announced with the message.
    k = kinds(events)
    first_message = k.index("assistant_message")
    window = events[first_message - 1: first_message + 4]
    assert [(e.kind, e.data.get("id") if e.kind == "tool_call" else None, e.data.get("early")) for e in window] == [
        ("tool_call", "w1", True), ("assistant_message", None, None), ("tool_call", "r1", True),
        ("tool_call", "s1", None), ("usage", None, None),
    ]
    assert len({e.seq for e in events if e.kind == "tool_call"}) == 3 == k.count("tool_call")
    assert [r["tool_call_id"] for r in results(events)] == ["r1", "w1", "s1"]

    async with World([script], autonomy={"streamingStart": "off"}) as w:
        await w.send()
        await w.idle()
    end = w.provider.busy[0][1]
    assert w.started("a") >= end and w.started("b") >= end  # type: ignore[operator]


@pytest.mark.parametrize("stop", ["max_tokens", "content_filter", "error"])
async def test_an_unfinished_message_starts_nothing_unsafe_and_keeps_early_results_marked(stop: str) -> None:
    script = [Call(tc("r1", "read_file", path="a")), Call(tc("r2", "list_dir", path="x", sleep=0.05)),
              Call(tc("w1", "write_file", path="out")), Call(tc("s1", "shell", command="rm -rf build")),
              Say("more", after_s=0.02), Stop(stop)]  # type: ignore[arg-type]
    async with World([script]) as w:  # the default streamingStart
        await w.send()
        events = await w.idle()
    assert w.started("rm -rf build") is None and w.started("out") is None  # nothing unsafe ran
    got = results(events)
    assert [r["tool_call_id"] for r in got] == ["r1", "r2", "w1", "s1"]
    assert all(r["incomplete_message"] is True for r in got)
    assert got[0]["content"] == "read_file(a) ok" and got[1]["content"] == "list_dir(x) ok"
    for r in got[2:]:
        assert r["is_error"] and r["content"].startswith("error[cancelled]")
    assert not any(e.kind == "tool_call" and e.data["id"] in ("w1", "s1") for e in events)
    assert events[-1].data == {"state": "idle", "reason": stop}
    assert w.provider.calls == 1  # the turn ends: the model is not asked again


async def test_results_are_committed_in_call_order_whatever_order_tools_finish() -> None:
    script = [Call(tc("c1", "read_file", path="slow", sleep=0.12)), Call(tc("c2", "read_file", path="mid", sleep=0.06)),
              Call(tc("c3", "read_file", path="fast", sleep=0.0)), Stop("tool_use")]
    async with World([script]) as w:
        await w.send()
        events = await w.idle()
    finished = [name for kind, name, _ in w.journal if kind == "end"]
    assert finished == ["fast", "mid", "slow"]
    assert [r["tool_call_id"] for r in results(events)] == ["c1", "c2", "c3"]
    result_seqs = [e.seq for e in events if e.kind == "tool_result"]
    assert result_seqs == list(range(result_seqs[0], result_seqs[0] + 3))  # one batch, nothing between


async def test_reads_run_together_a_side_effect_runs_alone_between_them() -> None:
    script = [Call(tc("r1", "read_file", path="r1", sleep=0.06)), Call(tc("r2", "list_dir", path="r2", sleep=0.06)),
              Call(tc("w1", "write_file", path="w1", sleep=0.04)), Call(tc("r3", "read_file", path="r3", sleep=0.04)),
              Call(tc("r4", "list_dir", path="r4", sleep=0.04)), Call(tc("s1", "shell", command="s1", sleep=0.02)),
              Call(tc("r5", "read_file", path="r5")), Stop("tool_use")]
    async with World([script]) as w:
        await w.send()
        events = await w.idle()
    span = {label: w.span(label) for label in ("r1", "r2", "w1", "r3", "r4", "s1", "r5")}
    assert span["r2"][0] < span["r1"][1]  # consecutive reads overlap
    assert span["w1"][0] >= max(span["r1"][1], span["r2"][1])  # a write waits for every earlier call
    assert min(span["r3"][0], span["r4"][0]) >= span["w1"][1]  # ... and every later call waits for it
    assert span["r4"][0] < span["r3"][1]
    assert span["s1"][0] >= max(span["r3"][1], span["r4"][1]) and span["r5"][0] >= span["s1"][1]
    assert [r["tool_call_id"] for r in results(events)] == ["r1", "r2", "w1", "r3", "r4", "s1", "r5"]


async def test_an_opted_in_early_write_waits_for_earlier_reads_and_stops_early_starts() -> None:
    script = [Call(tc("r1", "read_file", path="r1", sleep=0.08)), Call(tc("w1", "write_file", path="w1", sleep=0.03)),
              Call(tc("r2", "read_file", path="r2")), Say("more", after_s=0.25), Stop("tool_use")]
    async with World([script], autonomy={"streamingStart": "readOnlyOrIdempotent"}) as w:
        await w.send()
        events = await w.idle()
    end = w.provider.busy[0][1]
    r1, wr, r2 = w.span("r1"), w.span("w1"), w.span("r2")
    assert wr[0] < end and wr[0] >= r1[1]  # early, but after the earlier read finished
    assert r2[0] >= end and r2[0] >= wr[1]  # no early start after a side effect
    assert [r["tool_call_id"] for r in results(events)] == ["r1", "w1", "r2"]


async def test_a_read_after_an_asked_write_waits_for_the_decision_and_the_write() -> None:
    script = [Call(tc("w1", "write_file", path="w1", sleep=0.03)), Call(tc("r1", "read_file", path="r1")), Stop("tool_use")]
    async with World([script], autonomy={"rules": [{"action": "ask", "tool": "write_file"}], "approvalTimeoutS": 5}) as w:
        await w.send()
        await _pending(w, "w1")
        await asyncio.sleep(0.05)
        assert w.started("r1") is None  # the write may still happen: the read waits
        w.actor.approve("w1", "allow")
        events = await w.idle()
    assert w.span("r1")[0] >= w.span("w1")[1]
    assert [r["tool_call_id"] for r in results(events)] == ["w1", "r1"]


def _transcript(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for e in events:
        data = {k: v for k, v in e.data.items() if k not in ("duration_ms", "id")}
        if e.kind == "approval_required":
            data.pop("deadline", None)
        out.append((e.kind, data))
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([0.0, 0.005, 0.02, 0.04]), min_size=4, max_size=4),
       st.lists(st.sampled_from([0.0, 0.01]), min_size=4, max_size=4))
def test_the_durable_transcript_is_the_same_for_any_tool_completion_times(sleeps: list[float], gaps: list[float]) -> None:
    async def once(sleeps: list[float], gaps: list[float]) -> list[tuple[str, dict[str, Any]]]:
        script = [Say("reading"),
                  Call(tc("c1", "read_file", path="a"), after_s=gaps[0]),
                  Call(tc("c2", "list_dir", path="b"), after_s=gaps[1]),
                  Call(tc("c3", "shell", command="c"), after_s=gaps[2]),
                  Call(tc("c4", "write_file", path="d"), after_s=gaps[3]),
                  Call(tc("c5", "read_file", path="d")),
                  Stop("tool_use")]
        async with World([script]) as w:
            w.durations.update(zip("abcd", sleeps))  # how long each call runs
            await w.send()
            return _transcript(await w.idle())

    reference = asyncio.run(once([0.0] * 4, [0.0] * 4))
    assert asyncio.run(once(sleeps, gaps)) == reference


async def test_deny_rules_refuse_without_running_and_allow_rules_override_the_default() -> None:
    autonomy = {"defaultAction": "deny", "rules": [
        {"action": "deny", "tool": "shell", "arguments": {"command": "rm *"}},
        {"action": "allow", "tool": "shell"},
        {"action": "allow", "tool": "write_file", "arguments": {"path": "src/*"}},
    ]}
    script = [Call(tc("s1", "shell", command="rm -rf /")), Call(tc("s2", "shell", command="ls")),
              Call(tc("w1", "write_file", path="src/../etc/x")), Call(tc("w2", "write_file", path="src/a.py")),
              Call(tc("r1", "read_file", path="a")), Stop("tool_use")]
    async with World([script], autonomy=autonomy) as w:
        await w.send()
        events = await w.idle()
    got = {r["tool_call_id"]: r for r in results(events)}
    assert got["s1"]["is_error"] and "rule 0" in got["s1"]["content"] and got["s1"]["content"].startswith("error[denied]")
    assert not got["s2"]["is_error"]
    assert got["w1"]["is_error"] and "default action" in got["w1"]["content"]  # `..` normalised: not under src/
    assert not got["w2"]["is_error"]
    assert got["r1"]["is_error"]  # the default is deny; read-only does not bypass it
    ran = {name for kind, name, _ in w.journal if kind == "start"}
    assert ran == {"ls", "src/a.py"}


async def test_invalid_arguments_and_tools_the_agent_lacks_never_start() -> None:
    script = [Call(tc("x1", "read_file", path=3)), Call(tc("x2", "launch_missiles")), Stop("tool_use")]
    async with World([script]) as w:
        await w.send()
        events = await w.idle()
    got = results(events)
    assert got[0]["content"].startswith("error[invalid_arguments]") and got[1]["content"].startswith("error[unknown_tool]")
    assert not w.journal and not any(e.kind == "tool_call" for e in events)


ASK_SHELL = {"rules": [{"action": "ask", "tool": "shell"}], "approvalTimeoutS": 5}


async def _pending(w: World, call_id: str) -> None:
    await w.until(lambda: call_id in w.actor.pending_approvals(), f"approval of {call_id} to be pending")


async def test_ask_waits_for_an_operator_without_blocking_the_mailbox_then_allow_runs_it() -> None:
    # (The read comes first: a read after the shell call would wait for it, see the order tests.)
    script = [Call(tc("r1", "read_file", path="a")), Call(tc("s1", "shell", command="deploy")), Stop("tool_use")]
    async with World([script], autonomy=ASK_SHELL) as w:
        await w.send()
        await _pending(w, "s1")
        await w.send("are you there?", client_id="m2")  # the mailbox is served while waiting
        assert w.started("deploy") is None and w.started("a") is not None
        with pytest.raises(UnknownToolCall):
            w.actor.approve("r1", "allow")
        w.actor.approve("s1", "allow")
        with pytest.raises(UnknownToolCall):
            w.actor.approve("s1", "deny")  # decided already
        events = await w.idle()
    k = kinds(events)
    required = next(e for e in events if e.kind == "approval_required")
    assert required.data["tool_call_id"] == "s1" and required.data["name"] == "shell" and required.data["default_decision"] == "deny"
    decision = next(e for e in events if e.kind == "approval")
    assert decision.data == {"tool_call_id": "s1", "decision": "allow", "by": "operator"}
    assert k.index("approval") + 1 == k.index("tool_call", k.index("approval"))  # started with the decision
    assert w.started("deploy") is not None
    assert next(r for r in results(events) if r["tool_call_id"] == "s1")["content"] == "shell(deploy) ok"


async def test_ask_denied_by_an_operator_or_by_the_timeout_default() -> None:
    script = [Call(tc("s1", "shell", command="deploy")), Stop("tool_use")]
    async with World([script], autonomy=ASK_SHELL) as w:
        await w.send()
        await _pending(w, "s1")
        w.actor.approve("s1", "deny")
        events = await w.idle()
    assert w.started("deploy") is None
    assert next(r for r in results(events))["content"] == "error[denied]: tool call refused: an operator denied it"

    quick = {**ASK_SHELL, "approvalTimeoutS": 0.05}
    async with World([script], autonomy=quick) as w:
        await w.send()
        events = await w.idle()
    assert next(e for e in events if e.kind == "approval").data == {"tool_call_id": "s1", "decision": "deny", "by": "timeout"}
    assert "no operator answered within 0.05 s" in results(events)[0]["content"]

    async with World([script], autonomy={**quick, "approvalTimeoutDecision": "allow"}) as w:
        await w.send()
        events = await w.idle()
    assert next(e for e in events if e.kind == "approval").data["decision"] == "allow"
    assert w.started("deploy") is not None


async def test_an_answer_in_the_same_tick_as_the_deadline_decides_as_the_operator_was_told() -> None:
    # The deadline's timer fires (the waiting task is cancelled), then, before the task resumes,
    # an operator's `allow` arrives: `approve` accepts it, so it must be the durable decision.
    script = [Call(tc("s1", "shell", command="deploy")), Stop("tool_use")]
    async with World([script], autonomy={**ASK_SHELL, "approvalTimeoutS": 0.2}) as w:
        await w.send()
        await _pending(w, "s1")
        task = next(t for t in asyncio.all_tasks() if t.get_name() == "approval:s1")
        loop = asyncio.get_running_loop()
        accepted: list[bool] = []

        def poll() -> None:
            if task.done():
                return
            if task.cancelling():  # the timeout fired; the task has not run since
                w.actor.approve("s1", "allow")  # raises if refused
                accepted.append(True)
                return
            loop.call_soon(poll)

        loop.call_soon(poll)
        events = await w.idle()
    assert accepted == [True]
    assert next(e for e in events if e.kind == "approval").data == {"tool_call_id": "s1", "decision": "allow", "by": "operator"}
    assert w.started("deploy") is not None


async def test_a_restart_mid_approval_asks_once_and_keeps_the_deadline() -> None:
    script = [Call(tc("s1", "shell", command="deploy")), Stop("tool_use")]
    w = World([script], autonomy=ASK_SHELL)
    async with w:
        await w.send()
        await _pending(w, "s1")
    # "crash": a new actor over the same log
    w.actor = w.new_actor()
    async with w:
        assert w.actor.state.approvals == {"s1": None}
        await _pending(w, "s1")
        w.actor.approve("s1", "allow")
        events = await w.idle()
    assert kinds(events).count("approval_required") == 1 and kinds(events).count("approval") == 1
    assert w.started("deploy") is not None and kinds(events).count("tool_result") == 1


async def test_interrupt_mid_stream_kills_running_calls_keeps_finished_ones() -> None:
    script = [Call(tc("r1", "read_file", path="quick")), Call(tc("r2", "read_file", path="slow", sleep=30)),
              Say("thinking"), Hang()]
    async with World([script]) as w:
        await w.send()
        await w.until(lambda: w.started("slow") is not None and any(k == "end" for k, _, _ in w.journal), "tools to run")
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        w.actor.submit(InterruptMail(done))
        assert await done
        events = await w.log.read()
    assert ("cancelled", "slow") in [(k, n) for k, n, _ in w.journal]
    message = [e for e in events if e.kind == "assistant_message"][-1].data
    assert message["stop_reason"] == "interrupted" and [c["id"] for c in message["tool_calls"]] == ["r1", "r2"]
    got = results(events)
    assert got[0]["content"] == "read_file(quick) ok" and got[0]["incomplete_message"]
    assert got[1]["is_error"] and "interrupted" in got[1]["content"]
    assert events[-1].data == {"state": "idle", "reason": "interrupted"}


async def test_a_failed_stream_cancels_its_early_calls_and_the_retry_starts_over() -> None:
    first = [Call(tc("r1", "read_file", path="a", sleep=30)), Fail(ProviderError("reset", retryable=True), after_s=0.02)]
    second = [Call(tc("r9", "read_file", path="b")), Stop("tool_use")]
    async with World([first, second]) as w:
        await w.send()
        events = await w.idle()
    assert ("cancelled", "a") in [(k, n) for k, n, _ in w.journal]
    assert [r["tool_call_id"] for r in results(events)] == ["r9"]
    messages = [e.data for e in events if e.kind == "assistant_message"]
    assert [c["id"] for c in messages[0]["tool_calls"]] == ["r9"]


async def test_per_agent_limit_on_running_tools() -> None:
    script = [*(Call(tc(f"c{i}", "read_file", path=f"f{i}", sleep=0.03)) for i in range(6)), Stop("tool_use")]
    async with World([script], limits={"maxRunningTools": 2}) as w:
        await w.send()
        events = await w.idle()
    assert w.tools["read_file"].peak == 2
    assert [r["tool_call_id"] for r in results(events)] == [f"c{i}" for i in range(6)]


class GatedLog(MemoryEventLog):
    """Holds the commit of the assistant message until `gate` is set (an actor stopping then)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.holding = asyncio.Event()

    async def append(self, events: Any) -> list[Event]:
        if any(e.kind == "assistant_message" for e in events):
            self.holding.set()
            await self.gate.wait()
        return await super().append(events)


async def test_an_actor_that_stops_between_the_stream_and_its_tools_cancels_the_early_calls() -> None:
    # Delete or shutdown cancels the turn while it commits the message: the calls that started
    # mid-stream must not outlive the actor (a delete removes the workspace under them).
    script = [Call(tc("r1", "read_file", path="slow", sleep=30)), Stop("tool_use")]
    w = World([script])
    w.log = GatedLog()
    w.actor = w.new_actor()
    await w.actor.start()
    runner = asyncio.create_task(w.actor.run())
    await w.send()
    await w.log.holding.wait()
    assert w.started("slow") is not None
    runner.cancel()
    await asyncio.sleep(0)
    w.log.gate.set()
    await asyncio.gather(runner, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert ("cancelled", "slow") in [(k, n) for k, n, _ in w.journal]
    assert w.tools["read_file"].running == 0


async def test_path_rules_see_the_path_the_tool_will_touch(tmp_path: Path) -> None:
    # The file tools accept `~/x`, absolute paths inside the workspace and symlinks that stay in
    # it; a rule on `secrets/*` must not be dodged by spelling the same file another way.
    ws = tmp_path / "ws"
    (ws / "secrets").mkdir(parents=True)
    (ws / "s").symlink_to(ws / "secrets")
    autonomy = {"rules": [{"action": "deny", "tool": "write_file", "arguments": {"path": "secrets/*"}}]}
    spellings = ["secrets/k", "~/secrets/k", f"{ws}/secrets/k", "s/k", "./x/../secrets/k"]
    script = [*(Call(tc(f"w{i}", "write_file", path=p)) for i, p in enumerate(spellings)),
              Call(tc("ok", "write_file", path="src/a.py")), Stop("tool_use")]
    w = World([script], autonomy=autonomy)
    w.actor.workspace = ws
    async with w:
        await w.send()
        events = await w.idle()
    got = {r["tool_call_id"]: r for r in results(events)}
    denied = {i for i, r in got.items() if r["content"].startswith("error[denied]")}
    assert denied == {f"w{i}" for i in range(len(spellings))}, {i: r["content"] for i, r in got.items()}
    assert {name for kind, name, _ in w.journal if kind == "start"} == {"src/a.py"}
