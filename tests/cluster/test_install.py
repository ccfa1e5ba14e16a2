"""The user's path on a real node: `helm install` into a `restricted` namespace, pods Ready with no
restarts, a RuntimePool's shard pods Ready on a bound volume, an Agent Running, a client through the
Traefik Ingress (WebSocket, bearer token) chats with tools, and no component was refused a request.

Prints one JSON line of measurements (install time, pod start-to-ready, per-pod memory).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cluster_harness import ROOT, Cluster, wait_for
from stack import RoutedAgent

IDLE_S = 65  # > Traefik's default entry-point read timeout (60 s)
# an apiserver refusal as our clients and Traefik's log it ("... is forbidden: User ... cannot list
# resource ..."), or a 403 status in an access log line; not any "403" (a response size can be 403)
FORBIDDEN = re.compile(r'forbidden|cannot \w+ resource|" 403 |\b403 Forbidden', re.IGNORECASE)


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def start_to_ready_s(pod: dict[str, Any]) -> float:
    """Pod created → Ready condition (the kubelet's second-resolution timestamps)."""
    created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    cond = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    return (datetime.fromisoformat(cond["lastTransitionTime"].replace("Z", "+00:00")) - created).total_seconds()


@pytest.fixture
def namespace(cluster: Cluster) -> Any:
    ns = f"t-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest")
    # no provisioner on this node: a hostPath PV bound to exactly the pool's claim
    vol = Path(cluster.env["STATE"]) / "volumes" / f"{ns}-local-data"
    vol.mkdir(parents=True)
    os.chown(vol, 10001, 10001)
    vol.chmod(0o770)
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{ns}-local-data"},
        "spec": {"capacity": {"storage": "50Gi"}, "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                 "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": ns, "name": "local-data"},
                 "hostPath": {"path": str(vol), "type": "Directory"}}}))
    try:
        yield ns
    finally:
        # Agents first, while the operator runs their finalizer (after `helm uninstall` nobody would:
        # an Agent left then keeps its namespace Terminating; docs/cluster.md)
        cluster.kubectl("delete", "agents", "--all", "-n", ns, "--timeout=120s", check=False, timeout=150)
        cluster.run("helm", "uninstall", "rel", "-n", ns, "--wait", "--timeout", "3m", check=False, timeout=240)
        cluster.kubectl("delete", "namespace", ns, "--timeout=180s", check=False, timeout=240)
        cluster.kubectl("delete", "pv", f"{ns}-local-data", "--wait=false", check=False)
        shutil.rmtree(vol, ignore_errors=True)


