"""Shards and the router on a real kube-apiserver, processes started exactly as the pods run them.

Here the test itself places agents (status.shard, what the operator writes), so these tests
pin the shard/router half of the contract; test_full_stack.py runs the same flows with the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from stack import Proc, RoutedAgent, eventually, start_router, start_shard

from agent_runtime.kube.client import ApiError, KubeClient, NotFound, Reflector, agents_path, leases_path
from agent_runtime.kube.config import load_kubeconfig
from agent_runtime.kube.names import DRAINING_ANNOTATION, SHARD_FIELD
from agent_runtime.kube.status import owned_status_patch
from harness import ROOT, Cluster

LEASE_S = 6
POOL = "pool"


def agent_yaml(name: str, namespace: str) -> str:
    return (f"apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
            "spec:\n  model: {provider: simulated, name: sim-coder-1}\n  limits: {tokenBudget: 10000000}\n")


class Stack:
    def __init__(self, cluster: Cluster, namespace: str, tmp: Path, kube: KubeClient, http: aiohttp.ClientSession) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.data = tmp / "pool-volume"  # the pool's shared volume
        self.logs = tmp / "logs"
        self.kube = kube
        self.http = http
        self.shards: dict[str, Proc] = {}
        self.clients: list[RoutedAgent] = []
        self.router: Proc | None = None

    def shard(self, name: str) -> Proc:
        p = start_shard(self.ns, POOL, name, self.data, self.cluster.kubeconfig, self.logs, lease_duration=LEASE_S)
        self.shards[name] = p
        return p

    def start_router(self) -> str:
        self.router = start_router(self.cluster.kubeconfig, self.logs, (self.ns,))
        assert self.router.url
        return self.router.url

    @property
    def admin(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    async def place(self, name: str, shard: str) -> None:
        """What the operator does: ONE status write (the shards watch status.shard, so does the router)."""
        await self.kube.merge_patch(agents_path(self.ns, name, status=True), {"status": {"shard": shard, "phase": "Placed"}})

    async def agent(self, name: str) -> dict[str, Any]:
        return await self.kube.get(agents_path(self.ns, name))

    async def status(self, name: str) -> dict[str, Any]:
        return (await self.agent(name)).get("status") or {}

    async def running_on(self, name: str, shard: str, timeout: float = 30) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            s = await self.status(name)
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in s.get("conditions") or [])
            return s if s.get("phase") == "Running" and s.get("shard") == shard and ready else None

        result: dict[str, Any] = await eventually(check, timeout, f"{name} Running on {shard}")
        return result

    def client(self, router: str, key: str, token: str) -> RoutedAgent:
        c = RoutedAgent(self.http, router, key, token)
        self.clients.append(c)
        return c

    async def close_clients(self) -> None:
        for c in self.clients:
            await c.close()

    def stop(self) -> None:
        for p in [*self.shards.values(), *([self.router] if self.router else [])]:
            p.stop()


@pytest_asyncio.fixture
async def stack(apiserver: Cluster, namespace: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with KubeClient(load_kubeconfig(apiserver.kubeconfig)) as kube, aiohttp.ClientSession() as http:
        s = Stack(apiserver, namespace, tmp_path, kube, http)
        try:
            yield s
        finally:
            await s.close_clients()
            s.stop()
    gc.collect()  # an unreleased connection warns here, in this test, not in a later one


async def test_a_shards_field_selector_watch_sees_agents_arrive_and_leave(stack: Stack) -> None:
    """The shard's watch (Reflector, fieldSelector=status.shard=<shard>, a selectable field of the
    CRD) gets ADDED when an agent is placed on it, and DELETED when status.shard names another shard
    or none: its release path depends on that."""
    for name in ("w1", "w2"):
        stack.cluster.kubectl("apply", "-f", "-", input=agent_yaml(name, stack.ns))
    await stack.place("w1", "pool-0")  # before the watch starts: found by the first LIST
    seen: list[tuple[str, str, str | None]] = []
    reflector = Reflector(stack.kube, agents_path(stack.ns),
                          lambda kind, obj: seen.append((kind, obj["metadata"]["name"], obj["status"].get("shard"))),
                          field_selector=f"{SHARD_FIELD}=pool-0")
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(reflector.synced.wait(), 10)
        assert seen == [("ADDED", "w1", "pool-0")]
        await stack.place("w2", "pool-1")  # not ours: nothing arrives
        await stack.place("w2", "pool-0")
        await stack.kube.merge_patch(agents_path(stack.ns, "w2", status=True), {"status": {"turns": 2}})
        await stack.place("w1", "pool-1")  # re-placed elsewhere
        await stack.kube.merge_patch(agents_path(stack.ns, "w2", status=True),
                                     {"status": {"shard": None, "phase": "Pending"}})
        async def five() -> bool:
            return len(seen) >= 5

        await eventually(five, 10, "five watch events")
        assert seen[1:] == [("ADDED", "w2", "pool-0"), ("MODIFIED", "w2", "pool-0"),
                            ("DELETED", "w1", "pool-0"), ("DELETED", "w2", "pool-0")]
        assert reflector.store == {}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_late_status_patch_from_the_previous_owner_is_refused(stack: Stack) -> None:
    """Shards report status with `owned_status_patch`: a JSON patch whose first op tests
    status.shard. The previous owner's late report (sent before it saw the agent leave) is refused
    with 422 and the new owner's report stays; the same body as a merge patch would overwrite it."""
    stack.cluster.kubectl("apply", "-f", "-", input=agent_yaml("late", stack.ns))
    path = agents_path(stack.ns, "late", status=True)
    await stack.place("late", "pool-0")

    def report(shard: str, turns: int) -> dict[str, Any]:
        ready = {"type": "Ready", "status": "True", "reason": "Active", "message": f"active on shard {shard}",
                 "lastTransitionTime": "2026-11-25T10:00:00Z"}
        return {"phase": "Running", "turns": turns, "conditions": [ready]}

    await stack.kube.json_patch(path, owned_status_patch("pool-0", report("pool-0", 1)))
    await stack.place("late", "pool-1")  # re-placed
    await stack.kube.json_patch(path, owned_status_patch("pool-1", report("pool-1", 3)))  # the new owner reports
    with pytest.raises(ApiError) as refused:
        await stack.kube.json_patch(path, owned_status_patch("pool-0", report("pool-0", 2)))  # the old one, late
    assert refused.value.status == 422 and " is invalid" not in refused.value.message  # how the shard tells it apart
    with pytest.raises(ApiError) as invalid:  # from a schema error (also 422), which is not "refused"
        await stack.kube.json_patch(path, owned_status_patch("pool-1", {"turns": "three"}))
    assert invalid.value.status == 422 and " is invalid" in invalid.value.message
    status = await stack.status("late")
    assert status["shard"] == "pool-1" and status["turns"] == 3
    assert [c["message"] for c in status["conditions"]] == ["active on shard pool-1"]
    # without the test op (a merge patch, what shards sent before) the late report overwrote it
    await stack.kube.merge_patch(path, {"status": report("pool-0", 2)})
    assert (await stack.status("late"))["conditions"][0]["message"] == "active on shard pool-0"
    # an agent with no status.shard at all refuses every shard's report too
    await stack.kube.merge_patch(path, {"status": {"shard": None, "phase": "Pending"}})
    with pytest.raises(ApiError) as unplaced:
        await stack.kube.json_patch(path, owned_status_patch("pool-1", report("pool-1", 4)))
    assert unplaced.value.status == 422


