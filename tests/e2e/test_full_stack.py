"""The whole stack on a real kube-apiserver: operator + shards + router, each started as its pod
would run it, driven with kubectl like a user would.

kubectl apply → placed → a client attaches through the router, chats, tools run → status shows
turns and tokens; kill -9 the owning shard → its Lease expires → the operator re-places the agent →
the client reconnecting through the router sees every acknowledged event; kubectl delete → the
finalizer archives the folder → gone.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from stack import Proc, RoutedAgent, eventually, start_router, start_shard

from agent_runtime.kube.client import KubeClient, NotFound, agents_path
from agent_runtime.kube.config import load_kubeconfig
from harness import Cluster

LEASE_S = 6
POOL = "pool"


def pool_yaml(namespace: str, shards: int) -> str:
    return (f"apiVersion: agentruntime.dev/v1alpha1\nkind: RuntimePool\nmetadata:\n  name: {POOL}\n  namespace: {namespace}\n"
            f"spec:\n  region: local\n  shards: {shards}\n  capacityPerShard: 100\n  leaseDurationSeconds: {LEASE_S}\n")


def agent_yaml(name: str, namespace: str) -> str:
    return (f"apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
            f"spec:\n  runtimePool: {POOL}\n  model: {{provider: simulated, name: sim-coder-1}}\n"
            "  limits: {tokenBudget: 10000000}\n")


def operator_argv(kubeconfig: Path, namespace: str, data: Path) -> list[str]:
    """What the operator Deployment runs (the pool volume mounted at --data)."""
    return [sys.executable, "-m", "agent_operator", "--kubeconfig", str(kubeconfig), "--namespace", namespace,
            "--data", str(data)]


class FullStack:
    def __init__(self, cluster: Cluster, namespace: str, tmp: Path, kube: KubeClient, http: aiohttp.ClientSession) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.data = tmp / "pool-volume"
        self.logs = tmp / "logs"
        self.kube = kube
        self.http = http
        self.procs: dict[str, Proc] = {}
        self.clients: list[RoutedAgent] = []
        self.router_url = ""

    def start(self, shards: int) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=pool_yaml(self.ns, shards))
        self.procs["operator"] = Proc("operator", operator_argv(self.cluster.kubeconfig, self.ns, self.data),
                                      {**os.environ, "PYTHONUNBUFFERED": "1"}, self.logs)
        for i in range(shards):
            name = f"{POOL}-{i}"
            self.procs[name] = start_shard(self.ns, POOL, name, self.data, self.cluster.kubeconfig, self.logs,
                                           lease_duration=LEASE_S)
        router = start_router(self.cluster.kubeconfig, self.logs, (self.ns,))
        self.procs["router"] = router
        assert router.url
        self.router_url = router.url

    @property
    def admin(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    async def status(self, name: str) -> dict[str, Any]:
        return (await self.kube.get(agents_path(self.ns, name))).get("status") or {}

    async def running(self, name: str, not_on: str | None = None, timeout: float = 40) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            s = await self.status(name)
            ok = s.get("phase") == "Running" and s.get("shard") and s.get("shard") != not_on
            return s if ok else None

        try:
            result: dict[str, Any] = await eventually(check, timeout, f"{name} Running (not on {not_on})", 0.2)
        except AssertionError:
            for p in self.procs.values():
                print(f"--- {p.name}\n{p.tail(30)}")
            raise
        return result

    def client(self, router: str, key: str, token: str) -> RoutedAgent:
        c = RoutedAgent(self.http, router, key, token)
        self.clients.append(c)
        return c

    async def close_clients(self) -> None:
        for c in self.clients:
            await c.close()

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()


@pytest_asyncio.fixture
async def full(apiserver: Cluster, namespace: str, tmp_path: Path) -> AsyncIterator[FullStack]:
    async with KubeClient(load_kubeconfig(apiserver.kubeconfig)) as kube, aiohttp.ClientSession() as http:
        s = FullStack(apiserver, namespace, tmp_path, kube, http)
        try:
            yield s
        finally:
            await s.close_clients()
            s.stop()
    gc.collect()  # an unreleased connection warns here, in this test, not in a later one


async def test_apply_chat_kill_shard_reconnect_delete(full: FullStack) -> None:
    full.start(shards=2)
    full.cluster.kubectl("apply", "-f", "-", input=agent_yaml("coder", full.ns))
    first = await full.running("coder")
    owner = first["shard"]
    assert owner in ("pool-0", "pool-1")
    assert any(c.get("type") == "Placed" and c.get("status") == "True" for c in first.get("conditions") or [])

    # a client attaches through the router, chats, tools run
    client = full.client(full.router_url, f"{full.ns}/coder", full.admin)
    acked = [await client.send("task: write fib")]
    await client.until_idle_after(acked[0])
    assert {"tool_call", "tool_result"} <= {e["kind"] for e in client.events.values()}
    assert (full.data / "agents" / full.ns / "coder" / "workspace" / "fib.py").exists()
    acked.append(await client.send("and another"))
    await client.until_idle_after(acked[-1])

    async def counted() -> dict[str, Any] | None:
        s = await full.status("coder")
        return s if s.get("turns", 0) >= 2 and s.get("tokens", {}).get("input", 0) > 0 else None

    status = await eventually(counted, 20, "turns and tokens in the Agent status")
    assert status["tokens"]["output"] > 0
    table = full.cluster.kubectl("get", "agents", "-n", full.ns).stdout
    assert "coder" in table and owner in table

    # kill -9 the owning shard: its Lease expires, the operator re-places the agent
    full.procs[owner].kill9()
    moved = await full.running("coder", not_on=owner, timeout=LEASE_S * 3 + 20)
    assert moved["shard"] != owner
    acked.append(await client.send("after the crash"))
    await client.until_idle_after(acked[-1])
    assert sorted(client.events) == list(range(1, max(client.events) + 1))  # every event, no gap
    assert all(seq in client.events for seq in acked)
    texts = [e["data"]["text"] for e in client.events.values() if e["kind"] == "user_message"]
    assert texts == ["task: write fib", "and another", "after the crash"]
    # a second client from cursor 0 reads the same history from the new shard
    again = full.client(full.router_url, f"{full.ns}/coder", full.admin)
    await again.connect()
    await again.until(lambda e: e["seq"] == max(client.events))
    assert [again.events[s]["kind"] for s in sorted(again.events)] == [client.events[s]["kind"] for s in sorted(client.events)]
    await again.close()
    await client.close()

    # delete: the finalizer runs (folder archived, spec.onDelete default), then the object is gone
    full.cluster.kubectl("delete", "agent", "coder", "-n", full.ns, "--wait=false")

    async def gone() -> bool:
        try:
            await full.kube.get(agents_path(full.ns, "coder"))
        except NotFound:
            return True
        return False

    await eventually(gone, 30, "the Agent object to be deleted")
    await eventually(lambda: asyncio.sleep(0, not (full.data / "agents" / full.ns / "coder").exists()), 10,
                     "the agent folder to leave the live tree")
    assert list((full.data / "archive").rglob("events.db")), "archived log (onDelete: archive)"
