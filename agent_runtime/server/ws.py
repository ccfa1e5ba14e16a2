"""The WebSocket side of the server: one `Connection` per attached client, the handler that runs
it, and the dispatch of the commands its frames carry.

The handler only moves frames: the protocol logic is `agent_runtime.protocol.session` (sans-IO).
Each connection has a bounded send queue fed by the agent's hub without waiting; a client whose
queue is full is closed with code 1013 and catches up by cursor when it reconnects. One writer
task per connection is the only sender, so catch-up, live events, deltas, acks and errors go out
in one order. Every task of a connection (the writer, a close) belongs to the connection's
TaskGroup, which the handler leaves only when all of them are done.

Each connection has its rate limits (`agent_runtime.ratelimit.ClientLimits`): a frame over the
frame rate is answered `rate_limited` before it is parsed, a `user_message` over the message rate
before it reaches the agent (with its `id`); nothing of a refused frame is acted on and the
connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from agent_runtime import errors
from agent_runtime.auth import Role, TokenStore
from agent_runtime.eventlog.base import LogCorrupt
from agent_runtime.events import Event
from agent_runtime.host import AgentHandle, Host
from agent_runtime.protocol import frames
from agent_runtime.protocol.session import (
    ClientSession,
    CursorAheadError,
    GapError,
    Hello,
    SendApproval,
    SendInterrupt,
    SendUserMessage,
)
from agent_runtime.ratelimit import ClientLimits
from agent_runtime.server.shared import CONNECTIONS_KEY, HOST_KEY, LIMITS_KEY, error_frame, grant, target

SEND_QUEUE = 1024
CATCH_UP_PAGE = 500
CLOSE_SLOW = 1013  # "try again later": the client reconnects with its cursor


class Connection:
    """One attached client: the hub's `Subscriber` and the single writer of its socket."""

    def __init__(self, ws: web.WebSocketResponse, session: ClientSession, host: Host, key: str,
                 tasks: asyncio.TaskGroup, limits: ClientLimits) -> None:
        self.ws = ws
        self.session = session
        self.host = host
        self.key = key
        self.limits = limits
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(SEND_QUEUE)
        self.slow = False
        self._tasks = tasks

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            self._tasks.create_task(coro)
        except RuntimeError:  # the connection is over: its TaskGroup finished or is shutting down
            coro.close()

    # Subscriber protocol (called by the hub; never waits)
    def offer_event(self, event: Event) -> bool:
        return self._offer(("event", event))

    def offer_delta(self, message_id: str, text: str, offset: int) -> bool:
        return self._offer(("delta", (message_id, text, offset)))

    def overflowed(self) -> None:
        self.slow = True
        self.host.metrics.clients_dropped_slow += 1
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(("close", None))
        self._spawn(self._close(CLOSE_SLOW, b"send queue full"))

    async def _close(self, code: int, reason: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            await self.ws.close(code=code, message=reason)

    def _offer(self, item: tuple[str, Any]) -> bool:
        if self.slow:
            return False
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def agent_deleted(self) -> None:
        """The agent is gone: tell the client, then close (1001: nothing to reconnect to)."""
        self._end(frames.error_frame(frames.ErrorCode.AGENT_NOT_FOUND, f"agent {self.key} was deleted"),
                  1001, b"agent deleted")

    def agent_failed(self, exc: LogCorrupt) -> None:
        """The agent was quarantined (its log is damaged): tell the client, then close (1011; a
        reconnect is refused with the same code until an admin recovers the agent)."""
        self._end(errors.frame(exc), WSCloseCode.INTERNAL_ERROR, b"agent quarantined")

    def _end(self, frame: frames.ServerFrame, code: int, reason: bytes) -> None:
        """The agent's last word to this client: an error frame, then a close with `code`."""
        self.send_frame(frame)
        if not self._offer(("close", (code, reason))) and not self.slow:
            self.overflowed()

    def send_frame(self, frame: frames.ServerFrame) -> None:
        if not self._offer(("frame", frame)) and not self.slow:
            self.overflowed()

    async def writer(self, hello: asyncio.Future[int]) -> None:
        """Catch up from the log after `hello`, then forward the live stream."""
        await hello  # the session holds the cursor
        handle = self.host.get(self.key)
        self.host.subscribe(self.key, self)  # before reading, so nothing falls between
        try:
            await self._forward(handle)
        except LogCorrupt as exc:  # found while catching up: the host quarantined the agent
            await self.ws.send_str(frames.encode_frame(errors.frame(exc)))
            await self.ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"agent quarantined")
        finally:
            self.host.unsubscribe(self.key, self)

    async def _forward(self, handle: AgentHandle) -> None:
        """Welcome, catch up from the log, then forward the live stream until a close."""
        head = await self.host.head(self.key)
        try:
            await self.ws.send_str(frames.encode_frame(self.session.welcome(head, self.key)))
        except CursorAheadError as exc:
            await self.ws.send_str(frames.encode_frame(exc.frame))
            await self.ws.close()
            return
        await self._catch_up()
        live = handle.hub.live_so_far()
        if live is not None:
            await self._send_delta(*live, 0)
        while True:
            kind, payload = await self.queue.get()
            if kind == "close":
                if payload is not None:  # (code, reason): the server ends this connection
                    await self.ws.close(code=payload[0], message=payload[1])
                return
            if kind == "event":
                await self._send_event(payload)
            elif kind == "delta":
                await self._send_delta(*payload)
            else:
                await self.ws.send_str(frames.encode_frame(payload))

    async def _catch_up(self) -> None:
        while True:
            batch = await self.host.read_events(self.key, self.session.cursor, CATCH_UP_PAGE)
            for event in batch:
                frame = self.session.event(event)
                if frame is not None:
                    await self.ws.send_str(frames.encode_frame(frame))
            if len(batch) < CATCH_UP_PAGE:
                return

    async def _send_event(self, event: Event) -> None:
        try:
            frame = self.session.event(event)
        except GapError:
            await self._catch_up()
            frame = self.session.event(event)
        if frame is not None:
            await self.ws.send_str(frames.encode_frame(frame))

    async def _send_delta(self, message_id: str, text: str, offset: int) -> None:
        try:
            frame = self.session.delta(message_id, text, offset)
        except GapError:
            return  # deltas are not durable; the assistant_message event carries the full text
        if frame is not None:
            await self.ws.send_str(frames.encode_frame(frame))