async def test_placed_agent_runs_reports_status_and_chats_through_the_router(stack: Stack) -> None:
    stack.cluster.kubectl("apply", "-f", "-", input=agent_yaml("coder", stack.ns))
    stack.shard("pool-0")
    router = stack.start_router()
    await stack.place("coder", "pool-0")
    await stack.running_on("coder", "pool-0")
    lease = await stack.kube.get(leases_path(stack.ns, "pool-0"))
    assert lease["spec"]["holderIdentity"] == "pool-0"
    assert lease["metadata"]["annotations"]["agentruntime.dev/address"] == stack.shards["pool-0"].url

    client = stack.client(router, f"{stack.ns}/coder", stack.admin)
    seq = await client.send("task: write fib")
    await client.until_idle_after(seq)
    kinds = {e["kind"] for e in client.events.values()}
    assert {"tool_call", "tool_result", "assistant_message"} <= kinds
    assert (stack.data / "agents" / stack.ns / "coder" / "workspace" / "fib.py").exists()  # the tool wrote it

    async def counted() -> dict[str, Any] | None:
        s = await stack.status("coder")
        return s if s.get("turns", 0) >= 1 and s.get("tokens", {}).get("input", 0) > 0 else None

    status = await eventually(counted, 15, "turns and tokens in status")
    assert status["tokens"]["output"] > 0 and "lastActivity" in status and 0 <= status["cachedShare"] <= 1
    assert status["costUnits"] > 0 and status["compressions"] >= 0  # estimated cost, frozen chunks made
    assert status["shard"] == "pool-0"  # the operator's field is untouched
    table = stack.cluster.kubectl("get", "agents", "-n", stack.ns).stdout
    assert "coder" in table and "Running" in table and "pool-0" in table
    await client.close()


