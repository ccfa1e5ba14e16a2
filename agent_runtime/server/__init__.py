"""The aiohttp shell: WebSocket and HTTP in front of the host.

The WebSocket handler only moves frames: the protocol logic is `agent_runtime.protocol.session`
(sans-IO). Each connection has a bounded send queue fed by the agent's hub without waiting; a
client whose queue is full is closed with code 1013 and catches up by cursor when it reconnects.
One writer task per connection is the only sender, so catch-up, live events, deltas, acks and
errors go out in one order.

HTTP: `GET /healthz`, `GET /metrics`, `GET|POST /v1/agents`, `GET|DELETE /v1/agents/{ns}/{name}`,
`GET /v1/agents/{ns}/{name}/events?after=N&limit=M`, `POST /v1/agents/{ns}/{name}/messages`,
`POST /v1/agents/{ns}/{name}/interrupt`, `POST /v1/agents/{ns}/{name}/approvals`, `POST /v1/tokens`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any, TypeVar

import orjson
import pydantic
from aiohttp import WSCloseCode, WSMsgType, web

from agent_runtime.actor import AgentBusy, AgentStopped, UnknownToolCall
from agent_runtime.auth import AuthError, Grant, Role, TokenStore
from agent_runtime.events import Event
from agent_runtime.host import AgentNotFound, Host
from agent_runtime.manifest import AgentManifest, ManifestError, load_manifests_text, parse_manifest
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

log = logging.getLogger(__name__)

HOST_KEY: web.AppKey[Host] = web.AppKey("host", Host)
CONNECTIONS_KEY: web.AppKey["weakref.WeakSet[Connection]"] = web.AppKey("connections")
TOKENS_KEY: web.AppKey[TokenStore] = web.AppKey("tokens", TokenStore)
SEND_QUEUE = 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_MANIFESTS = 200
CATCH_UP_PAGE = 500
CLOSE_SLOW = 1013  # "try again later": the client reconnects with its cursor


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}


def _error(code: str, message: str, status: int, **extra: Any) -> web.Response:
    return _json(_error_body(code, message, **extra), status)


def _grant(request: web.Request) -> Grant:
    return request.app[TOKENS_KEY].authenticate(request.headers.get("Authorization"))


def _target(request: web.Request) -> tuple[str, str, str]:
    ns, name = request.match_info["namespace"], request.match_info["name"]
    return ns, name, f"{ns}/{name}"


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except AuthError as exc:
        return _error(exc.code, str(exc), exc.status)
    except AgentNotFound as exc:
        return _error("agent_not_found", str(exc), 404)
    except ManifestError as exc:
        return _error("invalid_manifest", str(exc), 422, field=exc.field)
    except AgentBusy as exc:
        return _error("busy", str(exc), 429)
    except AgentStopped as exc:
        return _error("unavailable", f"{exc}; retry", 503)
    except web.HTTPException:
        raise
    except Exception as exc:  # a bug: answer in the API's shape, keep serving
        log.exception("%s %s failed", request.method, request.path)
        return _error("internal", f"{type(exc).__name__}: {exc}", 500)


# -- the WebSocket connection ---------------------------------------------------------------------


class Connection:
    """One attached client: the hub's `Subscriber` and the single writer of its socket."""

    def __init__(self, ws: web.WebSocketResponse, session: ClientSession, host: Host, key: str) -> None:
        self.ws = ws
        self.session = session
        self.host = host
        self.key = key
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(SEND_QUEUE)
        self.slow = False
        self._closing: asyncio.Task[bool] | None = None

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
        # Keep a reference: the loop holds tasks only weakly.
        self._closing = asyncio.get_running_loop().create_task(self.ws.close(code=CLOSE_SLOW, message=b"send queue full"))

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
        self.send_frame(frames.error_frame(frames.ErrorCode.AGENT_NOT_FOUND, f"agent {self.key} was deleted"))
        if not self._offer(("close", (1001, b"agent deleted"))) and not self.slow:
            self.overflowed()

    def send_frame(self, frame: frames.ServerFrame) -> None:
        if not self._offer(("frame", frame)) and not self.slow:
            self.overflowed()

    async def writer(self, hello: asyncio.Future[int]) -> None:
        """Catch up from the log after `hello`, then forward the live stream."""
        cursor = await hello
        handle = self.host.get(self.key)
        self.host.subscribe(self.key, self)  # before reading, so nothing falls between
        try:
            actor = await self.host.wake(self.key)
            head = actor.state.seq
            try:
                await self.ws.send_str(frames.encode_frame(self.session.welcome(head, self.key)))
            except CursorAheadError as exc:
                await self.ws.send_str(frames.encode_frame(frames.error_frame(
                    frames.ErrorCode.BAD_FRAME, str(exc), field="cursor")))
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
        finally:
            self.host.unsubscribe(self.key, self)

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