@pytest.mark.timeout(900)
def test_helm_install_restricted_pods_ready_agent_chats_through_the_ingress(cluster: Cluster, namespace: str) -> None:
    ns = namespace
    host = f"agents.{ns}.test"
    t0 = time.monotonic()
    cluster.run("helm", "install", "rel", str(ROOT / "charts" / "agent-runtime"), "-n", ns,
                "--set", f"image.repository={cluster.image.rsplit(':', 1)[0]}",
                "--set", f"image.tag={cluster.image.rsplit(':', 1)[1]}",
                "--set", "image.pullPolicy=Never", "--set", f"watchNamespaces={{{ns}}}",
                "--set", "router.ingress.enabled=true", "--set", "router.ingress.className=traefik",
                "--set", f"router.ingress.host={host}",
                "--set", "examplePool.enabled=true", "--set", "examplePool.storage.accessMode=ReadWriteMany",
                "--wait", "--timeout", "5m", timeout=360)
    install_s = time.monotonic() - t0

    # operator and routers Ready, no restarts (a restricted namespace admits them as they are)
    pods = cluster.get("pods", "-n", ns, "-l", "app.kubernetes.io/instance=rel")["items"]
    comps = sorted(p["metadata"]["labels"].get("app.kubernetes.io/component", "") for p in pods)
    assert comps == ["operator", "router", "router"], comps
    assert all(ready(p) for p in pods)

    # the pool's shards: Ready, on the bound claim
    def shards() -> list[dict[str, Any]] | None:
        items = cluster.get("pods", "-n", ns, "-l", "app.kubernetes.io/name=agent-runtime-shard")["items"]
        return items if len(items) == 2 and all(ready(p) for p in items) else None

    shard_pods = wait_for("2 shard pods Ready", shards, 180)
    shards_ready_s = time.monotonic() - t0
    assert cluster.get("pvc", "local-data", "-n", ns)["status"]["phase"] == "Bound"
    wait_for("RuntimePool Ready", lambda: cluster.get("runtimepool", "local", "-n", ns)
             .get("status", {}).get("readyShards") == 2, 60)

    # an Agent → Running
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=(
        "apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\nmetadata: {name: coder}\n"
        "spec:\n  runtimePool: local\n  model: {provider: simulated, name: sim-coder-1}\n"
        "  tools: [shell, read_file, write_file, list_dir]\n"))
    t1 = time.monotonic()
    wait_for("Agent Running", lambda: cluster.get("agent", "coder", "-n", ns).get("status", {})
             .get("phase") in ("Running", "Idle"), 120)
    agent_running_s = time.monotonic() - t1
    table = cluster.kubectl("get", "agents", "-n", ns).stdout
    assert table.split()[:6] == ["NAME", "PHASE", "SHARD", "TURNS", "CACHE", "AGE"], table

    # a client through the Ingress: WebSocket, bearer token, chat with tools
    token = cluster.kubectl("get", "secret", "local-admin-token", "-n", ns,
                            "-o", "jsonpath={.data.admin\\.token}").stdout
    admin = base64.b64decode(token).decode().strip()

    async def chat() -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            client = RoutedAgent(http, cluster.ingress_url, f"{ns}/coder", admin)
            client.headers["Host"] = host
            t = time.monotonic()
            seq = await client.send("task: write fib")
            first_ack_s = time.monotonic() - t
            await client.until_idle_after(seq, timeout=90)
            kinds = {e["kind"] for e in client.events.values()}
            assert {"user_message", "tool_call", "tool_result"} <= kinds, kinds
            await client.close()
            # a wrong token is refused at the shard, through the Ingress
            bad = RoutedAgent(http, cluster.ingress_url, f"{ns}/coder", "not-a-token")
            bad.headers["Host"] = host
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await bad.connect(timeout=5)
            assert refused.value.status == 401
            return {"first_ack_s": round(first_ack_s, 3), "events": len(client.events)}

    chat_stats = asyncio.run(chat())

    # the agent moves (its shard drained): the router's 1012 "agent moved" reaches the client through
    # Traefik, and the client resumes by cursor on the new owner
    async def moved() -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            client = RoutedAgent(http, cluster.ingress_url, f"{ns}/coder", admin)
            client.headers["Host"] = host
            await client.connect()
            owner = cluster.get("agent", "coder", "-n", ns)["status"]["shard"]
            t = time.monotonic()
            cluster.kubectl("annotate", "lease", owner, "-n", ns, "agentruntime.dev/draining=true", "--overwrite")
            while not client.closes and time.monotonic() - t < 60:
                try:
                    await client._recv(1.0)
                except TimeoutError:
                    pass
            assert client.closes[:1] == [1012], client.closes
            closed_s = time.monotonic() - t
            seq = await client.send("after the move")
            await client.until_idle_after(seq, timeout=90)
            assert sorted(client.events) == list(range(1, max(client.events) + 1))  # every event, no gap
            new_owner = cluster.get("agent", "coder", "-n", ns)["status"]["shard"]
            assert new_owner != owner
            await client.close()
            return {"drain_to_1012_s": round(closed_s, 2)}

    chat_stats |= asyncio.run(moved())

    # a long-lived socket: idle (only the router's pings) for longer than Traefik's default 60 s read
    # timeout, then it still carries a message (scripts/cluster/traefik.yaml sets that timeout to 0)
    async def long_lived() -> None:
        async with aiohttp.ClientSession() as http:
            client = RoutedAgent(http, cluster.ingress_url, f"{ns}/coder", admin)
            client.headers["Host"] = host
            client.ws = await http.ws_connect(client.url, headers=client.headers, heartbeat=None)  # no client pings
            await client.ws.send_str(json.dumps({"type": "hello", "cursor": 0}))
            t = time.monotonic()
            with contextlib.suppress(TimeoutError):
                while time.monotonic() - t < IDLE_S:  # the replay, then nothing but the router's pings
                    if await asyncio.wait_for(client._recv(IDLE_S), IDLE_S - (time.monotonic() - t)) is None:
                        break
            assert not client.ws.closed and not client.closes, client.closes
            acked = await client.send("still there after a long silence?", timeout=30)
            assert acked > 0
            await client.close()

    asyncio.run(long_lived())
    status = wait_for("turns in the Agent status", lambda: (s := cluster.get("agent", "coder", "-n", ns)
                                                            .get("status", {})).get("turns", 0) >= 2 and s, 30)
    assert status["shard"] in ("local-0", "local-1") and status["turns"] >= 2

    # nobody was refused a request, no restarts
    pods = cluster.get("pods", "-n", ns)["items"]
    traefik = cluster.get("pods", "-n", cluster.env["INGRESS_NAMESPACE"])["items"]
    for p in pods + traefik:
        for cs in p["status"].get("containerStatuses") or []:
            assert cs["restartCount"] == 0, (p["metadata"]["name"], cs)
        log = cluster.kubectl("logs", "-n", p["metadata"]["namespace"], p["metadata"]["name"], "--all-containers").stdout
        bad_lines = [line for line in log.splitlines() if FORBIDDEN.search(line)]
        assert not bad_lines, (p["metadata"]["name"], bad_lines[:5])

    # measurements: start-to-ready per pod, memory per pod (kubelet's summary API)
    def memory() -> dict[str, float] | None:  # the kubelet samples every ~10 s: wait for every pod
        summary = json.loads(cluster.kubectl("get", "--raw", f"/api/v1/nodes/{cluster.env['NODE_NAME']}/proxy/stats/summary").stdout)
        mib = {f"{p['podRef']['namespace']}/{p['podRef']['name']}": round(p.get("memory", {}).get("workingSetBytes", 0) / 2**20, 1)
               for p in summary["pods"] if p["podRef"]["namespace"] in (ns, cluster.env["INGRESS_NAMESPACE"])}
        return mib if len(mib) == len(pods) + len(traefik) and all(mib.values()) else None

    mem = wait_for("every pod's memory in the kubelet's summary", memory, 60)
    print(json.dumps({"helm_install_wait_s": round(install_s, 1), "shards_ready_after_install_start_s": round(shards_ready_s, 1),
                      "agent_running_s": round(agent_running_s, 1), **chat_stats,
                      "start_to_ready_s": {p["metadata"]["name"]: start_to_ready_s(p) for p in pods + shard_pods},
                      "working_set_mib": mem}))
