"""Per-turn plumbing cost of the provider adapter path, with the naive baseline in the same run.

One "turn" here is one streamed model call as the actor makes it: encode the canonical request,
POST it over the shard's pooled aiohttp session, parse the SSE bytes (native parser), decode them
into canonical events and assemble the message (text + 2 parallel tool calls with fragmented
arguments). The request carries a mid-conversation history (a user task, two tool rounds).

The mock provider servers run in a separate process (`python -m mock_providers`) with
zero model latency, so their CPU is not ours. "Our CPU" per turn = the CPU of the turn's own coroutine
steps (`time.thread_time()` around every resumption of the coroutine: request building, parsing,
decoding) + an equal share of the process CPU no coroutine step accounts for (the event loop's socket
reads and aiohttp's HTTP parsing, GC). The shares sum to the process CPU (`time.process_time()`,
all threads) of the measured window. p50/p99 are over the turns of that window.

Rows: our path with agents spread over the four APIs (Anthropic, OpenAI Chat, OpenAI Responses,
Gemini) at 1, 100 and 1,000 concurrent agents; our path on OpenAI Chat only at 1,000 agents; and the
naive baseline: the official `openai` SDK, one `AsyncOpenAI` client per agent (its own httpx pool),
at the same concurrency.

Run: .venv/bin/python bench/provider_path.py   (prints one JSON document)
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_runtime.messages import AssistantMessage, ToolCall, ToolResult, ToolResultMessage, UserMessage  # noqa: E402
from agent_runtime.metrics import percentile  # noqa: E402
from agent_runtime.providers.base import MessageCompleted, ModelRequest, TextDelta, ToolCallCompleted  # noqa: E402
from agent_runtime.providers.http import HttpProvider, ProviderSession, Secret  # noqa: E402
from agent_runtime.providers.openai_chat import build_body  # noqa: E402
from agent_runtime.providers.registry import HTTP_PROVIDERS, ProviderSettings, codec_for  # noqa: E402
from agent_runtime.tools.base import ToolSpec  # noqa: E402

MODELS = {"anthropic": "claude-sonnet-5", "openai": "gpt-5.1-mini", "openai-responses": "gpt-5.1-mini",
          "gemini": "gemini-2.5-flash"}
TOOLS = [ToolSpec(n, f"the {n} tool", {"type": "object", "properties": {"path": {"type": "string"}}})
         for n in ("shell", "read_file", "write_file", "list_dir")]
HISTORY = [
    UserMessage("task: write fib.py and check it"),
    AssistantMessage("Looking first.", (ToolCall("call_0_0", "list_dir", {"path": "."}),), "tool_use"),
    ToolResultMessage(ToolResult("call_0_0", "list_dir", "README.md\nsetup.cfg\n")),
    AssistantMessage("Writing fib.py.", (ToolCall("call_0_1", "write_file", {"path": "fib.py", "content": "print(1)\n"}),),
                     "tool_use"),
    ToolResultMessage(ToolResult("call_0_1", "write_file", "wrote 9 bytes")),
]
SYSTEM = "You are a careful coding agent. Work in your workspace and check what you write."
TURNS_TOTAL = {1: 300, 100: 2000, 1000: 5000}


class Metered:
    """Awaits a coroutine and adds up the thread CPU of each of its steps (resumption → suspension)."""

    def __init__(self, coro: Any) -> None:
        self.coro = coro
        self.cpu = 0.0

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value, exc = self.coro, None, None
        while True:
            t0 = time.thread_time()
            try:
                fut = coro.throw(exc) if exc is not None else coro.send(value)
            except StopIteration as stop:
                self.cpu += time.thread_time() - t0
                return stop.value
            self.cpu += time.thread_time() - t0
            try:
                value, exc = (yield fut), None
            except BaseException as e:  # noqa: BLE001 - forwarded into the coroutine
                value, exc = None, e


# A long conversation (200 earlier messages) before the same last steps: what request encoding costs deep in.
DEEP_HISTORY = [
    m for i in range(40) for m in (
        UserMessage(f"task {i}: write fib.py and check it"),
        AssistantMessage("Looking first.", (ToolCall(f"call_{i}_0", "list_dir", {"path": "."}),), "tool_use"),
        ToolResultMessage(ToolResult(f"call_{i}_0", "list_dir", "README.md\nsetup.cfg\nfib.py\n" * 4)),
        AssistantMessage("Writing fib.py.", (ToolCall(f"call_{i}_1", "write_file", {"path": "fib.py", "content": "print(1)\n" * 8}),),
                         "tool_use"),
        ToolResultMessage(ToolResult(f"call_{i}_1", "write_file", "wrote 72 bytes")),
    )
][:195] + HISTORY


def request(api: str, agent: int, history: list[Any] = HISTORY) -> ModelRequest:
    return ModelRequest(model=MODELS[api], system=SYSTEM, messages=history, tools=TOOLS, max_tokens=1024,
                        agent_key=f"bench/agent-{agent}", provider=api)


async def our_turn(provider: HttpProvider, req: ModelRequest) -> int:
    """What `ModelCalls.stream` (agent_runtime.agent.model_call) does with the stream. Returns the number of tool calls."""
    parts: list[str] = []
    calls: list[ToolCall] = []
    done = False
    async for item in provider.stream(req):
        if isinstance(item, TextDelta):
            parts.append(item.text)
        elif isinstance(item, ToolCallCompleted):
            calls.append(item.call)
        elif isinstance(item, MessageCompleted):
            done = True
    message = AssistantMessage("".join(parts), tuple(calls))
    assert done and len(message.tool_calls) == 2, message
    return len(calls)


async def sdk_turn(client: openai.AsyncOpenAI, body: dict[str, Any]) -> int:
    """The naive path: the official SDK's own streaming and accumulation."""
    async with client.chat.completions.stream(model=body["model"], messages=body["messages"], tools=body["tools"],
                                              stream_options={"include_usage": True}) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert len(calls) == 2
    return len(calls)


