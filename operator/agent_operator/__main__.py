"""`python -m agent_operator --kubeconfig PATH --namespace NS [--data DIR]`: run the operator.

kopf's watchers (RuntimePools, Leases), the Agent watches and the Controller's planner and
workers run under one TaskGroup. kopf handles SIGTERM/SIGINT; its cleanup handler stops the
planner, and everything ends when kopf returns. Without --kubeconfig: $KUBECONFIG, else the
in-cluster service account.

Agents are watched by a plain list + watch (`Reflector`), not by kopf: the controller only needs
each object as it is, and kopf's per-object machinery (per-object workers, cause detection, a deep
copy and a diff-base of every body) cost ~3 ms of CPU per Agent event — a drain of 1,000 agents
brings ~3,000 of them (placements, the new owners' reports, the router's and shards' echoes).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import aiohttp
import kopf

from agent_operator.controller import GV, Controller, Settings
from agent_operator.handlers import build_registry
from agent_operator.paths import path_for
from agent_runtime.kube.client import ApiError, KubeClient, Reflector
from agent_runtime.kube.config import KubeConfig, KubeConfigError, load


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agent_operator", description="agent-runtime Kubernetes operator")
    p.add_argument("--kubeconfig", type=Path, default=None, help="kubeconfig file (default: $KUBECONFIG, in-cluster)")
    p.add_argument("--namespace", "-n", action="append", default=[],
                   help="namespace to watch (repeatable; default: all namespaces)")
    p.add_argument("--data", type=Path, default=None,
                   help="the pools' shared data volume, mounted here: deleted agents' folders are archived/removed "
                        "directly (without it, the owning shard is asked via DELETE)")
    p.add_argument("--workers", type=int, default=32, help="concurrent apiserver writes")
    p.add_argument("--no-pools", action="store_true",
                   help="do not converge RuntimePool objects (StatefulSet etc.); placement only")
    p.add_argument("--liveness", default=None, metavar="URL",
                   help="serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, conn: KubeConfig) -> None:
    # the workers bound the writes in flight (--workers); each namespace's Agent watch holds one
    # connection all along, on top of the 64 for lists and writes
    async with KubeClient(conn, connections=64 + len(args.namespace or [None])) as api:
        controller = Controller(api, Settings(namespaces=tuple(args.namespace), data_dir=args.data,
                                              workers=args.workers, manage_pools=not args.no_pools))
        registry = build_registry(controller, conn)
        async with asyncio.TaskGroup() as tg:
            # the controller keeps its own view; a refused first list (RBAC) stops the operator
            # with the reason, as prime()'s lists do, instead of waiting below forever
            agent_watches = [Reflector(api, path_for(GV, "agents", ns), controller.on_agent,
                                       keep_objects=False, fatal_before_sync=True)
                             for ns in args.namespace or (None,)]
            tasks = [tg.create_task(r.run(), name=f"watch:{r.path}") for r in agent_watches]
            await startup(controller, agent_watches)
            tasks.append(tg.create_task(controller.run(), name="planner"))

            async def watch() -> None:
                try:
                    await kopf.operator(registry=registry, standalone=True, namespaces=args.namespace,
                                        clusterwide=not args.namespace,
                                        liveness_endpoint=args.liveness)
                finally:
                    for task in tasks:
                        task.cancel()

            tg.create_task(watch())


async def startup(controller: Controller, agent_watches: list[Reflector]) -> None:
    """Before the first plan: every Agent listed (the watches' first lists), THEN the pools and
    Leases (`prime`). In that order because a Lease's first sighting starts its expiry clock: listing
    100,000 Agents can take longer than a Lease's duration, and Leases seen before that would look
    expired at the first plan — every agent of every shard re-placed at once."""
    for r in agent_watches:
        await r.synced.wait()
    await controller.prime()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        conn = load(str(args.kubeconfig) if args.kubeconfig else None)  # file reads before the loop starts
    except KubeConfigError as exc:
        raise SystemExit(f"agent-operator: {exc}") from None
    try:
        asyncio.run(run(args, conn))
    except* (ApiError, aiohttp.ClientError, OSError) as group:  # the apiserver refused or is unreachable
        first = _leaves(group)[0]
        raise SystemExit(f"agent-operator: cannot run: {type(first).__name__}: {first}") from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


if __name__ == "__main__":
    main()
