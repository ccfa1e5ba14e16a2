"""The operator alone against a real kube-apiserver: `python -m agent_operator` as a subprocess,
shard Leases written by the test (no shard processes; tests/e2e/test_*.py of the full stack run those).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster

WAIT_S = 30.0


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def get(cluster: Cluster, ns: str, *what: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", "-n", ns, *what, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def micro_time(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def put_lease(cluster: Cluster, ns: str, shard: str, pool: str, duration: int, renewed: float | None = None,
              draining: bool = False) -> None:
    annotations = {"agentruntime.dev/address": f"http://127.0.0.1:1/{shard}"}
    if draining:
        annotations["agentruntime.dev/draining"] = "true"
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": shard, "namespace": ns, "labels": {"agentruntime.dev/pool": pool},
                          "annotations": annotations},
             "spec": {"holderIdentity": shard, "leaseDurationSeconds": duration,
                      "renewTime": micro_time(renewed if renewed is not None else time.time())}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(lease))


def apply(cluster: Cluster, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "-f", "-", input=json.dumps(doc), check=False)


def agent(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


@contextlib.contextmanager
def running_operator(apiserver: Cluster, namespace: str, tmp_path: Path, data: Path | None,
                     kubeconfig: Path | None = None, clusterwide: bool = False) -> Iterator[None]:
    """`python -m agent_operator` as a subprocess, exactly as the chart's Deployment runs it
    (`kubeconfig`: connect as someone else than the cluster admin, e.g. the chart's service account;
    `clusterwide`: no --namespace, every namespace watched)."""
    extra = ["--data", str(data)] if data is not None else []
    if not clusterwide:
        extra += ["--namespace", namespace]
    with (tmp_path / "operator.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agent_operator", "--kubeconfig",
                                 str(kubeconfig or apiserver.kubeconfig), *extra],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode not in (0, -15):
            print((tmp_path / "operator.log").read_text()[-4000:])


@pytest.fixture
def operator(apiserver: Cluster, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The operator with the pool volume mounted at --data (it archives/removes folders itself)."""
    data = tmp_path / "data"
    data.mkdir()
    with running_operator(apiserver, namespace, tmp_path, data):
        yield data


