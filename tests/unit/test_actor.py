"""The actor shell over an in-memory log, the simulated model and in-memory tools (no IO)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_runtime.agent.actor import ActorConfig, AgentActor
from agent_runtime.agent.mail import AgentBusy, InterruptMail, UserMail
from agent_runtime.eventlog.memory import MemoryEventLog
from agent_runtime.events import Event, NewEvent
from agent_runtime.agent.hub import Hub
from agent_runtime.manifest import make_manifest
from agent_runtime.metrics import Metrics
from agent_runtime.providers.base import MessageCompleted, ModelRequest, Provider, ProviderError, StreamEvent, TextDelta
from agent_runtime.providers.simulated import SimulatedModelConfig, SimulatedProvider
from agent_runtime.tools.base import Tool, ToolContext, ToolOutput, ToolSpec
from agent_runtime.tools.registry import ToolRegistry
from agent_runtime.messages import Usage


class FakeTool(Tool):
    def __init__(self, name: str) -> None:
        self.spec = ToolSpec(name=name, description=name, input_schema={"type": "object"}, read_only=True, idempotent=True)
        self.calls: list[dict[str, Any]] = []

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        self.calls.append(args)
        return ToolOutput(f"{self.spec.name} ok")


def registry() -> ToolRegistry:
    return ToolRegistry([FakeTool(n) for n in ("shell", "read_file", "write_file", "list_dir")])


class Recorder:
    """A hub subscriber that keeps everything."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.deltas: list[tuple[str, str, int]] = []

    def offer_event(self, event: Event) -> bool:
        self.events.append(event)
        return True

    def offer_delta(self, message_id: str, text: str, offset: int) -> bool:
        self.deltas.append((message_id, text, offset))
        return True

    def overflowed(self) -> None:
        raise AssertionError("never full")


def make_actor(log: MemoryEventLog, provider: Provider | None = None, idle: float = 30.0, **spec: Any) -> AgentActor:
    return AgentActor(
        manifest=make_manifest("a1", **spec),
        log_=log,
        workspace=Path("/nonexistent-workspace"),
        hub=Hub(),
        provider=provider or SimulatedProvider(SimulatedModelConfig(seed=1, chat_probability=0.0)),
        tools=registry(),
        tool_slots=asyncio.Semaphore(4),
        metrics=Metrics(),
        config=ActorConfig(idle_timeout_s=idle, retry_base_s=0.001),
    )


async def send(actor: AgentActor, client_id: str, text: str) -> tuple[int, bool]:
    reply: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
    actor.submit(UserMail(client_id, text, reply))
    return await reply


async def until_idle(actor: AgentActor, turns: int) -> None:
    for _ in range(2000):
        if actor.state.turns >= turns and not actor.state.running:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"agent did not finish: {actor.state.snapshot()}")


async def test_a_task_runs_through_tools_to_a_final_answer_and_clients_see_it_in_order() -> None:
    log = MemoryEventLog()
    actor = make_actor(log)
    rec = Recorder()
    actor.hub.subscribe(rec)
    await actor.start()
    runner = asyncio.create_task(actor.run())
    seq, dup = await send(actor, "m1", "task: write fib.py")
    assert (seq, dup) == (1, False)
    await until_idle(actor, 1)
    events = await log.read()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.seq for e in rec.events] == [e.seq for e in events]
    kinds = [e.kind for e in events]
    assert kinds[0] == "user_message" and kinds[-1] == "status"
    assert kinds.count("tool_result") == kinds.count("tool_call") >= 3
    assert "usage" in kinds and events[-1].data == {"state": "idle", "reason": "end_turn"}
    final = [e for e in events if e.kind == "assistant_message"][-1]
    streamed = "".join(t for mid, t, _ in rec.deltas if mid == final.data["id"])
    assert streamed == final.data["text"]
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def test_same_client_id_is_applied_once() -> None:
    log = MemoryEventLog()
    actor = make_actor(log)
    await actor.start()
    runner = asyncio.create_task(actor.run())
    first = await send(actor, "same", "task: write sort.py")
    await until_idle(actor, 1)
    again = await send(actor, "same", "task: write sort.py")
    assert first == (1, False) and again == (1, True)
    assert sum(e.kind == "user_message" for e in await log.read()) == 1
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def test_interrupt_stops_a_streaming_turn_and_keeps_history() -> None:
    log = MemoryEventLog()
    slow = SimulatedProvider(SimulatedModelConfig(seed=1, tokens_per_s=40, ttft_s=0.0, chunk_interval_s=0.02, chat_probability=1.0))
    actor = make_actor(log, slow)
    rec = Recorder()
    actor.hub.subscribe(rec)
    await actor.start()
    runner = asyncio.create_task(actor.run())
    await send(actor, "m1", "tell me something long")
    for _ in range(500):
        if rec.deltas:
            break
        await asyncio.sleep(0.005)
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    actor.submit(InterruptMail(done))
    assert await done is True
    events = await log.read()
    assert events[-1].data == {"state": "idle", "reason": "interrupted"}
    partial = [e for e in events if e.kind == "assistant_message"]
    assert partial and partial[-1].data["stop_reason"] == "interrupted"
    assert partial[-1].data["text"].startswith(rec.deltas[0][1])
    # the agent still works after an interrupt
    await send(actor, "m2", "and now?")
    await until_idle(actor, 2)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def test_a_restarted_actor_resumes_the_interrupted_turn_by_itself() -> None:
    log = MemoryEventLog()
    await log.open()
    # A crash after the user message was acknowledged, before the model answered.
    await log.append([NewEvent("user_message", {"id": "m1", "text": "task: write primes.py", "tokens": 5, "deferred": False}, "m1"),
                      NewEvent("status", {"state": "running", "turn": 1})])
    actor = make_actor(log)
    await actor.start()
    assert actor.state.running
    runner = asyncio.create_task(actor.run())
    await until_idle(actor, 1)
    events = await log.read()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.kind == "user_message" for e in events) == 1
    assert events[-1].data["reason"] == "end_turn"
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def test_idle_actor_hibernates_with_a_snapshot_and_wakes_with_the_same_state() -> None:
    log = MemoryEventLog()
    actor = make_actor(log, idle=0.05)
    await actor.start()
    runner = asyncio.create_task(actor.run())
    await send(actor, "m1", "task: write fib.py")
    await until_idle(actor, 1)
    await asyncio.wait_for(runner, 5)  # returns by itself: hibernated
    assert actor.closing and actor.closed.is_set()
    snap = await _latest_snapshot(log)
    assert snap is not None and snap[0] == actor.state.seq
    again = make_actor(log)
    await again.start()
    assert again.state.snapshot() == actor.state.snapshot()
    assert again.state.messages == actor.state.messages
    await again.log.close()


