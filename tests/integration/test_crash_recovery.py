"""Crash recovery with a real server process, real SQLite files and real sockets.

The server (`helpers/slow_server.py`: the standalone server with a paced simulated model, so a turn
lasts a few seconds) runs as a child process. Twenty agents get a coding task each (over HTTP, two
over the WebSocket protocol, and those two a second message mid-turn, which is deferred), a few
clients watch over WebSockets, and while the turns are in flight the process is killed with
SIGKILL: no cleanup code runs.

Then, judged from the files alone (sqlite3, read-only): every acknowledged message and every
event a client saw is on disk, and each log is gap-free. A restart on the same data dir, with no
new message, finishes the interrupted turns by itself: every agent ends `idle` with reason
`end_turn`, each tool call announced and answered once, the pre-crash history unchanged, no
duplicated user message. Resending a message id after the restart is acknowledged as a duplicate
at its original seq and starts nothing.

`test_kill_during_tool_run` kills the server while tools are running (slow `wc`/`python3` shims on
the server's PATH), the one window where a resumed turn re-runs tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.logcheck import Row, assert_gap_free, last_status, read_events, turn_problems  # noqa: E402
from helpers.server_proc import ServerProcess  # noqa: E402

from agent_runtime.events import Event  # noqa: E402
from agent_runtime.manifest import API_VERSION  # noqa: E402
from agent_runtime.messages import AssistantMessage, UserMessage  # noqa: E402
from agent_runtime.providers.simulated import PROGRAMS  # noqa: E402
from agent_runtime.agent.state import AgentState  # noqa: E402

pytestmark = [pytest.mark.timeout(100), pytest.mark.asyncio]

N_AGENTS = 20
WATCHED = 5  # agents 0..4 have a WebSocket client attached from before their task
SENT_OVER_WS = 2  # agents 0..1 get their task over the WebSocket (ack frame), the rest over HTTP
RECOVERY_WAIT_S = 45.0
NAMESPACE = "crash"
FOLLOWUP = "What is in the workspace now?"


def agent_name(i: int) -> str:
    return f"agent-{i:02d}"


def task_text(i: int) -> str:
    program = sorted(PROGRAMS)[i % len(PROGRAMS)]
    return f"task: write {program}.py and check that it works"


def manifests_json(n: int) -> bytes:
    return orjson.dumps([
        {"apiVersion": API_VERSION, "kind": "Agent", "metadata": {"name": agent_name(i), "namespace": NAMESPACE},
         "spec": {"systemPrompt": "You are a careful coding agent.", "limits": {"maxTurns": 12}}}
        for i in range(n)
    ])


def db_path(data_dir: Path, i: int) -> Path:
    return data_dir / "agents" / NAMESPACE / agent_name(i) / "events.db"


class Watcher:
    """A WebSocket client of one agent: hello(cursor), records every event frame and ack it gets."""

    def __init__(self, server: ServerProcess, http: aiohttp.ClientSession, i: int, cursor: int = 0) -> None:
        self.server = server
        self.http = http
        self.i = i
        self.cursor = cursor
        self.events: list[dict[str, Any]] = []
        self.acks: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.welcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Watcher:
        url = f"{self.server.ws_base}/v1/agents/{NAMESPACE}/{agent_name(self.i)}/ws"
        self.ws = await self.http.ws_connect(url, headers=self.server.headers, heartbeat=None)
        await self.ws.send_str(orjson.dumps({"type": "hello", "cursor": self.cursor}).decode())
        self.task = asyncio.create_task(self._read())
        await asyncio.wait_for(asyncio.shield(self.welcome), 10)
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = orjson.loads(msg.data)
                t = frame.get("type")
                if t == "welcome" and not self.welcome.done():
                    self.welcome.set_result(frame)
                elif t == "event":
                    self.events.append(frame)
                elif t == "ack":
                    self.acks.append(frame)
                elif t == "error":
                    self.errors.append(frame)
        except (aiohttp.ClientError, ConnectionResetError):
            pass  # the server was killed under us: what we saw so far is what counts
        finally:
            self.closed.set()
            if not self.welcome.done():
                self.welcome.set_exception(ConnectionError("closed before welcome"))

    async def send(self, client_id: str, text: str) -> dict[str, Any]:
        assert self.ws is not None
        before = len(self.acks)
        await self.ws.send_str(orjson.dumps({"type": "user_message", "id": client_id, "text": text}).decode())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for ack in self.acks[before:]:
                if ack["id"] == client_id:
                    return ack
            assert not self.errors, self.errors
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no ack for {client_id}")

    def saw(self, kind: str, **match: Any) -> bool:
        return any(e["kind"] == kind and all(e["data"].get(k) == v for k, v in match.items()) for e in self.events)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.welcome.done() and not self.welcome.cancelled():
            self.welcome.exception()  # retrieved


async def post_message(server: ServerProcess, http: aiohttp.ClientSession, i: int, client_id: str, text: str) -> dict[str, Any]:
    url = f"{server.url}/v1/agents/{NAMESPACE}/{agent_name(i)}/messages"
    async with http.post(url, json={"id": client_id, "text": text}, headers=server.headers) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return dict(body)


async def create_agents(server: ServerProcess, http: aiohttp.ClientSession, n: int) -> None:
    async with http.post(f"{server.url}/v1/agents", data=manifests_json(n),
                         headers={**server.headers, "Content-Type": "application/json"}) as resp:
        body = await resp.json()
        assert resp.status == 201, body
        assert len(body["applied"]) == n


async def wait_for(predicate: Any, timeout_s: float, what: str, step_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(step_s)


def replay(rows: list[Row]) -> AgentState:
    return AgentState.restore(None, [], [Event(r.seq, r.kind, r.data, r.ts, r.client_id) for r in rows])


def all_logs(data_dir: Path, n: int) -> dict[int, list[Row]]:
    return {i: read_events(db_path(data_dir, i)) for i in range(n)}


def all_finished(data_dir: Path, n: int) -> bool:
    for i in range(n):
        status = last_status(read_events(db_path(data_dir, i)))
        if status is None or status.get("state") != "idle":
            return False
    return True


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def servers() -> Any:
    """Every server started by the test; any still running at the end is killed."""
    started: list[ServerProcess] = []
    yield started
    for s in started:
        s.kill9()


async def test_kill9_mid_turn_then_restart_resumes(tmp_path: Path, http: aiohttp.ClientSession, servers: list[ServerProcess]) -> None:
    data_dir = tmp_path / "data"
    t0 = time.monotonic()
    first = ServerProcess(data_dir, tmp_path, tokens_per_s=30, ttft_s=0.2, name="first")
    servers.append(first)
    await first.start()
    await create_agents(first, http, N_AGENTS)

    watchers = [await Watcher(first, http, i).start() for i in range(WATCHED)]
    client_ids = {i: f"task-{i}-{uuid.uuid4().hex[:8]}" for i in range(N_AGENTS)}
    acked: dict[int, int] = {}

    async def send(i: int) -> None:
        if i < SENT_OVER_WS:
            ack = await watchers[i].send(client_ids[i], task_text(i))
        else:
            ack = await post_message(first, http, i, client_ids[i], task_text(i))
        assert ack["duplicate"] is False and ack["id"] == client_ids[i]
        acked[i] = ack["seq"]

    await asyncio.gather(*(send(i) for i in range(N_AGENTS)))
    assert set(acked) == set(range(N_AGENTS))

    # Mid-flight: every watched agent has finished its first model call (a turn has four). The
    # agents that talk over the WebSocket get a second message now: it is deferred into the turn.
    await wait_for(lambda: all(w.saw("assistant_message") for w in watchers), 20, "the first model answers")
    followups: dict[int, tuple[str, int]] = {}
    for i in range(SENT_OVER_WS):
        fid = f"followup-{i}-{uuid.uuid4().hex[:8]}"
        ack = await watchers[i].send(fid, FOLLOWUP)
        followups[i] = (fid, ack["seq"])
    first.kill9()
    killed_at = time.monotonic() - t0
    for w in watchers:
        await asyncio.wait_for(w.closed.wait(), 10)
        await w.close()

    # --- the files after SIGKILL -----------------------------------------------------------------
    before = all_logs(data_dir, N_AGENTS)
    mid_turn = []
    for i, rows in before.items():
        where = agent_name(i)
        assert_gap_free(rows, where)
        by_seq = {r.seq: r for r in rows}
        ack_row = by_seq.get(acked[i])
        assert ack_row is not None, f"{where}: acknowledged seq {acked[i]} is not on disk (head {len(rows)})"
        assert (ack_row.kind, ack_row.client_id, ack_row.data["text"]) == ("user_message", client_ids[i], task_text(i))
        if i in followups:
            fid, fseq = followups[i]
            row = by_seq.get(fseq)
            assert row is not None and (row.kind, row.client_id, row.data["deferred"]) == ("user_message", fid, True), \
                f"{where}: the acknowledged follow-up at seq {fseq} is not on disk as a deferred message"
        if (last_status(rows) or {}).get("state") == "running":
            mid_turn.append(i)
    for w in watchers:
        where = agent_name(w.i)
        seen = [e["seq"] for e in w.events]
        assert seen == list(range(1, len(seen) + 1)), f"{where}: the client saw seqs {seen}"
        rows = before[w.i]
        assert len(seen) <= len(rows), f"{where}: the client saw seq {len(seen)} but the file ends at {len(rows)}"
        for e in w.events:
            row = rows[e["seq"] - 1]
            assert (row.kind, row.data, row.ts) == (e["kind"], e["data"], e["ts"]), f"{where}: seq {e['seq']} differs"
    # The kill must land mid-turn for most agents, or this test proves nothing.
    assert len(mid_turn) >= N_AGENTS // 2, f"only {len(mid_turn)} agents were mid-turn at the kill"

    # --- restart: no new message; the interrupted turns finish by themselves ----------------------
    second = ServerProcess(data_dir, tmp_path, tokens_per_s=30, ttft_s=0.2, name="second")
    servers.append(second)
    await second.start()
    assert second.agents_at_start == N_AGENTS
    restarted_at = time.monotonic() - t0
    # A watcher reconnects with its cursor and gets exactly what it missed, then the live stream.
    w0_cursor = len(watchers[0].events)
    rewatch = await Watcher(second, http, 0, cursor=w0_cursor).start()

    await wait_for(lambda: all_finished(data_dir, N_AGENTS), RECOVERY_WAIT_S, "every agent idle", step_s=0.25)
    recovered_at = time.monotonic() - t0

    after = all_logs(data_dir, N_AGENTS)
    for i, rows in after.items():
        where = agent_name(i)
        assert_gap_free(rows, where)
        old = before[i]
        assert rows[: len(old)] == old, f"{where}: the pre-crash history changed"
        if i in mid_turn:
            assert len(rows) > len(old), f"{where}: was mid-turn but nothing was appended after the restart"
        users = [(r.seq, r.client_id) for r in rows if r.kind == "user_message"]
        want = [(acked[i], client_ids[i])] + ([followups[i][::-1]] if i in followups else [])
        assert users == want, f"{where}: user messages {users}, want {want}"
        status = last_status(rows)
        assert status == {"state": "idle", "reason": "end_turn"}, f"{where}: last status {status}"
        statuses = [r.data["state"] for r in rows if r.kind == "status"]
        assert statuses == ["running", "idle"], f"{where}: statuses {statuses}"
        assert turn_problems(rows) == [], f"{where}: {turn_problems(rows)}"
        answers = [r for r in rows if r.kind == "assistant_message"]
        assert answers[-1].data["stop_reason"] == "end_turn", answers[-1].data
        conversation = replay(rows).messages
        if i in followups:  # the deferred message joined the conversation and was answered
            joined = [k for k, m in enumerate(conversation) if isinstance(m, UserMessage) and m.text == FOLLOWUP]
            assert joined and any(isinstance(m, AssistantMessage) for m in conversation[joined[0]:]), \
                f"{where}: the deferred follow-up was not answered"
        else:
            assert answers[-1].data["text"].startswith("Done:"), f"{where}: {answers[-1].data}"
        program = PROGRAMS[sorted(PROGRAMS)[i % len(PROGRAMS)]]
        written = data_dir / "agents" / NAMESPACE / agent_name(i) / "workspace" / program[0]
        assert written.read_text(encoding="utf-8") == program[1], f"{where}: the workspace file is wrong"

    await wait_for(lambda: rewatch.saw("status", state="idle"), 10, "the reconnected client to see the end")
    rows0 = after[0]
    seen = [e["seq"] for e in rewatch.events]
    assert seen == list(range(w0_cursor + 1, len(rows0) + 1)), f"reconnected client saw {seen}"

    # --- resending a message id after the restart: duplicate ack at the original seq ---------------
    heads = {i: len(rows) for i, rows in after.items()}
    for i in range(N_AGENTS):
        if i == 0:
            ack = await rewatch.send(client_ids[i], task_text(i))
        else:
            ack = await post_message(second, http, i, client_ids[i], "a different text, same id")
        assert (ack["seq"], ack["duplicate"]) == (acked[i], True), f"{agent_name(i)}: resend got {ack}"
        if i in followups:
            ack = await post_message(second, http, i, followups[i][0], FOLLOWUP)
            assert (ack["seq"], ack["duplicate"]) == (followups[i][1], True), f"{agent_name(i)}: resend got {ack}"
    await asyncio.sleep(0.5)  # a wrongly started turn would have appended by now
    await rewatch.close()
    assert await second.stop() == 0, second.stderr()
    final_logs = all_logs(data_dir, N_AGENTS)
    for i, rows in final_logs.items():
        assert len(rows) == heads[i], f"{agent_name(i)}: the duplicate appended {[r.kind for r in rows[heads[i]:]]}"
    print(f"\ncrash recovery: {N_AGENTS} agents, killed at {killed_at:.2f}s with {len(mid_turn)} mid-turn, "
          f"restarted at {restarted_at:.2f}s, all idle at {recovered_at:.2f}s "
          f"({recovered_at - restarted_at:.2f}s after the restart)")


def write_shim(folder: Path, name: str, delay_s: float) -> None:
    real = shutil.which(name)
    assert real is not None, f"{name} is not on PATH"
    shim = folder / name
    shim.write_text(f"#!/bin/sh\nsleep {delay_s}\nexec {real} \"$@\"\n", encoding="utf-8")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


async def test_kill_during_tool_run(tmp_path: Path, http: aiohttp.ClientSession, servers: list[ServerProcess]) -> None:
    """SIGKILL while the `shell` tool runs: after the restart the turn re-runs the open calls
    (tools are at-least-once) but the log must still carry each call once: one `tool_call` event
    and one `tool_result` per call id, and the tool-call counter must not count the re-run."""
    n = 4
    shims = tmp_path / "shims"
    shims.mkdir()
    for name in ("wc", "python3"):
        write_shim(shims, name, 2.5)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}"}
    data_dir = tmp_path / "data"
    # The shims live outside the Landlock policy of tool processes: allow them, as a shard would
    # allow a toolchain folder (without it the shell skips them: Permission denied, next PATH entry).
    first = ServerProcess(data_dir, tmp_path, tokens_per_s=0, ttft_s=0, env=env, name="first", tool_read_paths=(shims,))
    servers.append(first)
    await first.start()
    await create_agents(first, http, n)
    watchers = [await Watcher(first, http, i).start() for i in range(n)]
    for i in range(n):
        await post_message(first, http, i, f"t{i}", task_text(i))
    # The shell call is announced (tool_call committed) and running in a 2.5 s shim: kill now.
    await wait_for(lambda: all(w.saw("tool_call", name="shell") for w in watchers), 20, "the shell calls")
    await asyncio.sleep(0.3)
    first.kill9()
    for w in watchers:
        await w.close()
    for i in range(n):
        rows = read_events(db_path(data_dir, i))
        assert [r.kind for r in rows if r.kind in ("tool_call", "tool_result")][-2:] == ["tool_call", "tool_call"], \
            f"{agent_name(i)}: the kill did not land while the tools ran"

    second = ServerProcess(data_dir, tmp_path, tokens_per_s=0, ttft_s=0, env=env, name="second", tool_read_paths=(shims,))
    servers.append(second)
    await second.start()
    await wait_for(lambda: all_finished(data_dir, n), 30, "every agent idle", step_s=0.2)
    async with http.get(f"{second.url}/v1/agents", headers=second.headers) as resp:
        described = {a["name"]: a for a in (await resp.json())["agents"]}
    assert await second.stop() == 0, second.stderr()
    for i in range(n):
        rows = read_events(db_path(data_dir, i))
        assert_gap_free(rows, agent_name(i))
        assert last_status(rows) == {"state": "idle", "reason": "end_turn"}
        assert turn_problems(rows) == [], f"{agent_name(i)}: {turn_problems(rows)}"
        calls = sum(len(r.data.get("tool_calls", ())) for r in rows if r.kind == "assistant_message")
        assert described[agent_name(i)]["tool_calls"] == calls, described[agent_name(i)]


async def test_kill_mid_approval_then_restart_asks_once_and_finishes(
    tmp_path: Path, http: aiohttp.ClientSession, servers: list[ServerProcess]
) -> None:
    """SIGKILL while a call waits for an operator: the restarted agent waits again for the same
    question (one `approval_required`, the same deadline), an operator's answer on the new server
    decides it (one `approval`), and the turn ends with every call announced and answered once."""
    data_dir = tmp_path / "data"
    first = ServerProcess(data_dir, tmp_path, tokens_per_s=0, ttft_s=0, name="first")
    servers.append(first)
    await first.start()
    manifest = {"apiVersion": API_VERSION, "kind": "Agent", "metadata": {"name": agent_name(0), "namespace": NAMESPACE},
                "spec": {"autonomy": {"rules": [{"action": "ask", "tool": "write_file"}], "approvalTimeoutS": 120}}}
    async with http.post(f"{first.url}/v1/agents", data=orjson.dumps(manifest),
                         headers={**first.headers, "Content-Type": "application/json"}) as resp:
        assert resp.status == 201, await resp.text()
    await post_message(first, http, 0, "t0", task_text(0))

    def asked() -> list[Row]:
        return [r for r in read_events(db_path(data_dir, 0)) if r.kind == "approval_required"]

    await wait_for(lambda: bool(asked()), 20, "the approval question")
    question = asked()[0].data
    first.kill9()

    second = ServerProcess(data_dir, tmp_path, tokens_per_s=0, ttft_s=0, name="second")
    servers.append(second)
    await second.start()
    url = f"{second.url}/v1/agents/{NAMESPACE}/{agent_name(0)}/approvals"
    body = {"tool_call_id": question["tool_call_id"], "decision": "allow"}
    deadline = time.monotonic() + 20
    while True:  # the resumed turn registers the wait shortly after boot
        async with http.post(url, json=body, headers=second.headers) as resp:
            if resp.status == 200:
                break
            assert resp.status == 409 and time.monotonic() < deadline, await resp.text()
        await asyncio.sleep(0.05)
    await wait_for(lambda: all_finished(data_dir, 1), 30, "the agent idle", step_s=0.1)
    assert await second.stop() == 0, second.stderr()
    rows = read_events(db_path(data_dir, 0))
    assert_gap_free(rows, agent_name(0))
    assert [r.data for r in rows if r.kind == "approval_required"] == [question]
    assert [r.data for r in rows if r.kind == "approval"] == [{**body, "by": "operator"}]
    assert turn_problems(rows) == []
    assert last_status(rows) == {"state": "idle", "reason": "end_turn"}