def test_pool_becomes_statefulset_service_configmap(apiserver: Cluster, namespace: str, operator: Path) -> None:
    pool = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "RuntimePool",
            "metadata": {"name": "eu", "namespace": namespace},
            "spec": {"region": "eu-west", "shards": 3, "capacityPerShard": 50, "image": "example/agent-runtime:test",
                     "providers": {"anthropic": "http://llm-proxy:8080"}, "nodeSelector": {"topology.kubernetes.io/region": "eu-west"},
                     "storage": {"size": "5Gi", "storageClassName": "nfs"}}}
    assert apply(apiserver, pool).returncode == 0
    sts = wait_for("StatefulSet eu", lambda: get(apiserver, namespace, "statefulset", "eu"))
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == "eu"
    pod = sts["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"topology.kubernetes.io/region": "eu-west"}
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["AGENT_RUNTIME_SHARD"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "eu-data"
    svc = wait_for("Service eu", lambda: get(apiserver, namespace, "service", "eu"))
    assert svc["spec"]["clusterIP"] == "None"
    cm = wait_for("ConfigMap eu-config", lambda: get(apiserver, namespace, "configmap", "eu-config"))
    assert cm["data"]["AGENT_RUNTIME_ANTHROPIC_BASE_URL"] == "http://llm-proxy:8080"
    pvc = wait_for("PVC eu-data", lambda: get(apiserver, namespace, "pvc", "eu-data"))
    assert pvc["spec"]["storageClassName"] == "nfs" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert wait_for("admin token Secret", lambda: get(apiserver, namespace, "secret", "eu-admin-token"))
    # scaling the pool is a spec change the StatefulSet follows
    pool["spec"]["shards"] = 4
    assert apply(apiserver, pool).returncode == 0
    wait_for("4 replicas", lambda: (get(apiserver, namespace, "statefulset", "eu") or {}).get("spec", {}).get("replicas") == 4)


def test_invalid_agent_is_refused_with_a_readable_message(apiserver: Cluster, namespace: str) -> None:
    proc = apply(apiserver, agent("bad", namespace, tools=["shell", "rm"], limits={"maxTurns": 0},
                                  model={"provider": "acme"}))
    assert proc.returncode != 0
    assert 'spec.tools[1]: Unsupported value: "rm"' in proc.stderr
    assert "spec.limits.maxTurns" in proc.stderr and "greater than or equal to 1" in proc.stderr
    assert 'spec.model.provider: Unsupported value: "acme"' in proc.stderr
    proc = apply(apiserver, agent("Bad_Name", namespace))
    assert proc.returncode != 0
    proc = apply(apiserver, agent("typo", namespace, systemPrompts="x"))
    assert proc.returncode != 0 and "systemPrompts" in proc.stderr
    # the CRD stores no defaults, yet a rule still checks a field against another's default
    proc = apply(apiserver, agent("tail", namespace, compression={"keepTail": 40000}))
    assert proc.returncode != 0 and "compression.keepTail must be below compression.tailBudget" in proc.stderr
    # and an Agent stores only what its author wrote (the runtime applies the defaults)
    assert apply(apiserver, agent("plain", namespace, limits={"maxTurns": 3})).returncode == 0
    spec = (get(apiserver, namespace, "agent", "plain") or {})["spec"]
    assert spec["limits"] == {"maxTurns": 3} and "autonomy" not in spec and "compression" not in spec


def test_invalid_pool_is_refused_with_a_readable_message(apiserver: Cluster, namespace: str) -> None:
    pool = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "RuntimePool",
            "metadata": {"name": "bad", "namespace": namespace},
            "spec": {"region": "eu", "providers": {"anthropic": "ftp://proxy"}, "storage": {"size": "lots"},
                     "shards": 600}}
    proc = apply(apiserver, pool)
    assert proc.returncode != 0
    assert 'spec.providers.anthropic: Invalid value: "ftp://proxy": must be an http(s) URL' in proc.stderr
    assert 'spec.storage.size: Invalid value: "lots": must be a positive quantity such as 10Gi' in proc.stderr
    assert "spec.shards" in proc.stderr and "less than or equal to 512" in proc.stderr
    long_name = {**pool, "metadata": {"name": "p" * 41, "namespace": namespace}, "spec": {"region": "eu"}}
    proc = apply(apiserver, long_name)
    assert proc.returncode != 0 and "at most 40 characters" in proc.stderr


def test_agent_placed_then_replaced_on_expiry_then_finalized(apiserver: Cluster, namespace: str,
                                                              operator: Path) -> None:
    pool = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "RuntimePool",
            "metadata": {"name": "p", "namespace": namespace},
            "spec": {"region": "local", "shards": 2, "capacityPerShard": 10, "leaseDurationSeconds": 3}}
    assert apply(apiserver, pool).returncode == 0
    # no shard yet: Pending, with the reason in the Placed condition
    assert apply(apiserver, agent("a1", namespace, model={"region": "local"}, onDelete="archive")).returncode == 0
    pending = wait_for("Pending a1", lambda: (get(apiserver, namespace, "agent", "a1") or {}).get("status", {})
                       .get("phase") == "Pending" and get(apiserver, namespace, "agent", "a1"))
    placed_cond = [c for c in pending["status"]["conditions"] if c["type"] == "Placed"][0]
    assert placed_cond["status"] == "False" and "fresh Lease" in placed_cond["message"]
    assert pending["metadata"]["finalizers"] == ["agentruntime.dev/finalizer"]  # added on first sight
    # a shard heartbeats: the agent is placed on it (one status write: phase, shard, Placed)
    put_lease(apiserver, namespace, "p-0", "p", duration=3)
    def on(shard: str) -> Callable[[], dict[str, Any] | None]:
        def probe() -> dict[str, Any] | None:
            o = get(apiserver, namespace, "agent", "a1")
            return o if o and o.get("status", {}).get("shard") == shard else None
        return probe

    a1 = wait_for("a1 on p-0", on("p-0"))
    assert a1["status"]["phase"] == "Placed"
    assert "agentruntime.dev/shard" not in a1["metadata"].get("labels", {})  # shards select on status.shard
    assert a1["metadata"]["finalizers"] == ["agentruntime.dev/finalizer"]
    # what a shard's watch asks for: the selectable field status.shard
    listed = apiserver.kubectl("get", "agents", "-n", namespace, "--field-selector", "status.shard=p-0",
                               "-o", "jsonpath={.items[*].metadata.name}").stdout
    assert listed == "a1"
    # a second shard with a long Lease; p-0 stops renewing -> its Lease expires -> a1 moves to p-1
    put_lease(apiserver, namespace, "p-1", "p", duration=600)
    moved = wait_for("a1 re-placed on p-1", on("p-1"))
    assert moved["status"]["shard"] == "p-1" and moved["status"]["phase"] == "Placed"
    # the pool's status counts its ready shards and placed agents
    pool_status = wait_for("pool status", lambda: (lambda st: st if st.get("readyShards") == 1 and st.get("agents") == 1
                                                   else None)((get(apiserver, namespace, "runtimepool", "p") or {})
                                                              .get("status", {})))
    (ready,) = pool_status["conditions"]
    assert ready["type"] == "Ready" and ready["status"] == "False" and ready["reason"] == "ShardsMissing"
    assert ready["message"] == "1 of 2 shards have a fresh Lease and are not draining"
    # delete: the finalizer archives the folder from the shared volume, then the object is gone
    folder = operator / "agents" / namespace / "a1"
    (folder / "workspace").mkdir(parents=True)
    (folder / "events.db").write_bytes(b"log")
    apiserver.kubectl("delete", "agent", "a1", "-n", namespace, "--wait=false")
    wait_for("a1 gone", lambda: get(apiserver, namespace, "agent", "a1") is None)
    assert not folder.exists()
    archived = list((operator / "archive" / namespace).glob("a1-*"))
    assert len(archived) == 1 and (archived[0] / "events.db").read_bytes() == b"log"


