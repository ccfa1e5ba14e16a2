"""The REST handlers: `GET /healthz`, `GET /metrics`, `GET|POST /v1/agents`,
`GET|DELETE /v1/agents/{ns}/{name}`, `GET /v1/agents/{ns}/{name}/events?after=N&limit=M`,
`POST /v1/agents/{ns}/{name}/messages`, `POST /v1/agents/{ns}/{name}/interrupt`,
`POST /v1/agents/{ns}/{name}/approvals`, `POST /v1/tokens`.

A handler answers success itself and raises for everything else; the errors middleware
(`agent_runtime.server.app`) answers what it raised in the one error shape (`agent_runtime.errors`).
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import orjson
import pydantic
from aiohttp import web

from agent_runtime import errors
from agent_runtime.agent.mail import AgentBusy
from agent_runtime.auth import AuthError, Grant, Role, TokenStore
from agent_runtime.manifest import AgentManifest, load_manifests_text, parse_manifest
from agent_runtime.protocol import frames
from agent_runtime.server.shared import HOST_KEY, TOKENS_KEY, error_response, grant, json_response, target
from agent_runtime.server.ws import Connection

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_MANIFESTS = 200


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "agents": len(request.app[HOST_KEY].handles)})


async def metrics(request: web.Request) -> web.Response:
    host = request.app[HOST_KEY]
    text = host.metrics.render(host.gauges())
    return web.Response(text=text, content_type="text/plain", charset="utf-8", headers={"X-Prometheus": "0.0.4"})


async def list_agents(request: web.Request) -> web.Response:
    who = grant(request)
    host = request.app[HOST_KEY]
    items = [host.describe(h) for h in host.handles.values() if who.covers(h.manifest.metadata.namespace, h.manifest.metadata.name)]
    items.sort(key=lambda d: (d["namespace"], d["name"]))
    return json_response({"agents": items})


def _parse_manifests(body: bytes, is_json: bool) -> list[AgentManifest]:
    if is_json:
        docs = orjson.loads(body)  # orjson.JSONDecodeError: answered as bad_json
        return [parse_manifest(d) for d in (docs if isinstance(docs, list) else [docs])]
    return load_manifests_text(body.decode("utf-8", errors="replace"))


async def create_agents(request: web.Request) -> web.Response:
    """Create or update agents: an admin's right (an admin token may be scoped to a namespace)."""
    who = grant(request)
    host = request.app[HOST_KEY]
    body = await request.read()
    if len(body) > MAX_MANIFEST_BYTES:
        raise errors.TooLarge(f"at most {MAX_MANIFEST_BYTES} bytes of manifests per request")
    # YAML parsing is pure Python: off the event loop, on the host's small blocking-IO pool.
    loop = asyncio.get_running_loop()
    try:
        manifests = await loop.run_in_executor(host.tool_io, _parse_manifests, body, request.content_type == "application/json")
    except orjson.JSONDecodeError as exc:
        raise errors.BadJson(str(exc)) from None
    if not manifests:
        raise errors.Error("no Agent document in the request body", code="invalid_manifest")  # no field at fault
    if len(manifests) > MAX_MANIFESTS:
        raise errors.TooLarge(f"at most {MAX_MANIFESTS} Agent documents per request")
    for m in manifests:
        TokenStore.authorize(who, m.metadata.namespace, m.metadata.name, Role.ADMIN)
    out = []
    for m in manifests:
        _, created = await host.apply(m)
        out.append({"agent": m.key, "created": created})
    return json_response({"applied": out}, 201 if any(o["created"] for o in out) else 200)


async def get_agent(request: web.Request) -> web.Response:
    ns, name, key = target(request)
    TokenStore.authorize(grant(request), ns, name, Role.VIEWER)
    host = request.app[HOST_KEY]
    handle = host.get(key)
    return json_response({**host.describe(handle), "manifest": handle.manifest.to_dict()})


