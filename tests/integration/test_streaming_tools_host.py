"""Streaming tool execution through the real host: SQLite logs, the built-in tools on real files
and processes, a scripted model. An interrupt kills a running command's processes; a message cut
by `max_tokens` never runs its side effects; fifty file reads run concurrently on the loop and the
small IO pool, without a thread per call."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from agent_runtime.agent.actor import ActorConfig
from agent_runtime.host import Host, HostConfig
from agent_runtime.manifest import make_manifest
from agent_runtime.messages import ToolCall
from agent_runtime.tools.registry import default_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _scripted import Call, Hang, Say, ScriptedProvider, Stop  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from helpers.procs import processes_with  # noqa: E402

pytestmark = [pytest.mark.timeout(60)]


async def run_turn(tmp_path: Path, scripts: Any, **spec: Any) -> tuple[Host, str, ScriptedProvider]:
    provider = ScriptedProvider(scripts)
    host = Host(HostConfig(data_dir=tmp_path / "data", actor=ActorConfig(idle_timeout_s=60)), provider, default_registry())
    await host.__aenter__()
    manifest = make_manifest("a1", **spec)
    await host.apply(manifest)
    return host, manifest.key, provider


async def wait_idle(host: Host, key: str, turns: int = 1) -> list[Any]:
    for _ in range(3000):
        actor = host.get(key).actor
        if actor is not None and actor.state.turns >= turns and not actor.state.running:
            return await host.read_events(key, 0)
        await asyncio.sleep(0.01)
    raise AssertionError("turn did not end")


async def test_interrupt_kills_a_running_commands_processes_and_the_agent_goes_on(tmp_path: Path) -> None:
    marker = f"91.{os.getpid()}"  # in the cmdline of the shell and of both sleeps
    script = [Call(ToolCall("s1", "shell", {"command": f"sleep {marker} & sleep {marker}; echo never"})), Stop("tool_use")]
    host, key, _ = await run_turn(tmp_path, [script])
    try:
        await host.user_message(key, "m1", "run it")
        for _ in range(500):
            if len(processes_with(marker)) >= 3:
                break
            await asyncio.sleep(0.01)
        assert len(processes_with(marker)) >= 3
        assert await host.interrupt(key)
        for _ in range(500):  # SIGKILLed before the interrupt returned; exiting takes a moment under load
            if not processes_with(marker):
                break
            await asyncio.sleep(0.01)
        assert processes_with(marker) == []
        events = await host.read_events(key, 0)
        result = next(e for e in events if e.kind == "tool_result")
        assert result.data["is_error"] and "interrupted" in result.data["content"]
        await host.user_message(key, "m2", "and now?")
        events = await wait_idle(host, key, 2)
        assert events[-1].data == {"state": "idle", "reason": "end_turn"}
    finally:
        await host.__aexit__(None, None, None)


async def test_max_tokens_never_runs_the_side_effect_and_keeps_the_early_read(tmp_path: Path) -> None:
    script = [Call(ToolCall("r1", "read_file", {"path": "notes.txt"})),
              Call(ToolCall("s1", "shell", {"command": "touch side-effect"})),
              Say("and then I would", after_s=0.05), Stop("max_tokens")]
    host, key, _ = await run_turn(tmp_path, [script])
    try:
        actor = await host.wake(key)
        (actor.workspace / "notes.txt").write_text("hello\n")
        await host.user_message(key, "m1", "go")
        events = await wait_idle(host, key)
        assert not (actor.workspace / "side-effect").exists()
        results = {e.data["tool_call_id"]: e.data for e in events if e.kind == "tool_result"}
        assert results["r1"]["content"].startswith("hello\n[version: v-") and results["r1"]["incomplete_message"]
        assert results["s1"]["content"].startswith("error[cancelled]")
        assert events[-1].data == {"state": "idle", "reason": "max_tokens"}
    finally:
        await host.__aexit__(None, None, None)


async def test_a_read_after_a_write_in_one_message_reads_what_was_written(tmp_path: Path) -> None:
    # Real files: the read is complete mid-stream, but a write comes before it in the message.
    script = [Call(ToolCall("r0", "read_file", {"path": "a.txt"})),
              Call(ToolCall("w1", "write_file", {"path": "a.txt", "content": "new\n"})),
              Call(ToolCall("r1", "read_file", {"path": "a.txt"})),
              Call(ToolCall("s1", "shell", {"command": "echo more >> a.txt"})),
              Call(ToolCall("r2", "read_file", {"path": "a.txt"})),
              Say("reading it back", after_s=0.05), Stop("tool_use")]
    host, key, _ = await run_turn(tmp_path, [script])
    try:
        actor = await host.wake(key)
        (actor.workspace / "a.txt").write_text("old\n")
        await host.user_message(key, "m1", "go")
        events = await wait_idle(host, key)
        results = {e.data["tool_call_id"]: e.data["content"] for e in events if e.kind == "tool_result"}
        assert results["r0"].startswith("old\n[version: ")
        assert results["r1"].startswith("new\n[version: ")
        assert results["r2"].startswith("new\nmore\n[version: ")
        assert [e.data["tool_call_id"] for e in events if e.kind == "tool_result"] == ["r0", "w1", "r1", "s1", "r2"]
    finally:
        await host.__aexit__(None, None, None)


async def test_fifty_file_reads_run_concurrently_without_a_thread_per_call(tmp_path: Path) -> None:
    calls = [Call(ToolCall(f"r{i}", "read_file", {"path": f"f{i}.txt"})) for i in range(50)]
    host, key, _ = await run_turn(tmp_path, [[Say("reading"), *calls, Stop("tool_use")]])
    try:
        actor = await host.wake(key)
        for i in range(50):
            (actor.workspace / f"f{i}.txt").write_text(f"file {i}\n")
        threads_before = threading.active_count()
        peak = threads_before
        await host.user_message(key, "m1", "read them all")
        while True:
            peak = max(peak, threading.active_count())
            a = host.get(key).actor
            if a is not None and a.state.turns >= 1 and not a.state.running:
                break
            await asyncio.sleep(0.001)
        events = await host.read_events(key, 0)
        contents = [e.data["content"].split("\n")[0] for e in events if e.kind == "tool_result"]
        assert contents == [f"file {i}" for i in range(50)]
        assert sum(1 for e in events if e.kind == "tool_call" and e.data.get("early")) == 50
        # at most the small fixed pools (tool IO, SQLite) start, however many calls run
        assert peak <= threads_before + host.config.tool_io_threads + host.config.sqlite_threads
    finally:
        await host.__aexit__(None, None, None)


async def test_host_exit_waits_for_the_tool_io_pool_without_blocking_the_loop(tmp_path: Path) -> None:
    # A file-IO job still running when the host closes: the host waits for it, but off the loop
    # (other hosts' agents, the server, share that loop). Here only the loop can release the job.
    host = Host(HostConfig(data_dir=tmp_path / "data"), ScriptedProvider(), default_registry())
    await host.__aenter__()
    gate, running = threading.Event(), threading.Event()
    released_by: list[str] = []

    def job() -> bool:
        running.set()
        return gate.wait(20)

    pending = host.tool_io.submit(job)
    while not running.is_set():
        await asyncio.sleep(0.005)

    async def release() -> None:
        await asyncio.sleep(0.05)  # runs only if the loop is free while the host exits
        released_by.append("loop")
        gate.set()

    fallback = threading.Timer(5.0, lambda: (released_by.append("fallback thread"), gate.set()))
    fallback.start()
    releaser = asyncio.create_task(release())
    try:
        await host.__aexit__(None, None, None)
    finally:
        fallback.cancel()
        gate.set()
    assert released_by[:1] == ["loop"]
    assert pending.done() and pending.result() is True  # the exit waited for the job
    await releaser