def test_draining_shard_hands_agents_over(apiserver: Cluster, namespace: str, operator: Path) -> None:
    pool = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "RuntimePool",
            "metadata": {"name": "q", "namespace": namespace},
            "spec": {"region": "r", "shards": 3, "capacityPerShard": 100}}
    assert apply(apiserver, pool).returncode == 0
    for shard in ("q-0", "q-1", "q-2"):
        put_lease(apiserver, namespace, shard, "q", duration=600)
    docs = [agent(f"ag-{i}", namespace, runtimePool="q", onDelete="remove") for i in range(30)]
    assert apply(apiserver, {"apiVersion": "v1", "kind": "List", "items": docs}).returncode == 0

    def shards() -> dict[str, str] | None:
        items = (get(apiserver, namespace, "agents") or {}).get("items", [])
        got = {i["metadata"]["name"]: i.get("status", {}).get("shard") for i in items}
        return got if len(got) == 30 and all(got.values()) else None

    before = wait_for("30 placed", shards)
    counts = {s: list(before.values()).count(s) for s in ("q-0", "q-1", "q-2")}
    assert max(counts.values()) <= 11, counts
    put_lease(apiserver, namespace, "q-1", "q", duration=600, draining=True)
    after = wait_for("q-1 drained", lambda: (lambda m: m if m and "q-1" not in m.values() else None)(shards()))
    moved = {a for a in before if before[a] != after[a]}
    assert moved == {a for a, s in before.items() if s == "q-1"}
    # deleting with onDelete=remove and no folder on the volume still completes
    apiserver.kubectl("delete", "agents", "--all", "-n", namespace, "--wait=false")
    wait_for("all deleted", lambda: not (get(apiserver, namespace, "agents") or {"items": [1]})["items"])