async def test_kill_9_then_replacement_loses_no_acknowledged_event(stack: Stack) -> None:
    stack.cluster.kubectl("apply", "-f", "-", input=agent_yaml("a", stack.ns))
    first = stack.shard("pool-0")
    stack.shard("pool-1")
    router = stack.start_router()
    await stack.place("a", "pool-0")
    await stack.running_on("a", "pool-0")
    client = stack.client(router, f"{stack.ns}/a", stack.admin)
    acked = [await client.send(f"message {i}") for i in range(3)]
    await client.until_idle_after(acked[-1])

    first.kill9()  # no goodbye: its flock is released by the kernel, its Lease stops being renewed
    renewed = (await stack.kube.get(leases_path(stack.ns, "pool-0")))["spec"]["renewTime"]
    await asyncio.sleep(0.5)
    assert (await stack.kube.get(leases_path(stack.ns, "pool-0")))["spec"]["renewTime"] == renewed
    await stack.place("a", "pool-1")  # the operator's re-placement
    await stack.running_on("a", "pool-1")

    acked.append(await client.send("after the move"))  # reconnects through the router
    await client.until_idle_after(acked[-1])
    assert client.closes, "the client's socket was closed when its shard died"
    cursor = client.cursor
    assert all(seq <= cursor for seq in acked)
    assert sorted(client.events) == list(range(1, max(client.events) + 1))  # gap-free, nothing lost
    texts = [e["data"]["text"] for e in client.events.values() if e["kind"] == "user_message"]
    assert texts == ["message 0", "message 1", "message 2", "after the move"]


