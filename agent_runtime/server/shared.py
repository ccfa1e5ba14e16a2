"""What the WebSocket and the HTTP handlers share: the application's keys, who a request is and
what it names, and the JSON answers (errors in the one shape of `agent_runtime.errors`)."""

from __future__ import annotations

import hashlib
import logging
import math
import weakref
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from agent_runtime import errors
from agent_runtime.auth import Grant, TokenStore
from agent_runtime.host import Host
from agent_runtime.ratelimit import Buckets, RateLimited, RateLimits

if TYPE_CHECKING:
    from agent_runtime.server.ws import Connection

log = logging.getLogger(__name__)

HOST_KEY: web.AppKey[Host] = web.AppKey("host", Host)
CONNECTIONS_KEY: web.AppKey[weakref.WeakSet[Connection]] = web.AppKey("connections")
TOKENS_KEY: web.AppKey[TokenStore] = web.AppKey("tokens", TokenStore)
LIMITS_KEY: web.AppKey[RateLimits] = web.AppKey("rate_limits", RateLimits)
MESSAGE_BUCKETS_KEY: web.AppKey[Buckets] = web.AppKey("message_buckets", Buckets)
"""HTTP message posts: one bucket per token (`RateLimits.messages`)."""


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(exc: BaseException, **extra: Any) -> web.Response:
    """The answer to a request that raised `exc` (`internal` for a bug; the caller logs it); a
    rate-limited one says when to come back (`Retry-After`, whole seconds)."""
    response = json_response(errors.body(exc, **extra), errors.http_status(exc))
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return response


def error_frame(exc: BaseException, **extra: Any) -> dict[str, Any]:
    """The `error` frame for a WebSocket command that raised `exc` (a bug is logged)."""
    if errors.public(exc) is None:
        log.exception("command failed", exc_info=exc)
    return errors.frame(exc, **extra)


def client_key(request: web.Request) -> str:
    """Who a request's rate limit counts against: its bearer token (a digest of the header), or
    its peer address when it has none (auth off)."""
    authorization = request.headers.get("Authorization")
    if authorization:
        return hashlib.sha256(authorization.encode()).hexdigest()
    return f"peer:{request.remote}"


def grant(request: web.Request) -> Grant:
    return request.app[TOKENS_KEY].authenticate(request.headers.get("Authorization"))


def target(request: web.Request) -> tuple[str, str, str]:
    """(namespace, name, key) of the agent the request's path names."""
    ns, name = request.match_info["namespace"], request.match_info["name"]
    return ns, name, f"{ns}/{name}"