def test_scale_down_drains_the_removed_shard_before_shrinking(apiserver: Cluster, namespace: str,
                                                              operator: Path) -> None:
    pool = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "RuntimePool",
            "metadata": {"name": "s", "namespace": namespace},
            "spec": {"region": "r", "shards": 3, "capacityPerShard": 100}}
    assert apply(apiserver, pool).returncode == 0
    for shard in ("s-0", "s-1", "s-2"):
        put_lease(apiserver, namespace, shard, "s", duration=600)
    docs = [agent(f"ag-{i}", namespace, runtimePool="s") for i in range(12)]
    assert apply(apiserver, {"apiVersion": "v1", "kind": "List", "items": docs}).returncode == 0

    def on_shards() -> set[str] | None:
        items = (get(apiserver, namespace, "agents") or {}).get("items", [])
        got = [i.get("status", {}).get("shard") for i in items]
        return set(got) if len(got) == 12 and all(got) else None

    assert wait_for("12 placed on 3 shards", lambda: on_shards() == {"s-0", "s-1", "s-2"})
    pool["spec"]["shards"] = 2
    assert apply(apiserver, pool).returncode == 0
    lease = wait_for("s-2 marked draining", lambda: (lambda o: o if o and o["metadata"].get("annotations", {}).get(
        "agentruntime.dev/draining") == "true" else None)(get(apiserver, namespace, "lease", "s-2")))
    assert lease["metadata"]["name"] == "s-2"
    assert wait_for("s-2 emptied", lambda: on_shards() == {"s-0", "s-1"})
    wait_for("StatefulSet shrunk to 2", lambda: (get(apiserver, namespace, "statefulset", "s") or {})
             .get("spec", {}).get("replicas") == 2)


