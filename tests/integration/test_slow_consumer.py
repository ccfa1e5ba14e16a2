"""The slow-consumer close, triggered for real (issue 17, item 7): with the server's default send
queue, a real WebSocket client that stops reading while its agent streams a long answer is closed
with 1013 (try again later) once its queue is full; the agent, a well-behaved client of the same
agent and the server go on, and the dropped client catches up by cursor when it reconnects.

The model is a test provider that streams text deltas until the server has dropped a client (or a
cap that fails the test): the amount needed is whatever the loopback socket buffers take plus the
send queue, which differs between kernels.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp

from agent_runtime.messages import Usage
from agent_runtime.providers.base import MessageCompleted, ModelRequest, Provider, StreamEvent, TextDelta
from agent_runtime.server import ws as server_ws

if TYPE_CHECKING:
    from conftest import Server, ServerFactory

CHUNK = "flood " * 10 + "\n"  # 61 characters a delta
CAP = 64 * 1024 * 1024  # characters: far past any socket buffer; reaching it fails the test


class FloodProvider(Provider):
    """Streams deltas until `done()` says stop (then ends the message); later calls answer briefly."""

    name = "flood"

    def __init__(self, server: Server) -> None:
        self.server = server
        self.calls = 0
        self.streamed = 0

    def done(self) -> bool:
        return self.server.host.metrics.clients_dropped_slow > 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        if self.calls == 1:
            while not self.done() and self.streamed < CAP:
                for _ in range(64):
                    yield TextDelta(CHUNK)
                    self.streamed += len(CHUNK)
                await asyncio.sleep(0)  # let the writers run, as a network stream would
        else:
            yield TextDelta("short answer")
        yield MessageCompleted("end_turn", Usage(input_tokens=10, output_tokens=10))


async def test_a_client_that_stops_reading_is_closed_with_1013_and_nobody_else_suffers(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    assert server_ws.SEND_QUEUE == 1024  # the default queue: nothing made smaller for the test
    server = await start_server()
    flood = FloodProvider(server)
    real_provider, server.host.provider = server.host.provider, flood
    try:
        key = await server.agent("streamer")
        async with server.peer(key, max_msg_size=0) as good:
            await good.hello(0)
            slow = await http.ws_connect(server.ws_url(key), headers=server.auth())
            try:
                await slow.send_json({"type": "hello", "cursor": 0})  # ...and from now on it does not read

                status, body = await server.request("POST", f"/v1/agents/{key}/messages", json={"id": "go", "text": "stream"})
                assert status == 200, body
                answer = await good.until(lambda f: f["type"] == "event" and f["kind"] == "assistant_message", timeout=120)
                await good.until_idle(timeout=60)

                assert flood.done() and flood.streamed < CAP, flood.streamed
                assert server.host.metrics.clients_dropped_slow == 1  # the slow one, not the good one
                # The good client saw every delta of the message, in order, and the durable message.
                text = answer["data"]["text"]
                assert len(text) == flood.streamed and good.text_of(answer["data"]["id"]) == text

                # The slow client, reading at last: what was already on the wire, then the close with 1013.
                got: list[dict] = []
                async with asyncio.timeout(60):
                    while True:
                        msg = await slow.receive()
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        got.append(msg.json())
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
                assert slow.close_code == 1013, (msg, slow.close_code)
                assert got[0]["type"] == "welcome"
                assert sum(len(f["text"]) for f in got if f["type"] == "delta") < len(text)  # dropped mid-stream
                cursor = max([f["seq"] for f in got if f["type"] == "event"], default=0)

                # The server goes on: health, the good client still gets new events, the dropped one
                # catches up by its cursor.
                status, health = await server.request("GET", "/healthz", token="")
                assert status == 200 and health["status"] == "ok"
                status, body = await server.request("POST", f"/v1/agents/{key}/messages", json={"id": "again", "text": "hi"})
                assert status == 200, body
                await good.until(lambda f: f["type"] == "event" and f["kind"] == "user_message" and f["data"]["id"] == "again")
                await good.until_idle()
                log = await server.events(key)
                async with server.peer(key, max_msg_size=0) as back:
                    await back.hello(cursor)
                    while back.cursor < log[-1]["seq"]:
                        await back.recv()
                assert [e["seq"] for e in back.events] == list(range(cursor + 1, log[-1]["seq"] + 1))
                assert [e["seq"] for e in good.events] == [e["seq"] for e in log]
            finally:
                await slow.close()  # also on failure: a client that never reads would hold the server's shutdown
        assert server.host.metrics.clients_dropped_slow == 1
        async with asyncio.timeout(5):  # every connection, the dropped one included, is cleaned up
            while server.host.metrics.clients_connected or server.host.get(key).hub.subscribers:
                await asyncio.sleep(0.02)
    finally:
        server.host.provider = real_provider