async def _latest_snapshot(log: MemoryEventLog) -> tuple[int, dict[str, Any]] | None:
    await log.open()
    try:
        return await log.latest_snapshot()
    finally:
        await log.close()


class Flaky(Provider):
    """Fails `failures` times (retryable or not), then answers."""

    name = "flaky"

    def __init__(self, failures: int, retryable: bool) -> None:
        self.failures = failures
        self.retryable = retryable
        self.calls = 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ProviderError("overloaded", retryable=self.retryable, code="overloaded")
        yield TextDelta("fine")
        yield MessageCompleted("end_turn", Usage(3, 1))


@pytest.mark.parametrize(("failures", "retryable", "reason"), [(2, True, "end_turn"), (1, False, "error"), (9, True, "error")])
async def test_provider_failures_are_retried_then_recorded(failures: int, retryable: bool, reason: str) -> None:
    log = MemoryEventLog()
    actor = make_actor(log, Flaky(failures, retryable))
    await actor.start()
    runner = asyncio.create_task(actor.run())
    await send(actor, "m1", "hi")
    await until_idle(actor, 1)
    events = await log.read()
    assert events[-1].data["reason"] == reason
    retries = [e for e in events if e.kind == "status" and e.data.get("state") == "retrying"]
    assert len(retries) == (min(failures, 3) if retryable else 0)
    if reason == "error":
        assert any(e.kind == "error" and e.data["code"] == "overloaded" for e in events)
        await send(actor, "m2", "again")  # the agent waits for the next message instead of dying
        assert actor.state.seq > events[-1].seq
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def test_full_mailbox_is_backpressure_not_loss() -> None:
    actor = make_actor(MemoryEventLog())
    loop = asyncio.get_running_loop()
    for i in range(actor.config.mailbox_size):
        actor.submit(UserMail(f"m{i}", "x", loop.create_future()))
    with pytest.raises(AgentBusy):
        actor.submit(UserMail("over", "x", loop.create_future()))


class CutMidStream(Provider):
    """The first attempt streams some text, then fails (retryable); the second answers."""

    name = "cut"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        if self.calls == 1:
            yield TextDelta("Let me think about ")
            raise ProviderError("stream cut", retryable=True, code="stream_cut")
        yield TextDelta("The answer is 42.")
        yield MessageCompleted("end_turn", Usage(3, 4))


async def test_a_retried_stream_gets_a_new_message_id_so_clients_drop_the_failed_text() -> None:
    log = MemoryEventLog()
    actor = make_actor(log, CutMidStream())
    rec = Recorder()
    actor.hub.subscribe(rec)
    await actor.start()
    runner = asyncio.create_task(actor.run())
    await send(actor, "m1", "hi")
    await until_idle(actor, 1)
    final = [e for e in await log.read() if e.kind == "assistant_message"][-1]
    ids = [mid for mid, _, _ in rec.deltas]
    assert len(set(ids)) == 2 and ids[-1] == final.data["id"] != ids[0]
    assert "".join(t for mid, t, _ in rec.deltas if mid == final.data["id"]) == final.data["text"] == "The answer is 42."
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
