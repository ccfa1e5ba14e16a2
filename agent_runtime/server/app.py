"""The aiohttp application: routes, the errors middleware, shutdown.

The errors middleware is the one place a request's exception becomes an answer: the JSON body and
HTTP status of `agent_runtime.errors` (`internal`, 500, for a bug, which is logged; the server
keeps serving). aiohttp's own HTTP exceptions (an unknown route, a wrong method) pass through.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from aiohttp import web

from agent_runtime import errors
from agent_runtime.auth import TokenStore
from agent_runtime.host import Host
from agent_runtime.server import http
from agent_runtime.server.shared import CONNECTIONS_KEY, HOST_KEY, TOKENS_KEY, error_response
from agent_runtime.server.ws import close_connections, ws_handler

log = logging.getLogger(__name__)


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except Exception as exc:
        if errors.public(exc) is None:  # a bug: answer in the API's shape, keep serving
            log.exception("%s %s failed", request.method, request.path)
        return error_response(exc)


def make_app(host: Host, tokens: TokenStore) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=8 * 1024 * 1024)
    app[HOST_KEY] = host
    app[TOKENS_KEY] = tokens
    app[CONNECTIONS_KEY] = weakref.WeakSet()
    app.on_shutdown.append(close_connections)
    app.router.add_get("/healthz", http.healthz)
    app.router.add_get("/metrics", http.metrics)
    app.router.add_get("/v1/agents", http.list_agents)
    app.router.add_post("/v1/agents", http.create_agents)
    app.router.add_get("/v1/agents/{namespace}/{name}", http.get_agent)
    app.router.add_delete("/v1/agents/{namespace}/{name}", http.delete_agent)
    app.router.add_get("/v1/agents/{namespace}/{name}/events", http.read_events)
    app.router.add_post("/v1/agents/{namespace}/{name}/messages", http.post_message)
    app.router.add_post("/v1/agents/{namespace}/{name}/interrupt", http.post_interrupt)
    app.router.add_post("/v1/agents/{namespace}/{name}/approvals", http.post_approval)
    app.router.add_get("/v1/agents/{namespace}/{name}/ws", ws_handler)
    app.router.add_post("/v1/tokens", http.create_token)
    return app