async def _close_connections(app: web.Application) -> None:
    """Server shutdown: tell attached clients (1001, going away) instead of leaving them hanging."""
    connections: weakref.WeakSet[Connection] = app[CONNECTIONS_KEY]
    for conn in tuple(connections):
        await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


async def ws_handler(request: web.Request) -> web.StreamResponse:
    ns, name, key = _target(request)
    host = request.app[HOST_KEY]
    grant = _grant(request)
    TokenStore.authorize(grant, ns, name, Role.VIEWER)
    host.get(key)
    role: frames.Role = "operator" if grant.at_least(Role.OPERATOR) else "viewer"
    ws = web.WebSocketResponse(max_msg_size=frames.MAX_FRAME_BYTES * 2, heartbeat=30.0)
    await ws.prepare(request)
    session = ClientSession(role)
    conn = Connection(ws, session, host, key)
    request.app[CONNECTIONS_KEY].add(conn)
    hello: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    host.metrics.clients_connected += 1
    try:
        async with asyncio.TaskGroup() as tg:
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


async def _on_frame(conn: Connection, data: str | bytes, hello: asyncio.Future[int]) -> None:
    host = conn.host
    for out in conn.session.receive(data):
        if isinstance(out, dict):
            host.metrics.frames_rejected += out.get("type") == "error"
            if not hello.done():
                await conn.ws.send_str(frames.encode_frame(out))  # before hello: no writer yet
            else:
                conn.send_frame(out)
        elif isinstance(out, Hello):
            hello.set_result(out.cursor)
        elif isinstance(out, SendUserMessage):
            try:
                seq, duplicate = await host.user_message(conn.key, out.client_id, out.text)
            except Exception as exc:  # a failed command is answered; the connection goes on
                conn.send_frame({**_command_error(exc), "id": out.client_id})
                continue
            conn.send_frame(conn.session.ack(out.client_id, seq, duplicate))
        elif isinstance(out, SendInterrupt):
            try:
                await host.interrupt(conn.key)
            except Exception as exc:
                conn.send_frame(_command_error(exc))
        elif isinstance(out, SendApproval):
            try:
                _approve(host, conn.key, out.tool_call_id, out.decision)
            except Exception as exc:
                conn.send_frame(_command_error(exc))


def _approve(host: Host, key: str, tool_call_id: str, decision: str) -> None:
    """Hand an operator's decision to the agent's waiting call. A call can only be waiting while
    its agent is awake and in a turn, so a hibernated agent has nothing pending."""
    actor = host.get(key).actor
    if actor is None or actor.closing:
        raise UnknownToolCall(f"no approval is pending for tool call {tool_call_id!r}")
    actor.approve(tool_call_id, decision)


