"""The chart's RBAC is what the code calls and no more: no wildcard, no cluster-wide Secret, Role or
RoleBinding access (rendered with helm), and on the real apiserver (RBAC authorization) the
operator running as the chart's service account does its whole job — converges a pool (including
the shards' Role: Kubernetes refuses to let it grant what it lacks), places an Agent, runs its
finalizer — while it cannot read Secrets of other namespaces. The shards' and the router's service
accounts get exactly the verbs their processes use (`kubectl auth can-i`)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Cluster
from test_chart import render
from test_operator_alone import agent, apply, get, put_lease, running_operator, wait_for

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
_release = itertools.count(1)


def rules_by_kind(docs: list[dict[str, Any]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {"ClusterRole": [], "Role": []}
    for d in docs:
        if d["kind"] in out:
            for rule in d.get("rules") or []:
                out[d["kind"]].append((d["metadata"]["name"], rule))
    return out


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={team-a,team-b}"],
                                    ["--set", "operator.poolNamespaces={pools-x}"]],
                         ids=["cluster-wide", "namespaced", "pool-namespaces"])
def test_rendered_rbac_has_no_wildcards_and_no_cluster_wide_secrets(apiserver: Cluster, values: list[str]) -> None:
    docs = render(apiserver, "agents", *values)
    rules = rules_by_kind(docs)
    for kind in ("ClusterRole", "Role"):
        for name, rule in rules[kind]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], (name, rule)
            assert not {"escalate", "bind", "impersonate", "deletecollection", "delete"} & set(rule["verbs"]), (name, rule)
    cluster_resources = {r for _, rule in rules["ClusterRole"] for r in rule["resources"]}
    assert not cluster_resources & {"secrets", "roles", "rolebindings", "clusterroles", "clusterrolebindings",
                                    "configmaps", "statefulsets", "serviceaccounts"}, cluster_resources
    secret_roles = {d["metadata"]["namespace"] for d in docs if d["kind"] == "Role"
                    and any("secrets" in r["resources"] for r in d["rules"])}
    if not values:
        assert secret_roles == {"agents"}  # the release namespace only
        assert {d["kind"] for d in docs} >= {"ClusterRole", "ClusterRoleBinding"}
    elif "namespaced" in values[1] or "watchNamespaces" in values[1]:
        assert secret_roles == {"team-a", "team-b"}
        assert not rules["ClusterRole"]  # watching named namespaces needs no ClusterRole at all
    else:
        assert secret_roles == {"pools-x"}
    for d in docs:  # read-only on secrets: never list/watch (which would read them all)
        for rule in d.get("rules") or [] if d["kind"] in ("Role", "ClusterRole") else []:
            if "secrets" in rule["resources"]:
                assert set(rule["verbs"]) <= {"get", "create"}, rule


def can_i(cluster: Cluster, who: str, verb: str, what: str, namespace: str | None) -> bool:
    where = ["-n", namespace] if namespace else ["-A"]
    what, _, sub = what.partition("/")
    extra = ["--subresource", sub] if sub else []
    proc = cluster.kubectl("auth", "can-i", verb, what, *extra, *where, "--as", who, check=False)
    return proc.stdout.strip() == "yes"


def install_rbac(cluster: Cluster, release: str, namespace: str, *values: str) -> None:
    """Apply the chart's RBAC objects for real (the rest needs a kubelet to mean anything)."""
    docs = [d for d in render(cluster, namespace, *values, release=release) if d["kind"] in RBAC_KINDS]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration", "1h").stdout.strip()
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": cluster.url, "certificate-authority": str(cluster.ca)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": namespace}}]}))
    return path


