"""One corrupt event log quarantines its agent only (issue 17, item 1), with real SQLite files and
a real server process (`helpers/server_proc.py`).

- Boot: a garbage `events.db` and a truncated one among healthy agents. The server starts, the
  healthy agents answer, the corrupt ones are listed `failed` (reason `corrupt`) and every request
  to them (HTTP, WebSocket upgrade) is answered with code `log_corrupt`; their files are untouched.
- Later: bytes of a hibernated agent's log overwritten (its events table's root page); its next
  read or wake gives `log_corrupt`, the other agent goes on.
- Recovery: `agentctl recover NS/NAME` salvages a truncated log into a new, gap-free one (the old
  file kept beside it as `events.db.corrupt-<time>`) and the agent serves again; an unknown agent
  and a healthy one get clear typed errors.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from helpers.logcheck import assert_gap_free, read_events  # noqa: E402
from helpers.server_proc import ServerProcess  # noqa: E402

from agent_runtime import layout  # noqa: E402
from agent_runtime.manifest import make_manifest  # noqa: E402

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio]

NS = "corrupt"


def write_agent(data: Path, name: str) -> Path:
    """An agent folder with its manifest (as the host writes it); returns the folder."""
    folder = layout.agent_folder(data, NS, name)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = make_manifest(name, namespace=NS)
    layout.manifest_file(folder).write_text(yaml.safe_dump(manifest.to_dict(), sort_keys=False), encoding="utf-8")
    return folder


async def call(server: ServerProcess, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession(headers=server.headers) as s:
        async with s.request(method, server.url + path, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)


async def agents_by_name(server: ServerProcess) -> dict[str, dict[str, Any]]:
    status, body = await call(server, "GET", "/v1/agents")
    assert status == 200, body
    return {a["name"]: a for a in body["agents"]}


async def send(server: ServerProcess, name: str, text: str, msg_id: str) -> tuple[int, Any]:
    return await call(server, "POST", f"/v1/agents/{NS}/{name}/messages", json={"id": msg_id, "text": text})


async def wait_idle(server: ServerProcess, name: str, timeout_s: float = 40.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        agents = await agents_by_name(server)
        if agents[name]["phase"] in ("idle", "hibernated"):
            status, body = await call(server, "GET", f"/v1/agents/{NS}/{name}/events", params={"limit": 10000})
            statuses = [e for e in body["events"] if e["kind"] == "status"]
            if statuses and statuses[-1]["data"]["state"] == "idle":
                return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{name} did not become idle")


async def wait_phase(server: ServerProcess, name: str, phase: str, timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        agent = (await agents_by_name(server))[name]
        if agent["phase"] == phase:
            return agent
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{name} is not {phase}: {agent}")


def assert_log_corrupt(status: int, body: Any) -> None:
    assert status == 500, (status, body)
    assert body["type"] == "error" and body["code"] == "log_corrupt", body
    assert "agentctl recover" in body["message"], body


async def ws_refused(server: ServerProcess, name: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession(headers=server.headers) as s:
        async with s.get(f"{server.url}/v1/agents/{NS}/{name}/ws", headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as resp:
            return resp.status, await resp.json(content_type=None)


def events_root_page(db: Path) -> tuple[int, int]:
    """(root page number, page size) of the events table."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    return int(root), int(page_size)


async def fill_log(server: ServerProcess, name: str, messages: int, text_len: int = 2500) -> None:
    for i in range(messages):
        status, body = await send(server, name, f"note {i}: " + "x" * text_len, f"{name}-m{i}")
        assert status == 200, body
    await wait_idle(server, name)


async def test_a_corrupt_log_at_boot_quarantines_that_agent_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in ("healthy-a", "healthy-b"):
        write_agent(data, name)
    garbage = layout.event_log(write_agent(data, "garbage"))
    garbage.write_bytes(os.urandom(64 * 1024))
    # A real log with events, then cut in half (what a full disk or a bad copy leaves).
    truncated_folder = write_agent(data, "truncated")
    first = await ServerProcess(data, tmp_path, tokens_per_s=2000, ttft_s=0.0, name="first").start()
    try:
        await fill_log(first, "truncated", 12)
    finally:
        assert await first.stop() == 0
    truncated = layout.event_log(truncated_folder)
    size = truncated.stat().st_size
    with open(truncated, "r+b") as f:
        f.truncate(size // 2)
    before = {p: p.read_bytes() for p in (garbage, truncated)}

    server = await ServerProcess(data, tmp_path, tokens_per_s=2000, ttft_s=0.0).start()  # today: exits
    try:
        assert server.agents_at_start == 4
        agents = await agents_by_name(server)
        for name in ("garbage", "truncated"):
            assert agents[name]["phase"] == "failed", agents[name]
            assert agents[name]["reason"] == "corrupt", agents[name]
            assert "events.db" in agents[name]["error"], agents[name]
            assert_log_corrupt(*await send(server, name, "hello", f"{name}-1"))
            assert_log_corrupt(*await call(server, "GET", f"/v1/agents/{NS}/{name}/events"))
            status, one = await call(server, "GET", f"/v1/agents/{NS}/{name}")
            assert status == 200 and one["phase"] == "failed" and one["reason"] == "corrupt", one
            assert_log_corrupt(*await ws_refused(server, name))
        for name in ("healthy-a", "healthy-b"):
            assert agents[name]["phase"] != "failed", agents[name]
            status, body = await send(server, name, "hello", f"{name}-1")
            assert status == 200 and body["seq"] >= 1, body
            await wait_idle(server, name)
        # `agentctl get agents` shows it too.
        out = agentctl(server, "get", "agents")
        assert out.returncode == 0, out.stderr
        lines = {line.split()[1]: line for line in out.stdout.splitlines()[1:]}
        assert "failed" in lines["garbage"] and "corrupt" in lines["garbage"], out.stdout
        assert "failed" not in lines["healthy-a"], out.stdout
    finally:
        assert await server.stop() == 0
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path} was changed"


