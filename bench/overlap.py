"""Streaming tool execution against the sequential baseline, on a standard tool-heavy turn.

The turn: the model streams a first message for 2.0 s (text at ~80 tokens/s) and, while it
talks, asks for five read-only calls (at 0.3, 0.6, 0.9, 1.2 and 1.5 s) that take 0.25 to 0.8 s
each: real `/bin/sh` processes through the built-in shell machinery (sandbox, process groups,
output capture), spending the time a code search or a test listing takes, then printing a
workspace file. After the results the model streams a 0.6 s answer. Only the model is scripted
(`bench/_scripted.py`); the host, the actor, the SQLite event log and the tools are the real ones.

* streaming: read-only calls start the moment they are complete in the stream, concurrently
  (the runtime's default);
* sequential: the baseline most agents implement: wait for the whole message, then run the calls
  one by one (`autonomy.streamingStart: off`, `limits.maxRunningTools: 1`), same process, same run.

Wall time W is from submitting the user message to the turn's closing `status idle` event. Over
that window: model-busy is the union of the model's streams (request to `MessageCompleted`),
tool-busy the union of the calls' runs (start to result). `model_idle_fraction` = 1 - model-busy/W:
the share of the turn in which the model is not generating because the turn waits for something
else (tools, commits, the runtime); `tool_idle_fraction` = 1 - tool-busy/W; `dead_fraction` = the
share in which neither works. The check `idle_fraction` is the model-idle fraction of the
streaming run: the turn's critical path is the model, and every moment it waits is added latency.

Run: .venv/bin/python bench/overlap.py   (about 25 s; prints one JSON document)
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scripted import Call, Say, ScriptedProvider, Script, Stop  # noqa: E402

from agent_runtime.agent.actor import ActorConfig  # noqa: E402
from agent_runtime.events import Event  # noqa: E402
from agent_runtime.host import Host, HostConfig  # noqa: E402
from agent_runtime.manifest import make_manifest  # noqa: E402
from agent_runtime.messages import ToolCall  # noqa: E402
from agent_runtime.providers.base import ModelRequest  # noqa: E402
from agent_runtime.tools.base import Tool, ToolContext, ToolOutput, ToolSpec  # noqa: E402
from agent_runtime.tools.shell import ShellTool  # noqa: E402
from agent_runtime.tools.registry import ToolRegistry, default_registry  # noqa: E402

REPEATS = 4
STREAM_S = 2.0
ANSWER_S = 0.6
CHUNK_S = 0.05
CALLS = ((0.3, 0.25), (0.6, 0.6), (0.9, 0.4), (1.2, 0.8), (1.5, 0.35))  # (emitted at, duration)


class Search(Tool):
    """A read-only tool with a realistic duration: a real shell process that works for `seconds`
    (as a code search over a large tree would) and prints a workspace file."""

    spec = ToolSpec(
        "search", "Search the workspace.",
        {"type": "object", "properties": {"query": {"type": "string"}, "seconds": {"type": "number"}},
         "required": ["query", "seconds"], "additionalProperties": False},
        read_only=True, idempotent=True,
    )

    def __init__(self) -> None:
        self.shell = ShellTool()
        self.intervals: list[tuple[float, float]] = []

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        t0 = time.perf_counter()
        try:
            return await self.shell.run({"command": f"sleep {args['seconds']}; cat notes.txt"}, ctx)
        finally:
            self.intervals.append((t0, time.perf_counter()))


def script(request: ModelRequest, n: int) -> Script:
    if any(m.role == "tool" for m in request.messages[-len(CALLS):]):
        return [*(Say("The results show what I need. ", after_s=CHUNK_S) for _ in range(int(ANSWER_S / CHUNK_S))),
                Stop("end_turn")]
    steps: list[Any] = []
    pending = sorted(CALLS)
    t = 0.0
    i = 0
    while t < STREAM_S - 1e-9:
        t += CHUNK_S
        steps.append(Say("Looking through the code now, ", after_s=CHUNK_S))
        while pending and pending[0][0] <= t + 1e-9:
            _, seconds = pending.pop(0)
            steps.append(Call(ToolCall(f"call_{n}_{i}", "search", {"query": f"q{i}", "seconds": seconds})))
            i += 1
    steps.append(Stop("tool_use"))
    return steps


def union(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    total, end = 0.0, lo
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


class IdleWatch:
    """A hub subscriber noting when the turn's closing `status idle` is committed."""

    def __init__(self) -> None:
        self.idle = asyncio.Event()
        self.at = 0.0

    def offer_event(self, event: Event) -> bool:
        if event.kind == "status" and event.data.get("state") == "idle":
            self.at = time.perf_counter()
            self.idle.set()
        return True

    def offer_delta(self, message_id: str, text: str, offset: int) -> bool:
        return True

    def overflowed(self) -> None:
        raise AssertionError("never full")


