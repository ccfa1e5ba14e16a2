"""The router: one URL for every agent of the cluster (the Ingress target).

It watches Agents (`status.shard`) and shard Leases (address annotation) into a `RouteTable` and
answers each request from it — no apiserver call per request. `/v1/agents/{ns}/{name}/ws` is
proxied frame by frame both ways (text and binary, close codes passed on); the HTTP API under
`/v1/agents/{ns}/{name}` is forwarded with its method, query, body and `Authorization` header.

When an agent moves to another shard (or its shard's connection drops) the router closes the
client's socket with 1012 (service restart): the client reconnects with its cursor, lands on the
new owner and misses nothing (events are durable in the agent's log on the shared volume).

Errors (JSON, the API's error shape): 404 `agent_not_found` (no such Agent), 503 `agent_not_placed`,
503 `shard_unavailable` (no Lease, expired Lease, or unreachable), 503 `agent_moving` (the shard
no longer has it; the route is about to change) — all 503s carry `Retry-After: 1` — and 504
`shard_timeout` (an HTTP request the shard did not answer within `http_timeout_s`, 60 s).
Authentication is the shard's job: the router passes `Authorization` through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType, web

from agent_runtime import errors
from agent_runtime.kube.client import KubeClient, Reflector, agents_path, leases_path, object_key
from agent_runtime.kube.names import CLOSE_MOVED, POOL_LABEL
from agent_runtime.kube.routes import Route, RouteError, RouteTable, agent_shard, shard_from_lease
from agent_runtime.listen import bound_port
from agent_runtime.taskgroups import run_until

log = logging.getLogger(__name__)

MAX_FRAME = 8 * 1024 * 1024
FORWARD_HEADERS = ("Authorization", "Content-Type", "Accept")
ROUTER_KEY: web.AppKey["Router"] = web.AppKey("router")


def _error(code: str, message: str, status: int | None = None) -> web.Response:
    """An error answer in the API's shape; the status is the code's (`errors.CODES`) unless given."""
    status = errors.spec(code).status if status is None else status
    headers = {"Retry-After": "1"} if status == 503 else None
    return web.Response(body=orjson.dumps(errors.error_body(code, message)), status=status,
                        content_type="application/json", headers=headers)


def upstream_path(request: web.Request, ns: str, name: str) -> str | None:
    """The path (and query) to forward, or None when a `..` or `.` segment (plain or
    percent-encoded) would take it out of `/v1/agents/{ns}/{name}`: the client library normalizes
    dot segments, so the shard would otherwise serve another path (another agent, `/v1/tokens`)."""
    if any(seg in (".", "..") for seg in request.path.split("/")) or ns in (".", "..") or name in (".", ".."):
        return None
    return request.path_qs


class ProxiedSocket:
    """One client WebSocket and its upstream on the owning shard."""

    def __init__(self, key: str, client: web.WebSocketResponse) -> None:
        self.key = key
        self.client = client
        self.upstream: aiohttp.ClientWebSocketResponse | None = None
        self.close_code: int | None = None  # set when the router decides the close code

    async def close(self, code: int, reason: bytes) -> None:
        self.close_code = code
        await self.client.close(code=code, message=reason)
        if self.upstream is not None:
            await self.upstream.close()


def client_close_code(upstream_code: int | None, reason: str) -> int:
    """The close code the client gets when the shard side ends: a dropped shard (no close frame,
    1006, 1011) or a shard shutting down (1001 "server shutting down") means "reconnect" (1012);
    everything else (1000, 1001 agent deleted, 1013 too slow, ...) passes through."""
    if upstream_code is None or upstream_code in (1005, 1006, 1011):
        return CLOSE_MOVED
    if upstream_code == 1001 and "shutting down" in reason:
        return CLOSE_MOVED
    return upstream_code


class Router:
    def __init__(self, table: RouteTable | None = None, http_timeout_s: float = 60.0) -> None:
        self.table = table or RouteTable()
        # The longest a proxied HTTP request may wait for the shard's answer: a hung shard must not
        # pin router requests forever (the WebSocket has its own heartbeat).
        self.http_timeout_s = http_timeout_s
        self.sockets: dict[str, set[ProxiedSocket]] = {}
        self.session: aiohttp.ClientSession | None = None
        self.moves = 0
        # Owns the socket closes a watch event starts (set by `run_router` while it serves).
        self.tasks: asyncio.TaskGroup | None = None

    # -- the table, fed by watches --------------------------------------------------------------

    def on_agent(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        if kind == "DELETED":
            if self.table.remove_agent(key):
                self._close_all(key, 1001, b"agent deleted")
            return
        if self.table.set_agent(key, agent_shard(obj)):
            self.moves += 1
            self._close_all(key, CLOSE_MOVED, b"agent moved; reconnect with your cursor")

    def on_lease(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace", ""))
        if kind == "DELETED":
            self.table.remove_shard(ns, str(meta.get("name", "")))
        else:
            self.table.set_shard(ns, shard_from_lease(obj))

    def _close_all(self, key: str, code: int, reason: bytes) -> None:
        for sock in list(self.sockets.get(key, ())):
            assert self.tasks is not None, "sockets exist only while run_router serves"
            self.tasks.create_task(sock.close(code, reason), name=f"close:{key}")

    def _target(self, request: web.Request) -> tuple[Route, str] | web.Response:
        """Where to forward `request`: its agent's route and the upstream path, or the error
        response (no route, or a path that would leave the agent)."""
        ns, name = request.match_info["namespace"], request.match_info["name"]
        try:
            route = self.table.resolve(ns, name, time.time())
        except RouteError as exc:
            return _error(exc.code, str(exc))
        path = upstream_path(request, ns, name)
        if path is None:
            return _error("bad_path", "dot segments are not allowed in agent paths")
        return route, path

    # -- HTTP -------------------------------------------------------------------------------------

    async def http_proxy(self, request: web.Request) -> web.StreamResponse:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        route, path = target
        assert self.session is not None
        headers = {h: request.headers[h] for h in FORWARD_HEADERS if h in request.headers}
        body = await request.read()
        try:
            async with self.session.request(request.method, route.address + path, headers=headers,
                                            data=body or None, allow_redirects=False,
                                            timeout=aiohttp.ClientTimeout(total=self.http_timeout_s,
                                                                          sock_connect=5)) as up:
                data = await up.read()
                if up.status == 404 and b"agent_not_found" in data and request.method != "DELETE":
                    return _error("agent_moving", f"agent {route.key} is not on shard {route.shard} any more; retry")
                out_headers = {k: v for k, v in up.headers.items() if k in ("Content-Type", "Retry-After")}
                return web.Response(body=data, status=up.status, headers=out_headers)
        except aiohttp.ConnectionTimeoutError as exc:  # a TimeoutError too: not reachable, not slow
            return _error("shard_unavailable", f"shard {route.shard} of agent {route.key} is unreachable: {exc}; retry")
        except TimeoutError:
            return _error("shard_timeout", f"shard {route.shard} did not answer for agent {route.key} within "
                          f"{self.http_timeout_s:g} s; retry")
        except (aiohttp.ClientError, OSError) as exc:
            return _error("shard_unavailable", f"shard {route.shard} of agent {route.key} is unreachable: {exc}; retry")

    # -- WebSocket --------------------------------------------------------------------------------

    async def ws_proxy(self, request: web.Request) -> web.StreamResponse:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        route, path = target
        key = route.key
        assert self.session is not None
        headers = {h: request.headers[h] for h in ("Authorization",) if h in request.headers}
        try:
            upstream = await self.session.ws_connect(route.address + path, headers=headers,
                                                     max_msg_size=MAX_FRAME, heartbeat=30.0)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 404:
                return _error("agent_moving", f"agent {key} is not on shard {route.shard} any more; retry")
            codes = {401: "unauthenticated", 403: "forbidden", 503: "unavailable", 429: "busy"}
            return _error(codes.get(exc.status, "upstream_refused"), f"shard {route.shard} refused: {exc.message}",
                          exc.status)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return _error("shard_unavailable", f"shard {route.shard} of agent {key} is unreachable: {exc}; retry")
        client = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=30.0)
        sock = ProxiedSocket(key, client)
        sock.upstream = upstream
        try:
            await client.prepare(request)
            self.sockets.setdefault(key, set()).add(sock)
            if self.table.agents.get(key) != route.shard:  # moved while we connected
                await sock.close(CLOSE_MOVED, b"agent moved; reconnect with your cursor")
                return client
            await self._pump(sock, upstream, client)
        finally:
            peers = self.sockets.get(key)
            if peers is not None:
                peers.discard(sock)
                if not peers:
                    del self.sockets[key]
            await upstream.close()
        return client

    async def _pump(self, sock: ProxiedSocket, upstream: aiohttp.ClientWebSocketResponse,
                    client: web.WebSocketResponse) -> None:
        async def down() -> None:  # shard -> client
            code: int | None = None
            reason = ""
            while True:
                msg = await upstream.receive()
                if msg.type == WSMsgType.TEXT:
                    await client.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await client.send_bytes(msg.data)
                elif msg.type == WSMsgType.CLOSE:
                    code, reason = int(msg.data), str(msg.extra or "")
                    break
                elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    code = upstream.close_code
                    break
            if sock.close_code is None:
                sock.close_code = client_close_code(code, reason)
                await client.close(code=sock.close_code, message=reason.encode()[:120] or b"upstream closed")

        async def up() -> None:  # client -> shard
            async for msg in client:
                if msg.type == WSMsgType.TEXT:
                    await upstream.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await upstream.send_bytes(msg.data)
            if sock.close_code is None:
                sock.close_code = client.close_code or 1000
                await upstream.close(code=sock.close_code)

        ended = asyncio.Event()  # one direction is done

        async def side(direction: Coroutine[Any, Any, None]) -> None:
            try:
                await direction
            except Exception as exc:  # noqa: BLE001 - ends this direction; the socket is closed below
                if not ended.is_set() and not isinstance(exc, (ConnectionResetError, aiohttp.ClientError)):
                    log.warning("proxy %s: %r", sock.key, exc)
            finally:
                ended.set()

        # Both directions in one TaskGroup; when one ends, the other gets 5 s to finish its close
        # handshake, then the deadline cancels it (the group waits for it either way).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None) as deadline, asyncio.TaskGroup() as tg:
                tg.create_task(side(down()), name=f"down:{sock.key}")
                tg.create_task(side(up()), name=f"up:{sock.key}")
                await ended.wait()
                if sock.close_code is None:
                    await sock.close(CLOSE_MOVED, b"proxy error; reconnect with your cursor")
                deadline.reschedule(asyncio.get_running_loop().time() + 5)

    # -- misc -------------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        now = time.time()
        alive = sum(1 for s in self.table.shards.values() if s.alive(now))
        return web.json_response({"status": "ok", "agents": len(self.table.agents), "shards": len(self.table.shards),
                                  "shards_alive": alive, "sockets": sum(len(s) for s in self.sockets.values()),
                                  "moves": self.moves})

    async def not_here(self, request: web.Request) -> web.Response:
        return _error("not_supported", "in Kubernetes mode agents are managed with kubectl (kubectl get/apply agents); "
                      "the router serves /v1/agents/{namespace}/{name}/...")

    async def _shutdown(self, app: web.Application) -> None:
        for key in list(self.sockets):
            for sock in list(self.sockets.get(key, ())):
                await sock.close(1001, b"router shutting down")

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app[ROUTER_KEY] = self
        app.on_shutdown.append(self._shutdown)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_route("*", "/v1/agents", self.not_here)
        app.router.add_get("/v1/agents/{namespace}/{name}/ws", self.ws_proxy)
        app.router.add_route("*", "/v1/agents/{namespace}/{name}", self.http_proxy)
        app.router.add_route("*", "/v1/agents/{namespace}/{name}/{tail:.*}", self.http_proxy)
        return app


@dataclasses.dataclass(frozen=True, slots=True)
class RouterConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8480
    namespaces: tuple[str, ...] = ()  # empty: all namespaces


@contextlib.asynccontextmanager
async def run_router(config: RouterConfig, kube: KubeClient | None, router: Router | None = None) -> AsyncIterator[tuple[Router, str]]:
    """Serve the router (and, with `kube`, keep its table current from watches)."""
    router = router or Router()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)) as session:
        router.session = session
        runner = web.AppRunner(router.make_app(), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, config.listen_host, config.listen_port)
        await site.start()
        url = f"http://{config.listen_host}:{bound_port(site, config.listen_port)}"
        reflectors = [] if kube is None else [
            reflector for ns in config.namespaces or (None,)
            for reflector in (Reflector(kube, agents_path(ns), router.on_agent),
                              Reflector(kube, leases_path(ns), router.on_lease, label_selector=POOL_LABEL))]
        stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:  # the watches, and the socket closes they start
                router.tasks = tg
                tg.create_task(run_until(stop, *(r.run() for r in reflectors)), name="watches")
                try:
                    yield router, url
                finally:
                    stop.set()
        finally:
            router.tasks = None
            await runner.cleanup()


async def serve_router(config: RouterConfig, kubeconfig: str | None) -> None:
    from agent_runtime.kube.client import connect

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # two watches per namespace (Agents, Leases), each holding a connection all along
    async with connect(kubeconfig, watches=2 * len(config.namespaces or (None,))) as kube, \
            run_router(config, kube) as (_, url):
        print(f"router listening on {url} (pid {os.getpid()})", flush=True)
        await stop.wait()
