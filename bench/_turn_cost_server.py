"""Server side of bench/turn_cost.py, run as its own process so its CPU and writes can be read
from /proc/<pid>. Two servers with the same model and tools:

- `ours`: the real standalone runtime (per-agent SQLite event log, deltas to clients);
- `naive`: the common baseline — after every turn, rewrite the whole history into SQLite and send
  the whole transcript to the client.

Tools are in-memory (fixed ~1 KB outputs) so that the only file writes are the stores' own.
Usage: _turn_cost_server.py ours|naive DATA_DIR  (prints the URL, then serves until killed)
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from agent_runtime.listen import bound_port
from agent_runtime.messages import AssistantMessage, ToolResult, ToolResultMessage, UserMessage, encode_message
from agent_runtime.providers.base import MessageCompleted, ModelRequest, TextDelta, ToolCallCompleted
from agent_runtime.providers.simulated import SimulatedModelConfig, SimulatedProvider
from agent_runtime.standalone import ServerConfig, serve
from agent_runtime.tools.base import Tool, ToolContext, ToolOutput, ToolSpec
from agent_runtime.tools.registry import ToolRegistry

MODEL = SimulatedModelConfig(seed=3, chat_probability=0.0, run_probability=0.5)
OUTPUT = "\n".join(f"line {i}: some tool output that an agent would read" for i in range(20))


class MemoryTool(Tool):
    def __init__(self, name: str) -> None:
        self.spec = ToolSpec(name=name, description=name, input_schema={"type": "object"}, read_only=True, idempotent=True)

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        return ToolOutput(OUTPUT)


def tools() -> ToolRegistry:
    return ToolRegistry([MemoryTool(n) for n in ("shell", "read_file", "write_file", "list_dir")])


async def run_ours(data_dir: Path) -> None:
    config = ServerConfig(data_dir=data_dir, port=0, auth=False, model=MODEL)
    async with serve(config, provider=SimulatedProvider(MODEL), tools=tools()) as running:
        print(running.url, flush=True)
        await asyncio.Event().wait()


async def run_naive(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data_dir / "naive.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS conversations (agent TEXT PRIMARY KEY, history BLOB NOT NULL)")
    provider = SimulatedProvider(MODEL)
    registry = tools()
    histories: dict[str, list[Any]] = {}

    async def ws(request: web.Request) -> web.WebSocketResponse:
        agent = request.match_info["name"]
        sock = web.WebSocketResponse(max_msg_size=0)
        await sock.prepare(request)
        history = histories.setdefault(agent, [])
        async for msg in sock:
            frame = json.loads(msg.data)
            if frame.get("type") != "user_message":
                continue
            history.append(UserMessage(frame["text"]))
            while True:
                request_ = ModelRequest("sim", "", history, registry.specs(), 4096, agent)
                text, calls = [], []
                async for item in provider.stream(request_):
                    if isinstance(item, TextDelta):
                        text.append(item.text)
                    elif isinstance(item, ToolCallCompleted):
                        calls.append(item.call)
                    elif isinstance(item, MessageCompleted):
                        pass
                history.append(AssistantMessage("".join(text), tuple(calls)))
                if not calls:
                    break
                for call in calls:
                    history.append(ToolResultMessage(ToolResult(call.id, call.name, OUTPUT)))
            body = json.dumps([encode_message(m) for m in history])
            db.execute("INSERT OR REPLACE INTO conversations VALUES (?, ?)", (agent, body))
            await sock.send_str(json.dumps({"type": "transcript", "messages": json.loads(body)}))
        return sock

    app = web.Application()
    app.router.add_get("/v1/agents/{namespace}/{name}/ws", ws)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = bound_port(site, 0)
    print(f"http://127.0.0.1:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        db.close()


if __name__ == "__main__":
    mode, folder = sys.argv[1], Path(sys.argv[2])
    asyncio.run(run_ours(folder) if mode == "ours" else run_naive(folder))