async def test_corruption_found_after_hibernation_quarantines_that_agent_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_agent(data, "victim")
    write_agent(data, "bystander")
    server = await ServerProcess(data, tmp_path, tokens_per_s=2000, ttft_s=0.0, idle_timeout_s=0.5).start()
    try:
        await fill_log(server, "victim", 6)
        await fill_log(server, "bystander", 2)
        await wait_phase(server, "victim", "hibernated")
        db = layout.event_log(layout.agent_folder(data, NS, "victim"))
        assert not Path(f"{db}-wal").exists()  # closed: checkpointed
        root, page_size = events_root_page(db)
        with open(db, "r+b") as f:  # flip every byte of the events table's root page
            f.seek((root - 1) * page_size)
            page = f.read(page_size)
            f.seek((root - 1) * page_size)
            f.write(bytes(b ^ 0xA5 for b in page))
        assert_log_corrupt(*await call(server, "GET", f"/v1/agents/{NS}/victim/events"))
        agent = await wait_phase(server, "victim", "failed")
        assert agent["reason"] == "corrupt", agent
        assert_log_corrupt(*await send(server, "victim", "again", "victim-again"))
        assert_log_corrupt(*await ws_refused(server, "victim"))
        status, body = await send(server, "bystander", "still there?", "bystander-later")
        assert status == 200, body
        await wait_idle(server, "bystander")
        status, body = await call(server, "GET", f"/v1/agents/{NS}/bystander/events")
        assert status == 200 and body["head"] == len(body["events"]), body
    finally:
        assert await server.stop() == 0


def agentctl(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTCTL_SERVER": server.url, "AGENTCTL_TOKEN": server.token}
    return subprocess.run([sys.executable, "-m", "agent_runtime.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=60)


async def test_recover_salvages_a_truncated_log_and_refuses_bad_inputs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = write_agent(data, "victim")
    write_agent(data, "healthy")
    first = await ServerProcess(data, tmp_path, tokens_per_s=2000, ttft_s=0.0, name="first").start()
    try:
        await fill_log(first, "victim", 16)
    finally:
        assert await first.stop() == 0
    db = layout.event_log(folder)
    full = read_events(db)
    assert_gap_free(full)
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size * 2 // 3)
    cut = db.read_bytes()

    server = await ServerProcess(data, tmp_path, tokens_per_s=2000, ttft_s=0.0).start()
    try:
        assert (await agents_by_name(server))["victim"]["phase"] == "failed"
        # Bad inputs: typed errors, nothing touched.
        out = agentctl(server, "recover", f"{NS}/nobody")
        assert out.returncode == 1 and "agent_not_found" in out.stderr, out
        out = agentctl(server, "recover", f"{NS}/healthy")
        assert out.returncode == 1 and "not_corrupt" in out.stderr, out
        status, body = await call(server, "POST", f"/v1/agents/{NS}/healthy/recover")
        assert status == 409 and body["code"] == "not_corrupt", body

        out = agentctl(server, "recover", f"{NS}/victim")
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert "salvaged" in out.stdout, out.stdout
        kept = sorted(folder.glob("events.db.corrupt-*"))
        assert [p.name for p in kept if not p.name.endswith(("-wal", "-shm"))], kept
        old = next(p for p in kept if not p.name.endswith(("-wal", "-shm")))
        assert old.read_bytes() == cut  # the old file, untouched, beside the new one
        match = re.search(r"salvaged events 1\.\.(\d+)", out.stdout)
        assert match, out.stdout
        salvaged = read_events(db)  # and what the woken agent added since (it resumes a cut turn)
        assert_gap_free(salvaged)
        k = int(match.group(1))
        assert 0 < k < len(full) and len(salvaged) >= k
        salvaged = salvaged[:k]
        assert [(e.seq, e.kind, e.data, e.ts, e.client_id) for e in salvaged] == [
            (e.seq, e.kind, e.data, e.ts, e.client_id) for e in full[: len(salvaged)]]
        # The agent is back: it reads, and a new message follows the salvaged events.
        agent = (await agents_by_name(server))["victim"]
        assert agent["phase"] != "failed", agent
        status, body = await call(server, "GET", f"/v1/agents/{NS}/victim/events", params={"limit": 10000})
        assert status == 200 and [e["seq"] for e in body["events"]][: len(salvaged)] == [e.seq for e in salvaged]
        status, body = await send(server, "victim", "after recovery", "victim-after")
        assert status == 200 and body["seq"] > len(salvaged), body
        await wait_idle(server, "victim")
        # A second recover: nothing to do.
        status, body = await call(server, "POST", f"/v1/agents/{NS}/victim/recover")
        assert status == 409 and body["code"] == "not_corrupt", body
    finally:
        assert await server.stop() == 0
    assert_gap_free(read_events(db))
