"""The router in front of real shard servers (routes fed directly, no apiserver): WebSocket and
HTTP proxying both ways, typed refusals, Authorization passed through, 1012 when an agent moves."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest_asyncio

from agent_runtime.kube.router import CLOSE_MOVED, Router, RouterConfig, run_router
from agent_runtime.listen import bound_port
from agent_runtime.kube.routes import ShardInfo


def _integration_conftest() -> Any:
    """This folder's conftest by path: `from conftest import` finds whichever conftest came first."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_integration_conftest", Path(__file__).with_name("conftest.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_conftest = _integration_conftest()
Peer, is_idle = _conftest.Peer, _conftest.is_idle
Server = ServerFactory = Any


class Routed:
    def __init__(self, router: Router, url: str, http: aiohttp.ClientSession) -> None:
        self.router = router
        self.url = url
        self.http = http

    def place(self, key: str, shard: str, server: Server | None, ns: str = "default") -> None:
        if server is not None:
            self.router.table.set_shard(ns, ShardInfo(shard, server.url, renewed=time.time(), duration_s=60))
        self.router.on_agent("MODIFIED", {"metadata": {"namespace": key.split("/")[0], "name": key.split("/")[1]},
                                          "status": {"shard": shard}})

    @contextlib.asynccontextmanager
    async def peer(self, key: str, token: str | None) -> AsyncIterator[Peer]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        ws = await self.http.ws_connect(self.url.replace("http", "ws") + f"/v1/agents/{key}/ws", headers=headers)
        try:
            yield Peer(ws)
        finally:
            await ws.close()

    async def request(self, method: str, path: str, token: str | None, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.url + path, headers=headers, **kw) as resp:
            return resp.status, orjson.loads(await resp.read())


@pytest_asyncio.fixture
async def routed(http: aiohttp.ClientSession) -> AsyncIterator[Routed]:
    async with run_router(RouterConfig(listen_port=0), kube=None) as (router, url):
        yield Routed(router, url, http)


async def test_chat_through_the_router_with_tools(routed: Routed, start_server: ServerFactory, task_text: str) -> None:
    shard = await start_server()
    key = await shard.agent("a1")
    routed.place(key, "pool-0", shard)
    async with routed.peer(key, shard.admin) as peer:
        await peer.hello(0)
        await peer.send({"type": "user_message", "id": "m1", "text": task_text})
        ack = await peer.until(lambda f: f["type"] == "ack")
        assert ack["id"] == "m1"
        await peer.until_idle()
        kinds = {e["kind"] for e in peer.events}
        assert {"user_message", "assistant_message", "tool_call", "tool_result"} <= kinds
        # binary frames pass through too (the server treats them like text frames)
        await peer.send(orjson.dumps({"type": "user_message", "id": "m2", "text": "hi"}))
        assert (await peer.until(lambda f: f["type"] == "ack"))["id"] == "m2"
        await peer.until_idle()
    # what the client saw is exactly the log
    assert [e["seq"] for e in peer.events] == [e["seq"] for e in await shard.events(key)]
    status, body = await routed.request("GET", f"/v1/agents/{key}/events?after=0&limit=5", shard.admin)
    assert status == 200 and [e["seq"] for e in body["events"]] == [1, 2, 3, 4, 5]
    status, body = await routed.request("POST", f"/v1/agents/{key}/messages", shard.admin, json={"id": "m3", "text": "x"})
    assert status == 200 and body["id"] == "m3"


async def test_typed_refusals(routed: Routed, start_server: ServerFactory) -> None:
    shard = await start_server()
    key = await shard.agent("a1")
    status, body = await routed.request("GET", "/v1/agents/default/ghost/events", shard.admin)
    assert (status, body["code"]) == (404, "agent_not_found")
    routed.router.on_agent("ADDED", {"metadata": {"namespace": "default", "name": "new"}, "status": {}})
    status, body = await routed.request("GET", "/v1/agents/default/new/events", shard.admin)
    assert (status, body["code"]) == (503, "agent_not_placed")
    routed.place("default/lost", "pool-7", None)
    status, body = await routed.request("GET", "/v1/agents/default/lost", shard.admin)
    assert (status, body["code"]) == (503, "shard_unavailable")
    # a shard that is down (its Lease still fresh): unreachable
    routed.router.table.set_shard("default", ShardInfo("pool-8", "http://127.0.0.1:9", time.time(), 60))
    routed.place("default/down", "pool-8", None)
    status, body = await routed.request("GET", "/v1/agents/default/down", shard.admin)
    assert (status, body["code"]) == (503, "shard_unavailable")
    # auth is the shard's: no token -> its 401, passed through (HTTP and WebSocket)
    routed.place(key, "pool-0", shard)
    status, body = await routed.request("GET", f"/v1/agents/{key}", None)
    assert (status, body["code"]) == (401, "unauthenticated")
    try:
        async with routed.peer(key, None):
            raise AssertionError("upgrade without a token must be refused")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 401
    viewer = shard.token("viewer", "default", "a1")
    status, body = await routed.request("POST", f"/v1/agents/{key}/messages", viewer, json={"id": "x", "text": "y"})
    assert (status, body["code"]) == (403, "permission_denied")
    # the shard no longer has it (route about to change): retry
    routed.place("default/elsewhere", "pool-0", shard)
    status, body = await routed.request("GET", "/v1/agents/default/elsewhere/events", shard.admin)
    assert (status, body["code"]) == (503, "agent_moving")
    status, body = await routed.request("GET", "/v1/agents", shard.admin)
    assert (status, body["code"]) == (501, "not_supported")