def _command_error(exc: Exception) -> frames.ServerFrame:
    """The `error` frame for a command the runtime could not carry out."""
    if isinstance(exc, UnknownToolCall):
        return frames.error_frame(frames.ErrorCode.UNKNOWN_TOOL_CALL, str(exc))
    if isinstance(exc, AgentBusy):
        return frames.error_frame(frames.ErrorCode.BUSY, str(exc))
    if isinstance(exc, AgentNotFound):
        return frames.error_frame(frames.ErrorCode.AGENT_NOT_FOUND, str(exc))
    if isinstance(exc, AgentStopped):
        return frames.error_frame(frames.ErrorCode.INTERNAL, f"{exc}; reconnect with your cursor and resend")
    log.exception("command failed", exc_info=exc)
    return frames.error_frame(frames.ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")


# -- HTTP -------------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok", "agents": len(request.app[HOST_KEY].handles)})


async def metrics(request: web.Request) -> web.Response:
    host = request.app[HOST_KEY]
    text = host.metrics.render(host.gauges())
    return web.Response(text=text, content_type="text/plain", charset="utf-8", headers={"X-Prometheus": "0.0.4"})


async def list_agents(request: web.Request) -> web.Response:
    grant = _grant(request)
    host = request.app[HOST_KEY]
    items = [host.describe(h) for h in host.handles.values() if grant.covers(h.manifest.metadata.namespace, h.manifest.metadata.name)]
    items.sort(key=lambda d: (d["namespace"], d["name"]))
    return _json({"agents": items})


def _parse_manifests(body: bytes, is_json: bool) -> list[AgentManifest]:
    if is_json:
        docs = orjson.loads(body)  # orjson.JSONDecodeError: answered as bad_json
        return [parse_manifest(d) for d in (docs if isinstance(docs, list) else [docs])]
    return load_manifests_text(body.decode("utf-8", errors="replace"))


async def create_agents(request: web.Request) -> web.Response:
    """Create or update agents: an admin's right (an admin token may be scoped to a namespace)."""
    grant = _grant(request)
    host = request.app[HOST_KEY]
    body = await request.read()
    if len(body) > MAX_MANIFEST_BYTES:
        return _error("too_large", f"at most {MAX_MANIFEST_BYTES} bytes of manifests per request", 413)
    # YAML parsing is pure Python: off the event loop, on the host's small blocking-IO pool.
    loop = asyncio.get_running_loop()
    try:
        manifests = await loop.run_in_executor(host.tool_io, _parse_manifests, body, request.content_type == "application/json")
    except orjson.JSONDecodeError as exc:
        return _error("bad_json", str(exc), 400)
    if not manifests:
        return _error("invalid_manifest", "no Agent document in the request body", 422)
    if len(manifests) > MAX_MANIFESTS:
        return _error("too_large", f"at most {MAX_MANIFESTS} Agent documents per request", 413)
    for m in manifests:
        TokenStore.authorize(grant, m.metadata.namespace, m.metadata.name, Role.ADMIN)
    out = []
    for m in manifests:
        _, created = await host.apply(m)
        out.append({"agent": m.key, "created": created})
    return _json({"applied": out}, 201 if any(o["created"] for o in out) else 200)


async def get_agent(request: web.Request) -> web.Response:
    ns, name, key = _target(request)
    TokenStore.authorize(_grant(request), ns, name, Role.VIEWER)
    host = request.app[HOST_KEY]
    handle = host.get(key)
    return _json({**host.describe(handle), "manifest": handle.manifest.to_dict()})


async def delete_agent(request: web.Request) -> web.Response:
    ns, name, key = _target(request)
    TokenStore.authorize(_grant(request), ns, name, Role.ADMIN)
    host = request.app[HOST_KEY]
    attached = list(host.get(key).hub.subscribers)
    await host.delete(key)
    for sub in attached:
        if isinstance(sub, Connection):
            sub.agent_deleted()
    return _json({"deleted": key})


def _int_param(request: web.Request, name: str, default: int | None, low: int = 0, high: int = 10**12) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        body = _error_body("bad_request", f"{name} must be an integer in [{low}, {high}]")
        raise web.HTTPBadRequest(text=orjson.dumps(body).decode(), content_type="application/json")
    return value


async def read_events(request: web.Request) -> web.Response:
    ns, name, key = _target(request)
    TokenStore.authorize(_grant(request), ns, name, Role.VIEWER)
    after = _int_param(request, "after", 0) or 0
    limit = _int_param(request, "limit", 1000, 1, 10_000)
    host = request.app[HOST_KEY]
    events = await host.read_events(key, after, limit)
    actor = await host.wake(key)
    return _json({"events": [e.to_frame() for e in events], "head": actor.state.seq})


_Frame = TypeVar("_Frame", bound=pydantic.BaseModel)


async def _body_as_frame(request: web.Request, model: type[_Frame], frame_type: str, shape: str) -> _Frame | web.Response:
    """The JSON body validated by the same rules as the WebSocket frame `frame_type`, or the 400
    answer (`bad_json`, or `bad_frame` naming the field and the expected `shape`)."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return _error("bad_json", str(exc), 400)
    try:
        return model.model_validate({"type": frame_type, **body} if isinstance(body, dict) else body)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return _error("bad_frame", f"body must be {shape}: {field}: {first['msg']}", 400, field=field)


async def post_message(request: web.Request) -> web.Response:
    ns, name, key = _target(request)
    TokenStore.authorize(_grant(request), ns, name, Role.OPERATOR)
    message = await _body_as_frame(request, frames.UserMessageFrame, "user_message", '{"id": str, "text": str}')
    if isinstance(message, web.Response):
        return message
    try:
        seq, duplicate = await request.app[HOST_KEY].user_message(key, message.id, message.text)
    except AgentBusy as exc:
        return _error("busy", str(exc), 429, id=message.id)
    return _json({"id": message.id, "seq": seq, "duplicate": duplicate})


async def post_interrupt(request: web.Request) -> web.Response:
    ns, name, key = _target(request)
    TokenStore.authorize(_grant(request), ns, name, Role.OPERATOR)
    stopped = await request.app[HOST_KEY].interrupt(key)
    return _json({"interrupted": stopped})


async def post_approval(request: web.Request) -> web.Response:
    """An operator's decision for a waiting tool call: `{"tool_call_id": str, "decision": "allow"|"deny"}`."""
    ns, name, key = _target(request)
    TokenStore.authorize(_grant(request), ns, name, Role.OPERATOR)
    approval = await _body_as_frame(request, frames.ApprovalFrame, "approval",
                                    '{"tool_call_id": str, "decision": "allow"|"deny"}')
    if isinstance(approval, web.Response):
        return approval
    try:
        _approve(request.app[HOST_KEY], key, approval.tool_call_id, approval.decision)
    except UnknownToolCall as exc:
        return _error("unknown_tool_call", str(exc), 409)
    return _json({"tool_call_id": approval.tool_call_id, "decision": approval.decision, "accepted": True})


async def create_token(request: web.Request) -> web.Response:
    grant = _grant(request)
    if not grant.at_least(Role.ADMIN):
        return _error("permission_denied", "only an admin token may create tokens", 403)
    try:
        body = orjson.loads(await request.read())
        new = Grant(Role(body["role"]), body.get("namespace"), body.get("agent"))
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        return _error("bad_request", f"body must be {{role, namespace?, agent?}}: {exc}", 400)
    if not grant.contains(new):
        return _error("forbidden", "a token can only grant what its creator's token covers", 403)
    try:
        token = await request.app[TOKENS_KEY].acreate(new)  # the file is written off the event loop
    except ValueError as exc:
        return _error("bad_request", str(exc), 400)
    return _json({"token": token, **new.to_dict()}, 201)


def make_app(host: Host, tokens: TokenStore) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=8 * 1024 * 1024)
    app[HOST_KEY] = host
    app[TOKENS_KEY] = tokens
    app[CONNECTIONS_KEY] = weakref.WeakSet()
    app.on_shutdown.append(_close_connections)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/agents", list_agents)
    app.router.add_post("/v1/agents", create_agents)
    app.router.add_get("/v1/agents/{namespace}/{name}", get_agent)
    app.router.add_delete("/v1/agents/{namespace}/{name}", delete_agent)
    app.router.add_get("/v1/agents/{namespace}/{name}/events", read_events)
    app.router.add_post("/v1/agents/{namespace}/{name}/messages", post_message)
    app.router.add_post("/v1/agents/{namespace}/{name}/interrupt", post_interrupt)
    app.router.add_post("/v1/agents/{namespace}/{name}/approvals", post_approval)
    app.router.add_get("/v1/agents/{namespace}/{name}/ws", ws_handler)
    app.router.add_post("/v1/tokens", create_token)
    return app