async def close_connections(app: web.Application) -> None:
    """Server shutdown: tell attached clients (1001, going away) instead of leaving them hanging."""
    connections: weakref.WeakSet[Connection] = app[CONNECTIONS_KEY]
    for conn in tuple(connections):
        await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


async def ws_handler(request: web.Request) -> web.StreamResponse:
    ns, name, key = target(request)
    host = request.app[HOST_KEY]
    who = grant(request)
    TokenStore.authorize(who, ns, name, Role.VIEWER)
    host.get(key).refuse_if_failed()  # a quarantined agent: refused with `log_corrupt`
    role: frames.Role = "operator" if who.at_least(Role.OPERATOR) else "viewer"
    ws = web.WebSocketResponse(max_msg_size=frames.MAX_FRAME_BYTES * 2, heartbeat=30.0)
    await ws.prepare(request)
    session = ClientSession(role)
    hello: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    host.metrics.clients_connected += 1
    try:
        async with asyncio.TaskGroup() as tg:
            conn = Connection(ws, session, host, key, tg, ClientLimits(request.app[LIMITS_KEY], time.monotonic()))
            request.app[CONNECTIONS_KEY].add(conn)
            writer = tg.create_task(conn.writer(hello))
            try:
                async for msg in ws:
                    if msg.type == WSMsgType.TEXT or msg.type == WSMsgType.BINARY:
                        await _on_frame(conn, msg.data, hello)
                    if writer.done():
                        break
            finally:
                if not hello.done():
                    hello.cancel()
                writer.cancel()
    except* (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        host.metrics.clients_connected -= 1
        await ws.close()
    return ws


async def _reply(conn: Connection, frame: frames.ServerFrame, hello: asyncio.Future[int]) -> None:
    if not hello.done():
        await conn.ws.send_str(frames.encode_frame(frame))  # before hello: no writer yet
    else:
        conn.send_frame(frame)


async def _on_frame(conn: Connection, data: str | bytes, hello: asyncio.Future[int]) -> None:
    host = conn.host
    now = time.monotonic()
    refused = conn.limits.frame(now)
    if refused is not None:  # not even parsed
        host.metrics.frames_rejected += 1
        await _reply(conn, error_frame(refused), hello)
        return
    for out in conn.session.receive(data):
        if isinstance(out, dict):
            host.metrics.frames_rejected += out.get("type") == "error"
            await _reply(conn, out, hello)
        elif isinstance(out, Hello):
            hello.set_result(out.cursor)
        elif isinstance(out, SendUserMessage):
            refused = conn.limits.message(now)
            if refused is not None:
                host.metrics.frames_rejected += 1
                conn.send_frame(error_frame(refused, id=out.client_id))
                continue
            try:
                seq, duplicate = await host.user_message(conn.key, out.client_id, out.text)
            except Exception as exc:  # a failed command is answered; the connection goes on
                conn.send_frame(error_frame(exc, id=out.client_id))
                continue
            conn.send_frame(conn.session.ack(out.client_id, seq, duplicate))
        elif isinstance(out, SendInterrupt):
            try:
                await host.interrupt(conn.key)
            except Exception as exc:
                conn.send_frame(error_frame(exc))
        elif isinstance(out, SendApproval):
            try:
                host.approve(conn.key, out.tool_call_id, out.decision)
            except Exception as exc:
                conn.send_frame(error_frame(exc))
