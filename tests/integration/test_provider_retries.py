"""Retries and failure semantics end to end: an actor on the provider router, real HTTP to the mocks,
faults injected by the mock. Durable events are never duplicated or lost by a retry; exhausted retries
leave an `error` event and an agent that answers the next message."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.providers import run_turn  # noqa: E402

from agent_runtime.agent.actor import ActorConfig, AgentActor  # noqa: E402
from agent_runtime.eventlog.memory import MemoryEventLog  # noqa: E402
from agent_runtime.events import Event  # noqa: E402
from agent_runtime.agent.hub import Hub  # noqa: E402
from agent_runtime.manifest import make_manifest  # noqa: E402
from agent_runtime.metrics import Metrics  # noqa: E402
from agent_runtime.providers.registry import ProviderRouter, ProviderSettings, build_router  # noqa: E402
from agent_runtime.providers.simulated import SimulatedProvider  # noqa: E402
from agent_runtime.tools.base import Tool, ToolContext, ToolOutput, ToolSpec  # noqa: E402
from agent_runtime.tools.registry import ToolRegistry  # noqa: E402
from mock_providers.server import Fault, MockServer  # noqa: E402

MODELS = {"anthropic": "claude-sonnet-5", "openai": "gpt-4.1-mini", "openai-responses": "gpt-4.1-mini",
          "gemini": "gemini-2.5-flash"}


class EchoTool(Tool):
    def __init__(self, name: str) -> None:
        self.spec = ToolSpec(name=name, description=name, input_schema={"type": "object"}, read_only=True, idempotent=True)

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        return ToolOutput(f"{self.spec.name} ok")


def router_for(mock: MockServer) -> ProviderRouter:
    settings = ProviderSettings()
    for name in MODELS:
        settings = settings.with_base_url(name, mock.base_url(name))
    env = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o", "GEMINI_API_KEY": "g"}
    return build_router(SimulatedProvider(), settings, environ=env)


def make_actor(log: MemoryEventLog, router: ProviderRouter, provider: str, metrics: Metrics, **config: Any) -> AgentActor:
    return AgentActor(
        manifest=make_manifest("a1", model={"provider": provider, "name": MODELS[provider]}),
        log_=log, workspace=Path("/nonexistent"), hub=Hub(), provider=router,
        tools=ToolRegistry([EchoTool(n) for n in ("shell", "read_file", "write_file", "list_dir")]),
        tool_slots=asyncio.Semaphore(4), metrics=metrics,
        config=ActorConfig(retry_base_s=0.001, **config),
    )


def retries(events: list[Event]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.kind == "status" and e.data.get("state") == "retrying"]


@pytest.mark.parametrize("provider", list(MODELS))
async def test_every_fault_is_retried_and_nothing_durable_is_duplicated(provider: str) -> None:
    faults = ["rate_limit:retry_after_ms=5" if provider != "gemini" else "rate_limit:retry_after=0.005",
              "overloaded", "server_error", "midstream_error", "cut", "malformed"]
    async with MockServer() as mock:
        router = router_for(mock)
        clean_log, faulty_log = MemoryEventLog(), MemoryEventLog()
        clean = make_actor(clean_log, router, provider, Metrics())
        metrics = Metrics()
        faulty = make_actor(faulty_log, router, provider, metrics, model_retries=6)
        for actor in (clean, faulty):
            await actor.start()
        runners = [asyncio.create_task(a.run()) for a in (clean, faulty)]
        await run_turn(clean, "task: write fib", "m1", 1)
        mock.state.faults.extend(Fault.parse(f) for f in faults)
        await run_turn(faulty, "task: write fib", "m1", 1)
        clean_events, faulty_events = await clean_log.read(), await faulty_log.read()
        for r in runners:
            r.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        await router.aclose()
    statuses = retries(faulty_events)
    assert [s["reason"] for s in statuses][:2] and len(statuses) == len(faults)
    assert all(s["provider"] == provider for s in statuses)
    assert statuses[0]["retry_after_s"] == pytest.approx(0.005)
    assert {"stream_cut", "malformed_stream"} <= {s["reason"] for s in statuses}

    def durable(events: list[Event]) -> list[tuple[str, Any]]:
        out = []
        for e in events:
            if e.kind == "assistant_message":
                out.append((e.kind, (e.data["text"], e.data.get("tool_calls"))))
            elif e.kind in ("tool_result", "user_message", "tool_call"):
                out.append((e.kind, e.data.get("name") or e.data.get("text")))
        return out

    # the same conversation as without faults: every retry started again from the last durable event
    assert durable(faulty_events) == durable(clean_events)
    assert faulty_events[-1].data == {"state": "idle", "reason": "end_turn"}
    assert sum(metrics.retries_by.values()) == len(faults) == metrics.model_retries
    usage = [e.data for e in faulty_events if e.kind == "usage" and "attempt" not in e.data]  # completed calls
    assert usage and all(u["output_tokens"] > 0 for u in usage)
    assert faulty.state.input_tokens + faulty.state.cache_read_tokens + faulty.state.cache_write_tokens > 0


async def test_exhausted_retries_record_an_error_and_the_agent_answers_the_next_message() -> None:
    async with MockServer() as mock:
        router = router_for(mock)
        log = MemoryEventLog()
        metrics = Metrics()
        actor = make_actor(log, router, "anthropic", metrics, model_retries=2)
        await actor.start()
        runner = asyncio.create_task(actor.run())
        mock.state.faults.extend(Fault.parse("overloaded") for _ in range(3))
        await run_turn(actor, "task: write fib", "m1", 1)
        events = await log.read()
        assert [e.kind for e in events][-2:] == ["error", "status"]
        assert events[-2].data["code"] == "overloaded_error"
        assert events[-1].data == {"state": "idle", "reason": "error"}
        assert len(retries(events)) == 2
        assert metrics.model_errors_by[("anthropic", "overloaded_error")] == 1
        await run_turn(actor, "task: write fib", "m2", 2)
        after = await log.read()
        assert after[-1].data == {"state": "idle", "reason": "end_turn"}
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await router.aclose()


async def test_the_retry_budget_stops_retrying() -> None:
    async with MockServer() as mock:
        router = router_for(mock)
        log = MemoryEventLog()
        actor = make_actor(log, router, "openai", Metrics(), model_retries=10, retry_budget=2, retry_budget_refill_per_s=0.0)
        await actor.start()
        runner = asyncio.create_task(actor.run())
        mock.state.faults.extend(Fault.parse("server_error") for _ in range(5))
        await run_turn(actor, "task: write fib", "m1", 1)
        events = await log.read()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await router.aclose()
    assert len(retries(events)) == 2
    assert "retry budget" in events[-2].data["message"] and events[-2].kind == "error"


async def test_non_retryable_errors_are_not_retried_and_keys_stay_out_of_events() -> None:
    async with MockServer() as mock:
        settings = ProviderSettings().with_base_url("openai", mock.base_url("openai"))
        mock.state.config = type(mock.state.config)(api_key="sk-right")
        router = build_router(SimulatedProvider(), settings, environ={"OPENAI_API_KEY": "sk-wrong-secret"})
        log = MemoryEventLog()
        actor = make_actor(log, router, "openai", Metrics())
        await actor.start()
        runner = asyncio.create_task(actor.run())
        await run_turn(actor, "hello", "m1", 1)
        events = await log.read()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await router.aclose()
    assert not retries(events)
    assert events[-2].kind == "error" and "401" in events[-2].data["message"]
    assert "sk-wrong-secret" not in repr([e.data for e in events])
    assert "sk-wrong-secret" not in repr(router.providers["openai"].__dict__)


# What each API has reported when a stream breaks after it started: Anthropic the prompt's usage at
# message_start, Gemini its usageMetadata on every chunk; OpenAI (both APIs) only at the very end.
REPORTS_USAGE_MIDSTREAM = {"anthropic": True, "gemini": True, "openai": False, "openai-responses": False}


@pytest.mark.parametrize("provider", list(MODELS))
async def test_a_failed_attempt_records_the_usage_its_stream_reported(provider: str) -> None:
    """A stream that breaks after the provider reported usage was billed: its `usage` event
    (attempt "failed") comes with the retry's status, adds to the totals and to /metrics tokens,
    but is not counted as a model call."""
    async with MockServer() as mock:
        router = router_for(mock)
        log = MemoryEventLog()
        metrics = Metrics()
        actor = make_actor(log, router, provider, metrics, model_retries=3)
        await actor.start()
        runner = asyncio.create_task(actor.run())
        mock.state.faults.append(Fault.parse("midstream_error"))
        await run_turn(actor, "hello", "m1", 1)
        events = await log.read()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await router.aclose()
    usage = [e for e in events if e.kind == "usage"]
    failed = [e for e in usage if e.data.get("attempt") == "failed"]
    completed = [e for e in usage if "attempt" not in e.data]
    assert len(completed) == actor.state.model_calls == metrics.model_calls_by[provider]
    if not REPORTS_USAGE_MIDSTREAM[provider]:
        assert failed == []
        return
    assert len(failed) == 1
    retry = next(e for e in events if e.kind == "status" and e.data.get("state") == "retrying")
    assert failed[0].seq == retry.seq - 1  # committed with the retry's status, just before it

    def prompt(d: dict[str, Any]) -> int:
        return int(d["input_tokens"]) + int(d["cache_read_tokens"]) + int(d["cache_write_tokens"])

    # the failed attempt sent the same prompt as the first completed call (the retry)
    assert prompt(failed[0].data) == prompt(completed[0].data) > 0
    assert failed[0].data["cost_units"] > 0
    assert actor.state.input_tokens == sum(int(e.data["input_tokens"]) for e in usage)
    assert metrics.tokens_by[(provider, "input")] == actor.state.input_tokens