def test_operator_does_its_job_with_the_chart_rbac_and_no_more(apiserver: Cluster, namespace: str,
                                                                tmp_path: Path) -> None:
    other = f"{namespace}-other"
    apiserver.kubectl("create", "namespace", other)
    apiserver.kubectl("create", "secret", "generic", "not-yours", "-n", other, "--from-literal=k=v")
    release = f"rb{next(_release)}"
    install_rbac(apiserver, release, namespace, "--set", f"watchNamespaces={{{namespace}}}")
    op_sa = f"{release}-agent-runtime-operator"
    op = f"system:serviceaccount:{namespace}:{op_sa}"
    kubeconfig = service_account_kubeconfig(apiserver, namespace, op_sa, tmp_path / "operator.kubeconfig")
    data = tmp_path / "data"
    data.mkdir()
    pool = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "RuntimePool",
            "metadata": {"name": "p", "namespace": namespace}, "spec": {"region": "r", "shards": 1}}
    with running_operator(apiserver, namespace, tmp_path, data, kubeconfig=kubeconfig):
        assert apply(apiserver, pool).returncode == 0
        # the pool's objects, including the shards' Role (granted only what the operator holds)
        for kind, name in (("statefulset", "p"), ("secret", "p-admin-token"), ("role", "p-shard"),
                           ("rolebinding", "p-shard"), ("serviceaccount", "p-shard"), ("pvc", "p-data")):
            wait_for(f"{kind} {name}", lambda k=kind, n=name: get(apiserver, namespace, k, n))
        put_lease(apiserver, namespace, "p-0", "p", duration=600)
        assert apply(apiserver, agent("a", namespace, runtimePool="p")).returncode == 0
        wait_for("a placed", lambda: (get(apiserver, namespace, "agent", "a") or {}).get("status", {}).get("shard") == "p-0")
        wait_for("pool status", lambda: (get(apiserver, namespace, "runtimepool", "p") or {}).get("status", {})
                 .get("agents") == 1)
        apiserver.kubectl("delete", "agent", "a", "-n", namespace, "--wait=false")
        wait_for("a finalized and gone", lambda: get(apiserver, namespace, "agent", "a") is None)
    log = (tmp_path / "operator.log").read_text()
    assert "403" not in log and "forbidden" not in log.lower(), log[-3000:]
    # what the operator may not do
    assert not can_i(apiserver, op, "get", "secrets", other)
    assert not can_i(apiserver, op, "list", "secrets", None)
    assert not can_i(apiserver, op, "list", "secrets", namespace)  # get by name only, never a list of all
    assert not can_i(apiserver, op, "create", "roles", other)
    assert not can_i(apiserver, op, "list", "agents.agentruntime.dev", other)  # watches its namespaces only
    assert not can_i(apiserver, op, "delete", "statefulsets", namespace)
    # the shards' service account (written by the operator): exactly what a shard (agent_runtime/kube/) calls
    shard = f"system:serviceaccount:{namespace}:p-shard"
    for verb, what in (("list", "agents.agentruntime.dev"), ("watch", "agents.agentruntime.dev"),
                       ("patch", "agents.agentruntime.dev/status"), ("get", "leases.coordination.k8s.io"),
                       ("create", "leases.coordination.k8s.io"), ("update", "leases.coordination.k8s.io"),
                       ("patch", "leases.coordination.k8s.io")):
        assert can_i(apiserver, shard, verb, what, namespace), (verb, what)
    for verb, what, ns in (("get", "secrets", namespace), ("patch", "agents.agentruntime.dev", namespace),
                           ("list", "agents.agentruntime.dev", other)):
        assert not can_i(apiserver, shard, verb, what, ns), (verb, what, ns)
    # the router's: read placement in the watched namespace, nothing else
    router = f"system:serviceaccount:{namespace}:{release}-agent-runtime-router"
    for what in ("agents.agentruntime.dev", "leases.coordination.k8s.io"):
        assert can_i(apiserver, router, "watch", what, namespace) and not can_i(apiserver, router, "watch", what, other)
    assert not can_i(apiserver, router, "get", "secrets", namespace)


