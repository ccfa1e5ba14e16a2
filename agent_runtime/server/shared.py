"""What the WebSocket and the HTTP handlers share: the application's keys, who a request is and
what it names, and the JSON answers (errors in the one shape of `agent_runtime.errors`)."""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from agent_runtime import errors
from agent_runtime.auth import Grant, TokenStore
from agent_runtime.host import Host

if TYPE_CHECKING:
    from agent_runtime.server.ws import Connection

log = logging.getLogger(__name__)

HOST_KEY: web.AppKey[Host] = web.AppKey("host", Host)
CONNECTIONS_KEY: web.AppKey[weakref.WeakSet[Connection]] = web.AppKey("connections")
TOKENS_KEY: web.AppKey[TokenStore] = web.AppKey("tokens", TokenStore)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(exc: BaseException, **extra: Any) -> web.Response:
    """The answer to a request that raised `exc` (`internal` for a bug; the caller logs it)."""
    return json_response(errors.body(exc, **extra), errors.http_status(exc))


def error_frame(exc: BaseException, **extra: Any) -> dict[str, Any]:
    """The `error` frame for a WebSocket command that raised `exc` (a bug is logged)."""
    if errors.public(exc) is None:
        log.exception("command failed", exc_info=exc)
    return errors.frame(exc, **extra)


def grant(request: web.Request) -> Grant:
    return request.app[TOKENS_KEY].authenticate(request.headers.get("Authorization"))


def target(request: web.Request) -> tuple[str, str, str]:
    """(namespace, name, key) of the agent the request's path names."""
    ns, name = request.match_info["namespace"], request.match_info["name"]
    return ns, name, f"{ns}/{name}"