async def one_turn(mode: str, data_dir: Path, run: int) -> dict[str, Any]:
    provider = ScriptedProvider(script)
    search = Search()
    tools = default_registry()
    registry = ToolRegistry([search, *(tools.get(n) for n in tools.names())])
    spec: dict[str, Any] = {}
    if mode == "sequential":
        spec |= {"autonomy": {"streamingStart": "off"}, "limits": {"maxRunningTools": 1}}
    async with Host(HostConfig(data_dir=data_dir, actor=ActorConfig(idle_timeout_s=60)), provider, registry) as host:
        manifest = make_manifest(f"{mode}-{run}", **spec)
        # `spec.tools` only names built-ins; the bench's own tool is added without re-validation.
        manifest = manifest.model_copy(update={"spec": manifest.spec.model_copy(update={"tools": ("search", "read_file")})})
        await host.apply(manifest)
        actor = await host.wake(manifest.key)
        (actor.workspace / "notes.txt").write_text("TODO: profile the parser\n")
        watch = IdleWatch()
        host.subscribe(manifest.key, watch)
        t0 = time.perf_counter()
        await host.user_message(manifest.key, "m1", "find where the parser is slow")
        await asyncio.wait_for(watch.idle.wait(), 60)
        t1 = watch.at
        events = await host.read_events(manifest.key, 0)
        host.unsubscribe(manifest.key, watch)
    wall = t1 - t0
    model_busy = union(provider.busy, t0, t1)
    tool_busy = union(search.intervals, t0, t1)
    both = union([*provider.busy, *search.intervals], t0, t1)
    results = [e for e in events if e.kind == "tool_result"]
    assert len(results) == len(CALLS) and not any(e.data["is_error"] for e in results), [e.data for e in results]
    assert events[-1].data == {"state": "idle", "reason": "end_turn"}
    return {
        "mode": mode,
        "wall_s": wall,
        "model_busy_s": model_busy,
        "tool_busy_s": tool_busy,
        "model_idle_fraction": 1 - model_busy / wall,
        "tool_idle_fraction": 1 - tool_busy / wall,
        "dead_fraction": 1 - both / wall,
        "early_starts": sum(1 for e in events if e.kind == "tool_call" and e.data.get("early")),
    }


async def main() -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    runs: dict[str, list[dict[str, Any]]] = {"streaming": [], "sequential": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(REPEATS):
            for mode in ("streaming", "sequential"):  # interleaved: both see the same machine load
                runs[mode].append(await one_turn(mode, Path(tmp) / f"{mode}{r}", r))
    rows = []
    for mode, got in runs.items():
        row: dict[str, Any] = {"mode": mode, "repeats": len(got)}
        for key in ("wall_s", "model_busy_s", "tool_busy_s", "model_idle_fraction", "tool_idle_fraction", "dead_fraction"):
            row[key] = round(statistics.median(g[key] for g in got), 4)
        row["early_starts"] = got[0]["early_starts"]
        rows.append(row)
    streaming, sequential = rows
    ratio = round(streaming["wall_s"] / sequential["wall_s"], 4)
    checks = [
        {"name": "idle_fraction", "value": streaming["model_idle_fraction"], "target": "<= 0.05",
         "met": streaming["model_idle_fraction"] <= 0.05},
        {"name": "wall_vs_sequential", "value": ratio, "target": "<= 0.65", "met": ratio <= 0.65},
    ]
    return {"bench": "overlap", "results": rows, "checks": checks,
            "turn": {"stream_s": STREAM_S, "answer_s": ANSWER_S, "calls": [{"at_s": a, "duration_s": d} for a, d in CALLS]}}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
