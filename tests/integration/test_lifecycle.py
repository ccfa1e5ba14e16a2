"""Agent and server lifecycle under concurrency: delete racing with messages, shutdown with clients
attached, failed commands, oversized requests. Real server, real sockets, real SQLite files."""

from __future__ import annotations

import asyncio
import io
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest

from agent_runtime import errors
from agent_runtime.agent.actor import ActorConfig
from agent_runtime.agent.mail import AgentBusy, AgentStopped
from agent_runtime.host import AgentNotFound, Host, HostConfig
from agent_runtime.manifest import make_manifest
from agent_runtime.providers.simulated import SimulatedModelConfig, SimulatedProvider
from agent_runtime.standalone import ServerConfig, serve
from agent_runtime.tools.registry import default_registry

sys.path.insert(0, str(Path(__file__).parent))
from helpers.texts import TASK  # noqa: E402

if TYPE_CHECKING:
    from conftest import Server, ServerFactory


class Watcher:
    def offer_event(self, event: object) -> bool:
        return True

    def offer_delta(self, message_id: str, text: str, offset: int) -> bool:
        return True

    def overflowed(self) -> None:
        pass


@pytest.mark.parametrize(("yields", "watched"), [(1, False), (3, False), (6, False), (1, True)])
async def test_delete_racing_a_message_neither_hangs_nor_resurrects_the_agent(
    tmp_path: Path, yields: int, watched: bool
) -> None:
    model = SimulatedProvider(SimulatedModelConfig(chat_probability=1.0))
    async with Host(HostConfig(tmp_path, actor=ActorConfig(idle_timeout_s=30.0)), model, default_registry()) as host:
        await host.apply(make_manifest("a"))
        await host.user_message("default/a", "m0", "hi")
        if watched:
            host.subscribe("default/a", Watcher())  # an attached client keeps the actor awake
        sender = asyncio.create_task(host.user_message("default/a", "m1", "hello"))
        for _ in range(yields):
            await asyncio.sleep(0)
        t0 = time.monotonic()
        await asyncio.wait_for(host.delete("default/a"), 5)
        assert time.monotonic() - t0 < 2.0
        done, _ = await asyncio.wait([sender], timeout=5)
        assert done, "the sender was left waiting"
        exc = sender.exception()
        assert exc is None or isinstance(exc, (AgentStopped, AgentNotFound)), exc
        assert "default/a" not in host.handles
        with pytest.raises(AgentNotFound):
            await host.user_message("default/a", "m2", "after")
        await asyncio.sleep(0.05)
        assert not (tmp_path / "agents" / "default" / "a").exists(), "a deleted agent's folder came back"
        assert not [t for t in host._tasks if t.get_name() == "actor:default/a"]


async def test_shutdown_closes_attached_clients_with_1001_at_once(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        async with serve(ServerConfig(data_dir=tmp_path, port=0)) as running:
            await running.host.apply(make_manifest("a"))
            ws = await http.ws_connect(running.url + "/v1/agents/default/a/ws",
                                       headers={"Authorization": f"Bearer {running.admin_token}"})
            await ws.send_str('{"type": "hello", "cursor": 0}')
            assert (await ws.receive_json())["type"] == "welcome"
            t0 = time.monotonic()
        assert time.monotonic() - t0 < 5.0
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)  # going away
        await ws.close()


async def test_a_failed_command_is_answered_and_the_connection_goes_on(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await server.agent()

    async def busy(key: str) -> bool:
        raise AgentBusy(f"agent {key} has 64 messages waiting")

    monkeypatch.setattr(server.host, "interrupt", busy)
    async with server.peer(key) as p:
        await p.hello(0)
        await p.send({"type": "interrupt"})
        err = await p.until(lambda f: f["type"] == "error")
        assert err["code"] == "busy"
        await p.send({"type": "user_message", "id": "after", "text": TASK})
        ack = await p.until(lambda f: f["type"] == "ack")
        assert ack["id"] == "after" and ack["duplicate"] is False


@pytest.mark.parametrize("exc", [AgentBusy("agent default/x has 64 messages waiting"), AgentNotFound("default/x"),
                                 AgentStopped("agent default/x stopped"), RuntimeError("a bug")],
                         ids=lambda e: type(e).__name__)
async def test_one_failure_one_answer_over_http_and_ws(
    server: Server, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    """The same exception from the host is answered with the same body (errors.body) over HTTP and
    the same frame (errors.frame) over the WebSocket; the connection goes on."""
    key = await server.agent()

    async def fail(key: str) -> bool:
        raise exc

    monkeypatch.setattr(server.host, "interrupt", fail)
    status, body = await server.request("POST", f"/v1/agents/{key}/interrupt")
    assert (status, body) == (errors.http_status(exc), errors.body(exc))
    async with server.peer(key) as p:
        await p.hello(0)
        await p.send({"type": "interrupt"})
        frame = await p.until(lambda f: f["type"] == "error")
        assert frame == errors.frame(exc)
        if frame["code"] != "internal":
            assert frame == body
        await p.send({"type": "user_message", "id": "after", "text": TASK})
        assert (await p.until(lambda f: f["type"] == "ack"))["id"] == "after"


async def test_oversized_manifest_requests_are_refused_whole(server: Server) -> None:
    doc = "apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\nmetadata: {{name: n{}}}\n"
    many = "---\n".join(doc.format(i) for i in range(201))
    status, body = await server.request("POST", "/v1/agents", data=many, headers={"Content-Type": "application/yaml"})
    assert (status, body["code"]) == (413, "too_large")
    huge = doc.format(0) + "spec: {systemPrompt: '" + "x" * (1024 * 1024) + "'}\n"
    status, body = await server.request("POST", "/v1/agents", data=io.BytesIO(huge.encode()),
                                        headers={"Content-Type": "application/yaml"})
    assert (status, body["code"]) == (413, "too_large")
    assert not server.host.handles


async def test_reading_events_of_a_hibernating_agent_wakes_it(start_server: ServerFactory) -> None:
    server = await start_server(actor=ActorConfig(idle_timeout_s=0.05))
    key = await server.agent()
    status, _ = await server.request("POST", f"/v1/agents/{key}/messages", json={"id": "m", "text": TASK})
    assert status == 200
    log = await server.wait_idle(key, or_asleep=True)  # idle 50 ms: it may be asleep again already
    assert log[-1]["kind"] == "status" and log[-1]["data"]["state"] == "idle"
    for _ in range(20):  # reads while the agent keeps falling asleep
        await asyncio.sleep(0.03)
        status, body = await server.request("GET", f"/v1/agents/{key}/events")
        assert status == 200 and [e["seq"] for e in body["events"]] == [e["seq"] for e in log]