async def delete_agent(request: web.Request) -> web.Response:
    ns, name, key = target(request)
    TokenStore.authorize(grant(request), ns, name, Role.ADMIN)
    host = request.app[HOST_KEY]
    attached = list(host.get(key).hub.subscribers)
    await host.delete(key)
    for sub in attached:
        if isinstance(sub, Connection):
            sub.agent_deleted()
    return json_response({"deleted": key})


def _int_param(request: web.Request, name: str, default: int | None, low: int = 0, high: int = 10**12) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise errors.BadRequest(f"{name} must be an integer in [{low}, {high}]")
    return value


async def read_events(request: web.Request) -> web.Response:
    ns, name, key = target(request)
    TokenStore.authorize(grant(request), ns, name, Role.VIEWER)
    after = _int_param(request, "after", 0) or 0
    limit = _int_param(request, "limit", 1000, 1, 10_000)
    host = request.app[HOST_KEY]
    events = await host.read_events(key, after, limit)
    return json_response({"events": [e.to_frame() for e in events], "head": await host.head(key)})


_Frame = TypeVar("_Frame", bound=pydantic.BaseModel)


async def _body_as_frame(request: web.Request, model: type[_Frame], frame_type: str, shape: str) -> _Frame:
    """The JSON body validated by the same rules as the WebSocket frame `frame_type`; `BadJson`, or
    `BadFrame` naming the field and the expected `shape`."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise errors.BadJson(str(exc)) from None
    try:
        return model.model_validate({"type": frame_type, **body} if isinstance(body, dict) else body)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise errors.BadFrame(f"body must be {shape}: {field}: {first['msg']}", field) from None


async def post_message(request: web.Request) -> web.Response:
    ns, name, key = target(request)
    TokenStore.authorize(grant(request), ns, name, Role.OPERATOR)
    message = await _body_as_frame(request, frames.UserMessageFrame, "user_message", '{"id": str, "text": str}')
    try:
        seq, duplicate = await request.app[HOST_KEY].user_message(key, message.id, message.text)
    except AgentBusy as exc:
        return error_response(exc, id=message.id)
    return json_response({"id": message.id, "seq": seq, "duplicate": duplicate})


async def post_interrupt(request: web.Request) -> web.Response:
    ns, name, key = target(request)
    TokenStore.authorize(grant(request), ns, name, Role.OPERATOR)
    stopped = await request.app[HOST_KEY].interrupt(key)
    return json_response({"interrupted": stopped})


async def post_approval(request: web.Request) -> web.Response:
    """An operator's decision for a waiting tool call: `{"tool_call_id": str, "decision": "allow"|"deny"}`."""
    ns, name, key = target(request)
    TokenStore.authorize(grant(request), ns, name, Role.OPERATOR)
    approval = await _body_as_frame(request, frames.ApprovalFrame, "approval",
                                    '{"tool_call_id": str, "decision": "allow"|"deny"}')
    request.app[HOST_KEY].approve(key, approval.tool_call_id, approval.decision)  # UnknownToolCall: 409
    return json_response({"tool_call_id": approval.tool_call_id, "decision": approval.decision, "accepted": True})


async def create_token(request: web.Request) -> web.Response:
    who = grant(request)
    if not who.at_least(Role.ADMIN):
        raise AuthError("permission_denied", "only an admin token may create tokens")
    try:
        body = orjson.loads(await request.read())
        new = Grant(Role(body["role"]), body.get("namespace"), body.get("agent"))
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise errors.BadRequest(f"body must be {{role, namespace?, agent?}}: {exc}") from None
    if not who.contains(new):
        raise AuthError("forbidden", "a token can only grant what its creator's token covers")
    try:
        token = await request.app[TOKENS_KEY].acreate(new)  # the file is written off the event loop
    except ValueError as exc:
        raise errors.BadRequest(str(exc)) from None
    return json_response({"token": token, **new.to_dict()}, 201)
