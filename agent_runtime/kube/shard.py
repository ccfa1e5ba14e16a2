"""Shard mode: one pod of a RuntimePool's StatefulSet (or the same process started by a test).

It serves the standalone server (`standalone.serve`: Host + HTTP/WebSocket API) over the pool's
shared data volume with a shard's placement plugged in (`ShardPlacement`): the agents are those
the Agent watch places here, the token file is shared by the pool's shards (the admin token from
the pool's Secret), and next to the server runs the `Shard`:
- the placement watch (`kube.placement_watch`): Agents placed here activated, updated, released;
- the Lease (`kube.lease`): the heartbeat carrying the shard's address; a shard that cannot renew
  for a whole duration releases its agents (it may have been replaced);
- the status reporter (`kube.reporter`): every agent's phase/turns/tokens, patched to
  `Agent.status` coalesced and under a per-shard rate cap;
- a loop-lag probe (`looplag`) that logs when the event loop falls behind.
An HTTP guard in front of the API refuses what an Agent object owns (creating, deleting agents)
and answers 503 for an agent that is placed here but not active yet.

SIGTERM: stop watching, release every agent (snapshots written), then end the Lease at once (its
renewTime a whole duration back) so the operator re-places the agents without waiting for expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from agent_runtime import errors, layout
from agent_runtime.auth import Role, TokenStore
from agent_runtime.host import Host
from agent_runtime.kube.client import KubeClient
from agent_runtime.kube.lease import Lease
from agent_runtime.kube.placement_watch import Active, PlacementWatch
from agent_runtime.kube.reporter import StatusReporter
from agent_runtime.kube.tokens import SharedTokenStore, ensure_admin_token
from agent_runtime.looplag import sample_loop_lag
from agent_runtime.standalone import Credentials, ServerConfig, serve
from agent_runtime.taskgroups import run_until
from agent_runtime.server.shared import error_response

log = logging.getLogger(__name__)

LAG_PERIOD_S = 0.5  # how often the loop-lag probe sleeps
LAG_WARN_S = 1.0  # a lag worth a log line


@dataclasses.dataclass(frozen=True, slots=True)
class ShardConfig:
    namespace: str
    pool: str
    shard: str
    server: ServerConfig  # data_dir: the pool's shared volume; host/port: where to listen; auth, admin token file, agents' config
    advertise: str | None = None  # the base URL the router uses (None: the bound address)
    lease_duration_s: int = 15
    status_rate: float = 20.0  # patches per second, whole shard
    arrival_rate: float = 50.0  # first reports of agents that arrived (placement, drains), their own bucket
    status_interval_s: float = 1.0
    status_in_flight: int = 8  # most status patches awaiting the apiserver at once
    lock_timeout_s: float = 30.0
    activate_concurrency: int = 16


class Shard:
    """The placement watch, Lease and status reporter of one shard, over a running Host."""

    def __init__(self, config: ShardConfig, host: Host, kube: KubeClient, lease_kube: KubeClient | None = None) -> None:
        self.config = config
        self.host = host
        self.kube = kube
        self.reporter = StatusReporter(kube, host, config.shard, rate=config.status_rate,
                                       arrival_rate=config.arrival_rate, interval_s=config.status_interval_s,
                                       in_flight=config.status_in_flight)
        # The heartbeat has its own connection pool: it never queues behind status patches. Its
        # own Lease is watched too: a drain (`agentctl drain`, the operator's scale-down) is known
        # at once, and activity reports are held while the agents move away.
        self.lease = Lease(lease_kube or kube, config.namespace, config.pool, config.shard, config.lease_duration_s,
                           on_draining=self.reporter.set_draining)
        self.watch = PlacementWatch(kube, host, self.reporter, namespace=config.namespace, shard=config.shard,
                                    data_dir=config.server.data_dir, lock_timeout_s=config.lock_timeout_s,
                                    concurrency=config.activate_concurrency, fenced=lambda: self.lease.lost)
        self.max_loop_lag_s = 0.0

    @property
    def address(self) -> str:
        return self.lease.address

    @property
    def active(self) -> dict[str, Active]:
        return self.watch.active

    def starting(self, key: str) -> bool:
        return self.watch.starting(key)

    def refuse_delete(self, key: str) -> str | None:
        return self.watch.refuse_delete(key)

    def _loop_lag(self, lag: float) -> None:
        """Log when the event loop falls behind (a late Lease renewal's usual cause)."""
        self.max_loop_lag_s = max(self.max_loop_lag_s, lag)
        if lag > LAG_WARN_S:
            log.warning("event loop %.1fs late", lag)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: then stop watching, release every agent, and only then give up the Lease
        (no renewal may land after it is given up); status patches in flight finish last."""
        lease_stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:  # the heartbeat, and the status patches in flight
            heartbeat = self.lease.run(on_lost=self.watch.release_all, on_regained=self.watch.requeue_all)
            lease = tg.create_task(run_until(lease_stop, heartbeat), name="lease")
            await run_until(
                stop, self.watch.reflector.run(), self.lease.reflector.run(),
                *(self.watch.worker() for _ in range(self.config.activate_concurrency)),
                self.reporter.run(self.watch, tg), sample_loop_lag(LAG_PERIOD_S, self._loop_lag))
            await self.watch.release_all()
            lease_stop.set()
            await lease
            await self.lease.give_up()


def _starting_middleware(shard: Shard, tokens: TokenStore) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.rstrip("/") == "/v1/agents" and request.method == "POST":
            # Agents come through the Agent watch (owner lock first); one created here would write
            # a log on the shared volume without the lock, next to its real owner.
            return error_response(errors.NotSupported("in Kubernetes mode agents are managed with kubectl (kubectl apply agents)"))
        ns, name = request.match_info.get("namespace"), request.match_info.get("name")
        if ns and name and request.method == "DELETE" and request.path.rstrip("/") == f"/v1/agents/{ns}/{name}":
            # The Agent object owns deletion: the shard that holds the agent archives or removes
            # its folder (spec.onDelete) when it sees the deletion timestamp; never rmtree here.
            TokenStore.authorize(tokens.authenticate(request.headers.get("Authorization")), ns, name, Role.ADMIN)
            why = shard.refuse_delete(f"{ns}/{name}")
            if why is not None:
                return error_response(errors.Error(why, code="conflict"))
            accepted: dict[str, object] = {
                "accepted": True, "message": "the owning shard disposes of the folder per spec.onDelete"}
            return web.Response(body=orjson.dumps(accepted), status=202, content_type="application/json")
        if ns and name and shard.starting(f"{ns}/{name}"):
            starting = error_response(errors.Error(f"agent {ns}/{name} is starting on shard {shard.config.shard}; retry",
                                                   code="agent_starting"))
            starting.headers["Retry-After"] = "1"
            return starting
        response: web.StreamResponse = await handler(request)
        return response

    return middleware


@dataclasses.dataclass(slots=True)
class RunningShard:
    shard: Shard
    host: Host
    url: str
    admin_token: str | None


class ShardPlacement:
    """`standalone.serve`'s placement for a shard: agents come from the Agent watch (no manifests
    folder, no boot-time scan of the shared volume: other shards own most of it), tokens from the
    pool's shared token file, and the `Shard` runs while the server listens."""

    def __init__(self, config: ShardConfig, kube: KubeClient) -> None:
        self.config = config
        self.kube = kube
        self._tokens: SharedTokenStore | None = None
        self._shard: Shard | None = None

    @property
    def shard(self) -> Shard:
        assert self._shard is not None, "not attached to a host yet"
        return self._shard

    async def credentials(self, config: ServerConfig) -> Credentials:
        admin = await asyncio.to_thread(ensure_admin_token, config.token_file) if config.auth else None
        self._tokens = await asyncio.to_thread(SharedTokenStore, layout.tokens_file(config.data_dir), admin, config.auth)
        return Credentials(self._tokens, admin, config.token_file)

    async def attach(self, host: Host, app: web.Application, credentials: Credentials) -> None:
        self._shard = Shard(self.config, host, self.kube, lease_kube=KubeClient(self.kube.config))
        app.middlewares.append(_starting_middleware(self._shard, credentials.tokens))

    @contextlib.asynccontextmanager
    async def running(self, url: str) -> AsyncIterator[None]:
        assert self._tokens is not None
        shard = self.shard
        shard.lease.address = self.config.advertise or url
        stop = asyncio.Event()
        async with shard.lease.kube, asyncio.TaskGroup() as tg:
            tg.create_task(shard.run(stop), name="shard")
            tg.create_task(run_until(stop, self._tokens.watch()), name="tokens")  # other shards' new tokens
            try:
                yield
            finally:
                stop.set()


@contextlib.asynccontextmanager
async def run_shard(config: ShardConfig, kube: KubeClient) -> AsyncIterator[RunningShard]:
    """Serve the shard's API and run its controller until the context exits (then release all)."""
    placement = ShardPlacement(config, kube)
    async with serve(config.server, placement=placement) as running:
        yield RunningShard(placement.shard, running.host, running.url, running.admin_token)


async def serve_shard(config: ShardConfig, kubeconfig: str | None) -> None:
    """`agentctl shard`: run until SIGTERM/SIGINT, then release every agent and exit."""
    from agent_runtime.kube.client import connect

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with connect(kubeconfig) as kube, run_shard(config, kube) as running:
        print(f"shard {config.shard} of pool {config.namespace}/{config.pool} listening on {running.url} "
              f"(advertised {running.shard.address}, pid {os.getpid()})", flush=True)
        await stop.wait()
        print(f"shard {config.shard}: stopping, releasing {len(running.shard.active)} agents", flush=True)