def test_cluster_wide_mode_keeps_secrets_and_rbac_in_the_pool_namespaces(apiserver: Cluster, namespace: str,
                                                                        tmp_path: Path) -> None:
    """watchNamespaces empty: the operator watches every namespace through the ClusterRole (kopf needs
    no namespace or CRD access: scanning is off) and converges pools in the release namespace only."""
    other = f"{namespace}-other"
    apiserver.kubectl("create", "namespace", other)
    release = f"rb{next(_release)}"
    install_rbac(apiserver, release, namespace)
    op_sa = f"{release}-agent-runtime-operator"
    op = f"system:serviceaccount:{namespace}:{op_sa}"
    kubeconfig = service_account_kubeconfig(apiserver, namespace, op_sa, tmp_path / "operator.kubeconfig")
    data = tmp_path / "data"
    data.mkdir()
    with running_operator(apiserver, namespace, tmp_path, data, kubeconfig=kubeconfig, clusterwide=True):
        for ns in (namespace, other):
            pool = {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "RuntimePool",
                    "metadata": {"name": "cw", "namespace": ns}, "spec": {"region": "r", "shards": 1}}
            assert apply(apiserver, pool).returncode == 0
            put_lease(apiserver, ns, "cw-0", "cw", duration=600)
            assert apply(apiserver, agent("a", ns, runtimePool="cw")).returncode == 0
        for ns in (namespace, other):  # placement works in every namespace
            wait_for(f"a placed in {ns}", lambda n=ns: (get(apiserver, n, "agent", "a") or {}).get("status", {})
                     .get("shard") == "cw-0")
        wait_for("the pool's StatefulSet in the release namespace", lambda: get(apiserver, namespace, "sts", "cw"))
        wait_for("the pool's shard Role", lambda: get(apiserver, namespace, "role", "cw-shard"))
        # a pool outside the pool namespaces: the apiserver refuses its objects (logged, retried)
        wait_for("a refusal logged", lambda: "forbidden" in (tmp_path / "operator.log").read_text().lower())
        assert get(apiserver, other, "sts", "cw") is None and get(apiserver, other, "secret", "cw-admin-token") is None
        for ns in (namespace, other):
            apiserver.kubectl("delete", "agent", "a", "-n", ns, "--wait=false")
            wait_for(f"a finalized in {ns}", lambda n=ns: get(apiserver, n, "agent", "a") is None)
    log = (tmp_path / "operator.log").read_text()
    for line in log.splitlines():  # the only refusals: objects of pools outside the release namespace
        if "forbidden" in line.lower():  # (this one's, and any left by earlier tests on this apiserver)
            assert "agent_operator: pool:" in line and f"pool:{namespace}/" not in line, line
    assert can_i(apiserver, op, "watch", "agents.agentruntime.dev", None)  # every namespace's Agents
    assert can_i(apiserver, op, "patch", "agents.agentruntime.dev/status", other)
    assert can_i(apiserver, op, "create", "secrets", namespace) and can_i(apiserver, op, "create", "roles", namespace)
    for verb, what in (("get", "secrets"), ("create", "secrets"), ("create", "roles"), ("create", "rolebindings"),
                       ("create", "statefulsets.apps")):
        assert not can_i(apiserver, op, verb, what, other), (verb, what)


def test_operator_refused_the_agent_list_in_a_watched_namespace_exits_saying_why(apiserver: Cluster, namespace: str,
                                                                                 tmp_path: Path) -> None:
    """An account that may list pools and Leases in every watched namespace but not Agents in one of
    them (hand-written RBAC that missed a rule): the operator must stop with the apiserver's reason,
    as it did when its startup LIST of Agents was one request — not wait for that list forever
    before starting anything (no placement anywhere, no liveness endpoint, only retry warnings)."""
    other = f"{namespace}-other"
    apiserver.kubectl("create", "namespace", other)
    account = "op-partial"
    apiserver.kubectl("create", "serviceaccount", account, "-n", namespace)
    watch_rules = [{"apiGroups": ["agentruntime.dev"], "resources": ["runtimepools"], "verbs": ["list", "watch"]},
                   {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list", "watch", "patch"]}]
    agent_rules = [{"apiGroups": ["agentruntime.dev"], "resources": ["agents"], "verbs": ["get", "list", "watch", "patch"]},
                   {"apiGroups": ["agentruntime.dev"], "resources": ["agents/status"], "verbs": ["patch"]}]
    docs: list[dict[str, Any]] = []
    for ns, rules in ((namespace, watch_rules + agent_rules), (other, watch_rules)):  # no Agents in `other`
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                     "metadata": {"name": account, "namespace": ns}, "rules": rules})
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": account, "namespace": ns},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
                     "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})
    apiserver.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    kubeconfig = service_account_kubeconfig(apiserver, namespace, account, tmp_path / "operator.kubeconfig")
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agent_operator", "--kubeconfig", str(kubeconfig), "--no-pools",
                                 "--namespace", namespace, "--namespace", other], stdout=log, stderr=subprocess.STDOUT)
    try:
        returncode = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        returncode = None
    text = log_path.read_text()
    assert returncode not in (None, 0), f"still running after 20 s (exit {returncode}):\n{text[-2000:]}"
    assert "403" in text and 'cannot list resource "agents"' in text and other in text, text[-2000:]
