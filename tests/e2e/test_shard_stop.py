"""How an in-process shard (`run_shard`, what `agentctl shard` runs) stops, against a real apiserver.

SIGTERM is not the only way out of `run_shard`: whatever ends its body (an error in the caller, a
cancellation) must still stop the shard the graceful way — every agent released (snapshot, owner
lock dropped) and the Lease given up at once, so the operator re-places the agents now instead of a
Lease duration later and the next owner finds the lock free.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from stack import eventually

from agent_runtime.kube import fence
from agent_runtime.kube.client import KubeClient, agents_path, leases_path
from agent_runtime.kube.config import load_kubeconfig
from agent_runtime.kube.shard import RunningShard, ShardConfig, run_shard
from agent_runtime.standalone import ServerConfig
from harness import Cluster

POOL = "pool"
SHARD = "pool-0"


def agent_yaml(name: str, namespace: str) -> str:
    return (f"apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
            "spec:\n  model: {provider: simulated, name: sim-coder-1}\n  limits: {tokenBudget: 10000000}\n")


@pytest_asyncio.fixture
async def kube(apiserver: Cluster) -> AsyncIterator[KubeClient]:
    async with KubeClient(load_kubeconfig(apiserver.kubeconfig)) as client:
        yield client


class Boom(Exception):
    pass


async def _placed_and_active(apiserver: Cluster, kube: KubeClient, ns: str, running: RunningShard) -> None:
    apiserver.kubectl("apply", "-f", "-", input=agent_yaml("a", ns))
    await kube.merge_patch(agents_path(ns, "a", status=True), {"status": {"shard": SHARD, "phase": "Placed"}})

    async def active() -> bool:
        return f"{ns}/a" in running.shard.active

    await eventually(active, 20, "agent a active on the in-process shard")


async def _stopped_gracefully(kube: KubeClient, ns: str, data: Path) -> None:
    lease: dict[str, Any] = await kube.get(leases_path(ns, SHARD))
    renewed = datetime.datetime.strptime(lease["spec"]["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
    expires = renewed + datetime.timedelta(seconds=lease["spec"]["leaseDurationSeconds"])
    assert expires < datetime.datetime.now(datetime.UTC), "the Lease was not given up"
    fd = await fence.acquire(data / "agents" / ns / "a", "test", timeout_s=1)  # released: the lock is free
    await fence.release(fd)


def _config(ns: str, data: Path) -> ShardConfig:
    return ShardConfig(namespace=ns, pool=POOL, shard=SHARD, lease_duration_s=6,
                       server=ServerConfig(data_dir=data, port=0, auth=False))


async def test_an_error_in_the_body_still_releases_every_agent_and_gives_up_the_lease(
        apiserver: Cluster, namespace: str, kube: KubeClient, tmp_path: Path) -> None:
    with pytest.raises(Boom):
        async with run_shard(_config(namespace, tmp_path), kube) as running:
            await _placed_and_active(apiserver, kube, namespace, running)
            raise Boom
    assert running.shard.watch.releases == 1
    await _stopped_gracefully(kube, namespace, tmp_path)


async def test_a_cancelled_body_still_releases_every_agent_and_gives_up_the_lease(
        apiserver: Cluster, namespace: str, kube: KubeClient, tmp_path: Path) -> None:
    ready = asyncio.Event()
    shards: list[RunningShard] = []

    async def serve() -> None:
        async with run_shard(_config(namespace, tmp_path), kube) as running:
            shards.append(running)
            await _placed_and_active(apiserver, kube, namespace, running)
            ready.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(serve())
    await asyncio.wait_for(ready.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert shards[0].shard.watch.releases == 1
    await _stopped_gracefully(kube, namespace, tmp_path)