async def measure(agents: int, turn_for: Callable[[int], Callable[[], Awaitable[int]]],
                  counters: Callable[[], tuple[int, int]]) -> dict[str, Any]:
    per_agent = max(1, TURNS_TOTAL[agents] // agents)
    turns = [turn_for(i) for i in range(agents)]
    await asyncio.gather(*(t() for t in turns))  # warm-up: connections open, caches warm
    gc.collect()
    cpu: list[float] = []
    bytes0, events0 = counters()

    async def agent(i: int) -> None:
        for _ in range(per_agent):
            m = Metered(turns[i]())
            await m
            cpu.append(m.cpu)

    p0, w0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(agent(i) for i in range(agents)))
    process_cpu, wall = time.process_time() - p0, time.perf_counter() - w0
    bytes1, events1 = counters()
    n = len(cpu)
    share = max(0.0, process_cpu - sum(cpu)) / n
    per_turn = [c + share for c in cpu]
    return {
        "agents": agents, "turns": n, "wall_s": round(wall, 3),
        "turns_per_s": round(n / wall, 1),
        "turns_per_cpu_s": round(n / process_cpu, 1) if process_cpu else None,
        "turn_cpu_p50_ms": round(percentile(per_turn, 0.5) * 1000, 4),
        "turn_cpu_p99_ms": round(percentile(per_turn, 0.99) * 1000, 4),
        "turn_cpu_mean_ms": round(process_cpu / n * 1000, 4),
        "coroutine_cpu_share": round(sum(cpu) / process_cpu, 3) if process_cpu else None,
        "bytes_per_turn": round((bytes1 - bytes0) / n) if bytes1 else None,
        "events_parsed_per_s": round((events1 - events0) / wall) if events1 else None,
    }


async def start_mock() -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "mock_providers", "--port", "0",
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    return proc, line.strip().rsplit(" ", 1)[-1]


async def main() -> dict[str, Any]:
    proc, url = await start_mock()
    rows: list[dict[str, Any]] = []
    try:
        session = ProviderSession(limit=2048, limit_per_host=2048)
        settings = ProviderSettings()
        adapters = {api: HttpProvider(codec_for(api, settings), session,
                                      {None: url + "/v1" if api.startswith("openai") else url}, Secret("bench-key"))
                    for api in HTTP_PROVIDERS}

        def ours(apis: list[str], history: list[Any] = HISTORY) -> Callable[[int], Callable[[], Awaitable[int]]]:
            def turn_for(i: int) -> Callable[[], Awaitable[int]]:
                api = apis[i % len(apis)]
                req = request(api, i, history)
                return lambda: our_turn(adapters[api], req)
            return turn_for

        def our_counters() -> tuple[int, int]:
            return (sum(a.bytes_received for a in adapters.values()), sum(a.events_parsed for a in adapters.values()))

        for agents in (1, 100, 1000):
            row = await measure(agents, ours(list(HTTP_PROVIDERS)), our_counters)
            rows.append({"path": "adapters (4 APIs, one shared session, native SSE)", **row})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        row = await measure(1000, ours(["openai"]), our_counters)
        rows.append({"path": "adapters (OpenAI Chat only)", **row})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        row = await measure(100, ours(list(HTTP_PROVIDERS), DEEP_HISTORY), our_counters)
        rows.append({"path": "adapters (4 APIs), 200-message history", **row})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        await session.aclose()

        for agents in (1, 100, 1000):
            clients: list[openai.AsyncOpenAI] = []

            def sdk(i: int) -> Callable[[], Awaitable[int]]:
                client = openai.AsyncOpenAI(api_key="bench-key", base_url=url + "/v1", max_retries=0, timeout=300.0)
                clients.append(client)
                body = build_body(request("openai", i))
                return lambda: sdk_turn(client, body)

            row = await measure(agents, sdk, lambda: (0, 0))
            rows.append({"path": "naive: official openai SDK, one client per agent (OpenAI Chat)", **row})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            await asyncio.gather(*(c.close() for c in clients))
    finally:
        proc.terminate()
        await proc.wait()

    ours_1000 = rows[2]
    checks = [
        {"name": "turn_cpu_p50_ms_1000_agents", "value": ours_1000["turn_cpu_p50_ms"], "target": "<= 1",
         "met": ours_1000["turn_cpu_p50_ms"] <= 1},
        {"name": "turn_cpu_p99_ms_1000_agents", "value": ours_1000["turn_cpu_p99_ms"], "target": "<= 10",
         "met": ours_1000["turn_cpu_p99_ms"] <= 10},
        {"name": "turns_per_s_1000_agents", "value": ours_1000["turns_per_s"], "target": ">= 1000",
         "met": ours_1000["turns_per_s"] >= 1000},
    ]
    return {"bench": "provider_path", "results": rows, "checks": checks,
            "notes": "turn = one streamed model call; mocks in a separate process (their CPU not counted); "
                     "turns_per_s is wall throughput with the mock process sharing the same 2 cores"}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