class ShardStandIn:
    """A real HTTP server standing in for a shard's API: records each request's method, path and
    Authorization header, answers 204 (what `DELETE /v1/agents/{ns}/{name}` returns), or 401 when
    `accept` is set and the request does not carry that token."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        self.accept: str | None = None
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_DELETE(self) -> None:  # noqa: N802 (http.server's naming)
                auth = self.headers.get("Authorization")
                outer.requests.append(("DELETE", self.path, auth))
                self.send_response(401 if outer.accept and auth != f"Bearer {outer.accept}" else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ShardStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def test_without_data_the_finalizer_asks_the_owning_shard(apiserver: Cluster, namespace: str,
                                                          tmp_path: Path) -> None:
    pool = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "RuntimePool",
            "metadata": {"name": "w", "namespace": namespace}, "spec": {"region": "r", "shards": 1}}
    with ShardStandIn() as shard, running_operator(apiserver, namespace, tmp_path, data=None):
        assert apply(apiserver, pool).returncode == 0
        put_lease(apiserver, namespace, "w-0", "w", duration=600)
        apiserver.kubectl("annotate", "lease", "w-0", "-n", namespace, "--overwrite",
                          f"agentruntime.dev/address={shard.url}")
        assert apply(apiserver, agent("gone", namespace, runtimePool="w")).returncode == 0
        wait_for("placed with the finalizer", lambda: "agentruntime.dev/finalizer" in (
            (get(apiserver, namespace, "agent", "gone") or {}).get("metadata", {}).get("finalizers") or []))
        secret = wait_for("admin token Secret", lambda: get(apiserver, namespace, "secret", "w-admin-token"))
        token = base64.b64decode(secret["data"]["admin.token"]).decode()
        apiserver.kubectl("delete", "agent", "gone", "-n", namespace, "--wait=false")
        wait_for("gone", lambda: get(apiserver, namespace, "agent", "gone") is None)
        assert shard.requests == [("DELETE", f"/v1/agents/{namespace}/gone", f"Bearer {token}")]
        # the admin token is rotated in the Secret (the shards now accept only the new one): the
        # operator's cached token is refused once, re-read from the Secret, and the DELETE goes through
        rotated = "rotated-" + token
        apiserver.kubectl("patch", "secret", "w-admin-token", "-n", namespace, "--type", "merge", "-p",
                          json.dumps({"stringData": {"admin.token": rotated}}))
        shard.accept = rotated
        shard.requests.clear()
        assert apply(apiserver, agent("gone2", namespace, runtimePool="w")).returncode == 0
        wait_for("gone2 placed", lambda: "agentruntime.dev/finalizer" in (
            (get(apiserver, namespace, "agent", "gone2") or {}).get("metadata", {}).get("finalizers") or []))
        apiserver.kubectl("delete", "agent", "gone2", "-n", namespace, "--wait=false")
        wait_for("gone2 gone", lambda: get(apiserver, namespace, "agent", "gone2") is None, timeout=10)
        assert shard.requests[-1] == ("DELETE", f"/v1/agents/{namespace}/gone2", f"Bearer {rotated}")


def test_region_change_of_a_placed_agent_is_held_in_its_pool(apiserver: Cluster, namespace: str,
                                                             operator: Path) -> None:
    for name, region in (("eu", "eu-west"), ("us", "us-east")):
        pool = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "RuntimePool",
                "metadata": {"name": name, "namespace": namespace}, "spec": {"region": region, "shards": 1}}
        assert apply(apiserver, pool).returncode == 0
        put_lease(apiserver, namespace, f"{name}-0", name, duration=600)
    assert apply(apiserver, agent("mover", namespace, model={"region": "eu-west"})).returncode == 0
    placed = wait_for("mover on eu-0", lambda: (lambda o: o if o and o.get("status", {}).get("shard") == "eu-0"
                                                 else None)(get(apiserver, namespace, "agent", "mover")))
    assert placed["status"]["pool"] == "eu"  # pinned at first placement
    assert apply(apiserver, agent("mover", namespace, model={"region": "us-east"})).returncode == 0

    def held() -> dict[str, Any] | None:
        o = get(apiserver, namespace, "agent", "mover") or {}
        cond = [c for c in o.get("status", {}).get("conditions", []) if c["type"] == "Placed"]
        return o if cond and cond[0]["reason"] == "PoolPinned" else None

    o = wait_for("the region change held", held)
    assert o["status"]["shard"] == "eu-0" and o["status"]["pool"] == "eu"
    (cond,) = [c for c in o["status"]["conditions"] if c["type"] == "Placed"]
    assert "spec asks for RuntimePool 'us'" in cond["message"] and "delete and re-create" in cond["message"]
    printed = apiserver.kubectl("get", "agent", "mover", "-n", namespace, "-o",
                                "jsonpath={.status.shard}").stdout
    assert printed == "eu-0"


def test_operator_watching_64_namespaces_still_writes(apiserver: Cluster, namespace: str, tmp_path: Path) -> None:
    """Each watched namespace's Agent watch holds one connection of the operator's client for as
    long as it runs: with 64 namespaces (the client's pool size) no connection was left for the
    placement writes (each timed out), so nothing was ever placed. A watch must not take a write's
    connection."""
    others = [f"{namespace}-w{i}" for i in range(63)]
    apiserver.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in others]}))
    pool = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "RuntimePool",
            "metadata": {"name": "p", "namespace": namespace}, "spec": {"region": "r", "shards": 1}}
    assert apply(apiserver, pool).returncode == 0
    put_lease(apiserver, namespace, "p-0", "p", duration=600)
    assert apply(apiserver, agent("a", namespace, runtimePool="p")).returncode == 0
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agent_operator", "--kubeconfig", str(apiserver.kubeconfig),
                                 "--no-pools", "--namespace", namespace, *(a for n in others for a in ("--namespace", n))],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("a placed", lambda: (get(apiserver, namespace, "agent", "a") or {}).get("status", {})
                 .get("shard") == "p-0")
    except AssertionError:
        raise AssertionError(log_path.read_text()[-2000:]) from None
    finally:
        proc.terminate()
        proc.wait(timeout=20)