async def test_agent_move_closes_the_client_with_1012_and_reconnect_lands_on_the_new_shard(
    routed: Routed, start_server: ServerFactory
) -> None:
    old = await start_server()
    new = await start_server(data_dir=old.running.host.config.data_dir.parent / "other")
    new.running.tokens._grants.update(old.running.tokens._grants)  # one admin token for both (shared volume)
    key = await old.agent("a1")
    await new.agent("a1")
    routed.place(key, "pool-0", old)
    routed.router.table.set_shard("default", ShardInfo("pool-1", new.url, time.time(), 60))
    async with routed.peer(key, old.admin) as peer:
        await peer.hello(0)
        await peer.send({"type": "user_message", "id": "m1", "text": "hello"})
        await peer.until(is_idle)
        routed.place(key, "pool-1", None)
        msg = await peer.ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and peer.ws.close_code == CLOSE_MOVED
    assert routed.router.moves == 1
    async with routed.peer(key, old.admin) as peer2:
        welcome = await peer2.hello(0)
        assert welcome["head"] == 0  # the new shard's log (a fresh one in this test)
    for _ in range(100):  # the router's handler finishes just after the client's close
        if not routed.router.sockets:
            break
        await asyncio.sleep(0.05)
    assert not routed.router.sockets  # bookkeeping cleaned up


async def test_shard_closing_the_socket_reaches_the_client(routed: Routed, start_server: ServerFactory) -> None:
    shard = await start_server()
    key = await shard.agent("a1")
    routed.place(key, "pool-0", shard)
    async with routed.peer(key, shard.admin) as peer:
        await peer.hello(0)
        status, _ = await routed.request("DELETE", f"/v1/agents/{key}", shard.admin)
        assert status == 200
        frame = await peer.recv()
        assert frame["type"] == "error" and frame["code"] == "agent_not_found"
        msg = await peer.ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and peer.ws.close_code == 1001  # deleted: do not reconnect


async def _raw(url: str, method: str, path: str, token: str | None) -> tuple[int, bytes]:
    """One HTTP/1.1 request with the path sent byte for byte (aiohttp's client would normalize `..`)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_dot_segments_cannot_leave_the_routed_agent(routed: Routed, start_server: ServerFactory) -> None:
    """`..` (plain or percent-encoded) in the tail must not reach another path of the shard (its
    token endpoint, `POST /v1/agents`, another agent's API): the router refuses it with 400."""
    shard = await start_server()
    key = await shard.agent("a1")
    routed.place(key, "pool-0", shard)
    for path in (f"/v1/agents/{key}/../../../../v1/tokens", f"/v1/agents/{key}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/v1/tokens",
                 f"/v1/agents/{key}/..%2f..%2f..%2f..%2fv1/agents", f"/v1/agents/{key}/../../other/x/events"):
        status, body = await _raw(routed.url, "POST", path, shard.admin)
        assert status == 400, (path, status, body)
        assert orjson.loads(body)["code"] == "bad_path"


async def test_a_hung_shard_gets_a_typed_timeout_not_a_pinned_request(http: aiohttp.ClientSession) -> None:
    """A shard that accepts the request and never answers: the router answers 504 shard_timeout
    after its HTTP timeout instead of holding the client's request forever."""
    from aiohttp import web

    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v1/agents/{namespace}/{name}/events", hang)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = bound_port(site, 0)
    try:
        async with run_router(RouterConfig(listen_port=0), kube=None, router=Router(http_timeout_s=0.5)) as (router, url):
            routed = Routed(router, url, http)
            router.table.set_shard("default", ShardInfo("pool-0", f"http://127.0.0.1:{port}", time.time(), 60))
            routed.place("default/slow", "pool-0", None)
            status, body = await routed.request("GET", "/v1/agents/default/slow/events", None)
            assert (status, body["code"]) == (504, "shard_timeout")
    finally:
        release.set()
        await runner.cleanup()