async def test_drain_moves_agent_with_1012_and_every_event_kept(stack: Stack) -> None:
    stack.cluster.kubectl("apply", "-f", "-", input=agent_yaml("b", stack.ns))
    stack.shard("pool-0")
    stack.shard("pool-1")
    router = stack.start_router()
    await stack.place("b", "pool-0")
    await stack.running_on("b", "pool-0")
    client = stack.client(router, f"{stack.ns}/b", stack.admin)
    first = await client.send("task: write primes")
    await client.until_idle_after(first)

    proc = await asyncio.create_subprocess_exec(
        *stack.shards["pool-0"].argv[:3], "drain", "pool-0", "--namespace", stack.ns,
        "--kubeconfig", str(stack.cluster.kubeconfig), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and b"draining" in out
    lease = await stack.kube.get(leases_path(stack.ns, "pool-0"))
    assert lease["metadata"]["annotations"][DRAINING_ANNOTATION] == "true"
    await asyncio.sleep(LEASE_S / 3 + 0.5)  # a renewal after the drain keeps the annotation
    lease = await stack.kube.get(leases_path(stack.ns, "pool-0"))
    assert lease["metadata"]["annotations"][DRAINING_ANNOTATION] == "true"

    await stack.place("b", "pool-1")  # the operator moves the drained shard's agents
    await stack.running_on("b", "pool-1")
    second = await client.send("after the drain")
    await client.until_idle_after(second)
    assert 1012 in client.closes
    assert sorted(client.events) == list(range(1, max(client.events) + 1))
    # the old shard released it: its owner lock is now held by pool-1
    lock = (stack.data / "agents" / stack.ns / "b" / "owner.lock").read_text()
    assert lock.startswith("pool-1 ")


async def test_unknown_and_unplaced_agents_get_typed_errors_and_sigterm_releases(stack: Stack) -> None:
    stack.cluster.kubectl("apply", "-f", "-", input=agent_yaml("c", stack.ns))
    shard = stack.shard("pool-0")
    router = stack.start_router()

    async def router_knows() -> bool:
        async with stack.http.get(f"{router}/v1/agents/{stack.ns}/c/events") as resp:
            return resp.status == 503

    await eventually(router_knows, 15, "router sees the unplaced agent")
    async with stack.http.get(f"{router}/v1/agents/{stack.ns}/c/events") as resp:
        assert (resp.status, (await resp.json())["code"]) == (503, "agent_not_placed")
    async with stack.http.get(f"{router}/v1/agents/{stack.ns}/nobody/events") as resp:
        assert (resp.status, (await resp.json())["code"]) == (404, "agent_not_found")
    await stack.place("c", "pool-0")
    await stack.running_on("c", "pool-0")
    assert shard.stop() == 0  # SIGTERM: releases the agent (snapshot, unlock) and exits cleanly
    assert "releasing 1 agents" in shard.tail()
    # ...and ends its Lease at once, so the operator re-places now, not a Lease duration later.
    lease = await stack.kube.get(leases_path(stack.ns, "pool-0"))
    renewed = datetime.datetime.strptime(lease["spec"]["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
    expires = renewed + datetime.timedelta(seconds=lease["spec"]["leaseDurationSeconds"])
    assert expires < datetime.datetime.now(datetime.UTC)
    from agent_runtime.kube import fence

    fd = await fence.acquire(stack.data / "agents" / stack.ns / "c", "test", timeout_s=1)
    await fence.release(fd)
    with pytest.raises(NotFound):
        await stack.kube.get(agents_path(stack.ns, "nobody"))


@pytest.mark.parametrize("on_delete", ["archive", "remove"])
async def test_deleting_an_agent_object_disposes_its_folder_per_on_delete_on_its_shard(stack: Stack, on_delete: str) -> None:
    """The operator without the pool volume (the chart's default) leaves the folder to the owning
    shard: it releases the agent on the deletion timestamp, then archives or removes the folder;
    a DELETE on the shard's API never removes an agent whose object still exists."""
    name = f"gone-{on_delete}"
    manifest = agent_yaml(name, stack.ns).replace("  limits:", f"  onDelete: {on_delete}\n  limits:")
    stack.cluster.kubectl("apply", "-f", "-", input=manifest)
    # Stand in for the operator's finalizer so the object stays while the shard reacts.
    await stack.kube.merge_patch(agents_path(stack.ns, name), {"metadata": {"finalizers": ["agentruntime.dev/finalizer"]}})
    shard = stack.shard("pool-0")
    await stack.place(name, "pool-0")
    await stack.running_on(name, "pool-0")
    folder = stack.data / "agents" / stack.ns / name
    assert (folder / "events.db").exists()

    headers = {"Authorization": f"Bearer {stack.admin}"}
    assert shard.url
    url = f"{shard.url}/v1/agents/{stack.ns}/{name}"
    async with stack.http.delete(url) as resp:
        assert resp.status == 401  # the admin role is needed even to be told no
    async with stack.http.delete(url, headers=headers) as resp:
        assert resp.status == 409 and (await resp.json())["code"] == "conflict"
    assert (folder / "events.db").exists()  # the live agent's log is untouched

    stack.cluster.kubectl("delete", "agent", name, "-n", stack.ns, "--wait=false")
    archive = stack.data / "archive" / stack.ns

    async def disposed() -> bool | None:
        return True if not folder.exists() else None

    await eventually(disposed, 20, f"{name}'s folder disposed of")
    archived = sorted(archive.glob(f"{name}-*")) if archive.exists() else []
    if on_delete == "archive":
        assert len(archived) == 1 and (archived[0] / "events.db").exists()
    else:
        assert archived == []
    async with stack.http.delete(url, headers=headers) as resp:
        assert resp.status == 202  # what the operator's finalizer asks: accepted, the shard did it
    await stack.kube.merge_patch(agents_path(stack.ns, name), {"metadata": {"finalizers": None}})


async def test_a_spec_the_runtime_refuses_is_failed_once_not_a_retry_loop(stack: Stack) -> None:
    """An Agent spec the apiserver accepts but the runtime does not (here: a CRD older than the
    runtime, which still allows a tool the runtime dropped) makes the agent Failed with the field in
    its Ready condition, one log line, no stack trace and no retry until the spec changes; fixing the
    spec brings it back. (It used to raise in the reconcile loop: a stack trace every second.)"""
    crd = "agents.agentruntime.dev"
    enum = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/tools/items/enum"
    stack.cluster.kubectl("apply", "-f", "-", input=agent_yaml("picky", stack.ns))
    shard = stack.shard("pool-0")
    await stack.place("picky", "pool-0")
    await stack.running_on("picky", "pool-0")
    stack.cluster.kubectl("patch", "crd", crd, "--type", "json", "-p", f'[{{"op": "remove", "path": "{enum}"}}]')
    try:
        bad = agent_yaml("picky", stack.ns) + "  tools: [shell, rm]\n"
        await eventually(lambda: asyncio.to_thread(
            lambda: stack.cluster.kubectl("apply", "-f", "-", input=bad, check=False).returncode == 0), 10,
            "the relaxed CRD takes effect")

        async def failed() -> dict[str, Any] | None:
            s = await stack.status("picky")
            ready = [c for c in s.get("conditions") or [] if c.get("type") == "Ready"]
            return s if s.get("phase") == "Failed" and ready and ready[0]["reason"] == "InvalidSpec" else None

        status = await eventually(failed, 15, "picky Failed with InvalidSpec")
        (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
        assert ready["status"] == "False" and "spec.tools" in ready["message"] and "rm" in ready["message"]
        await asyncio.sleep(3)  # the old loop retried (and printed a stack trace) every second
        log = shard.log_path.read_text()
        assert "Traceback" not in log, log[-3000:]
        assert log.count("invalid spec") == 1, log[-3000:]
        assert (await stack.status("picky"))["phase"] == "Failed"
    finally:  # the generated CRD's enum back
        tools = yaml.safe_load((ROOT / "crds" / f"{crd}.yaml").read_text())["spec"]["versions"][0]["schema"][
            "openAPIV3Schema"]["properties"]["spec"]["properties"]["tools"]["items"]["enum"]
        stack.cluster.kubectl("patch", "crd", crd, "--type", "json", "-p",
                              json.dumps([{"op": "add", "path": enum, "value": tools}]))
    stack.cluster.kubectl("apply", "-f", "-", input=agent_yaml("picky", stack.ns) + "  tools: [shell]\n")
    await stack.running_on("picky", "pool-0")  # the fixed spec (a new generation) activates it again
