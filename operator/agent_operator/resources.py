"""RuntimePool → the Kubernetes objects that run it (pure: spec in, manifests out).

For pool P in namespace NS:
- ConfigMap `P-config`: provider endpoint base URLs + pool identity, as env for the shards;
- Service `P` (headless): stable DNS `P-<n>.P.NS.svc` per shard pod, the address each shard
  advertises in its Lease;
- PersistentVolumeClaim `P-data`: the pool's one data volume, mounted by every shard (agents move
  between shards and are re-read from it; owner.lock flocks keep one writer per agent);
- Secret `P-admin-token` (created once, never rewritten): the shards' admin bearer token;
- ServiceAccount/Role/RoleBinding `P-shard`: what a shard may do (watch its Agents, patch their
  status, hold its Lease);
- StatefulSet `P`: one pod per shard running `agentctl shard`, the pod name as the shard name
  (downward API).
Everything carries an ownerReference to the pool, so deleting the pool deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent_operator.models import FIELD_MANAGER, RuntimePoolSpec
from agent_operator.shards import ordinal
from agent_runtime import layout
from agent_runtime.kube.names import POOL_LABEL
from agent_runtime.manifest import API_GROUP, API_VERSION

APP_LABEL = "app.kubernetes.io/name"
SHARD_APP = "agent-runtime-shard"
DATA_MOUNT = "/data"
# Secrets go under /run: outside every folder a shell tool call may read (the Landlock policy reads
# /etc, /usr, /opt, ...: docs/tools.md "Sandbox"); under /etc any agent could `cat` the admin token.
TOKEN_MOUNT = "/run/agent-runtime/admin-token"
KEYS_MOUNT = "/run/agent-runtime/provider-keys"


# Exactly what a shard calls (agent_runtime/kube/: placement_watch.py, reporter.py, lease.py): list +
# watch its Agents (field selector status.shard), merge-patch their status, get/create/replace/
# merge-patch its own Lease, and list + watch that Lease (field selector metadata.name: a drain is
# known at once). The
# operator must hold all of these in the pool's namespace itself (the chart's operator Role):
# Kubernetes refuses to let it grant more than it has.
SHARD_RULES: list[dict[str, Any]] = [
    {"apiGroups": [API_GROUP], "resources": ["agents"], "verbs": ["list", "watch"]},
    {"apiGroups": [API_GROUP], "resources": ["agents/status"], "verbs": ["patch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "list", "watch", "create", "update", "patch"]},
]


@dataclass(frozen=True, slots=True)
class PoolRef:
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True, slots=True)
class Desired:
    """One object to converge. `create_only`: create when absent, never overwrite (Secrets)."""

    manifest: dict[str, Any]
    create_only: bool = False

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])


def _meta(pool: PoolRef, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": pool.namespace,
        "labels": {APP_LABEL: SHARD_APP, POOL_LABEL: pool.name, "app.kubernetes.io/component": component,
                   "app.kubernetes.io/managed-by": FIELD_MANAGER},
        "ownerReferences": [{"apiVersion": API_VERSION, "kind": "RuntimePool", "name": pool.name,
                             "uid": pool.uid, "controller": True, "blockOwnerDeletion": True}],
    }


def config_map(pool: PoolRef, spec: RuntimePoolSpec) -> dict[str, Any]:
    data = {"AGENT_RUNTIME_POOL": pool.name, "AGENT_RUNTIME_NAMESPACE": pool.namespace,
            "AGENT_RUNTIME_REGION": spec.region,
            "AGENT_RUNTIME_LEASE_DURATION": str(spec.lease_duration_seconds)}
    for provider in ("anthropic", "openai", "gemini"):
        url = getattr(spec.providers, provider)
        if url:
            data[f"AGENT_RUNTIME_{provider.upper()}_BASE_URL"] = url
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(pool, f"{pool.name}-config", "config"),
            "data": data}


def headless_service(pool: PoolRef, spec: RuntimePoolSpec) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(pool, pool.name, "shard"),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {APP_LABEL: SHARD_APP, POOL_LABEL: pool.name},
                     "ports": [{"name": "http", "port": spec.port, "targetPort": "http"}]}}


def data_claim(pool: PoolRef, spec: RuntimePoolSpec) -> dict[str, Any]:
    claim: dict[str, Any] = {"accessModes": [spec.storage.access_mode],
                             "resources": {"requests": {"storage": spec.storage.size}}}
    if spec.storage.storage_class_name:
        claim["storageClassName"] = spec.storage.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(pool, f"{pool.name}-data", "data"),
            "spec": claim}


def admin_token_secret(pool: PoolRef, token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(pool, f"{pool.name}-admin-token", "auth"),
            "type": "Opaque", "stringData": {layout.ADMIN_TOKEN_FILE: token}}


def shard_rbac(pool: PoolRef) -> list[dict[str, Any]]:
    name = f"{pool.name}-shard"
    rules = SHARD_RULES
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(pool, name, "shard")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(pool, name, "shard"),
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(pool, name, "shard"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": pool.namespace}]},
    ]


def shard_args(pool: PoolRef, spec: RuntimePoolSpec) -> list[str]:
    """The shard command line; e2e tests start local shard processes with the same flags."""
    return ["shard", "--namespace", "$(POD_NAMESPACE)", "--pool", pool.name, "--shard", "$(POD_NAME)",
            "--data", DATA_MOUNT, "--listen", f"0.0.0.0:{spec.port}",
            "--advertise", f"http://$(POD_NAME).{pool.name}.$(POD_NAMESPACE).svc:{spec.port}",
            "--lease-duration", str(spec.lease_duration_seconds),
            "--admin-token-file", f"{TOKEN_MOUNT}/{layout.ADMIN_TOKEN_FILE}",
            *(["--tool-confinement-required"] if spec.tool_sandbox.confinement_required else []),
            *(arg for path in spec.tool_sandbox.read_paths for arg in ("--tool-read-path", path))]


def stateful_set(pool: PoolRef, spec: RuntimePoolSpec, replicas: int) -> dict[str, Any]:
    selector = {APP_LABEL: SHARD_APP, POOL_LABEL: pool.name}
    container: dict[str, Any] = {
        "name": "shard",
        "image": spec.image,
        "command": ["agentctl"],
        "args": shard_args(pool, spec),
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "AGENT_RUNTIME_SHARD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "envFrom": [{"configMapRef": {"name": f"{pool.name}-config"}}],
        "ports": [{"name": "http", "containerPort": spec.port}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
        "volumeMounts": [{"name": "data", "mountPath": DATA_MOUNT},
                         {"name": "admin-token", "mountPath": TOKEN_MOUNT, "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    resources = spec.resources.model_dump(exclude_defaults=True)
    if resources:
        container["resources"] = resources
    volumes: list[dict[str, Any]] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": f"{pool.name}-data"}},
        {"name": "admin-token", "secret": {"secretName": f"{pool.name}-admin-token"}},
    ]
    if spec.provider_keys_secret:
        # Keys as files, never as env values in the pod spec or a log line (providers/registry.api_key).
        volumes.append({"name": "provider-keys", "secret": {"secretName": spec.provider_keys_secret}})
        container["volumeMounts"].append({"name": "provider-keys", "mountPath": KEYS_MOUNT, "readOnly": True})
        container["env"].append({"name": "AGENT_RUNTIME_SECRETS_DIR", "value": KEYS_MOUNT})
    pod_spec: dict[str, Any] = {
        "serviceAccountName": f"{pool.name}-shard",
        # a shard releases its agents (snapshot + close + unlock) on SIGTERM; give it time
        "terminationGracePeriodSeconds": 60,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
        "containers": [container],
        "volumes": volumes,
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.affinity:
        pod_spec["affinity"] = dict(spec.affinity)
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(pool, pool.name, "shard"),
        "spec": {"serviceName": pool.name, "replicas": replicas, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": {**selector, "app.kubernetes.io/component": "shard"}},
                              "spec": pod_spec}},
    }


def desired_objects(pool: PoolRef, spec: RuntimePoolSpec, replicas: int, admin_token: str) -> list[Desired]:
    """Everything pool P needs, in creation order. `replicas` may exceed spec.shards while shards
    being removed still drain (see `replicas_for`); `admin_token` is used only if the Secret is absent."""
    objs = [Desired(config_map(pool, spec)), Desired(headless_service(pool, spec)),
            Desired(data_claim(pool, spec)), Desired(admin_token_secret(pool, admin_token), create_only=True)]
    objs += [Desired(o) for o in shard_rbac(pool)]
    objs.append(Desired(stateful_set(pool, spec, replicas)))
    return objs


def replicas_for(spec_shards: int, agents_by_ordinal: dict[int, int]) -> int:
    """StatefulSet replicas: the spec's count, kept higher while a shard above it still holds agents
    (scale-down drains first: those shards are marked draining, their agents re-placed, then removed)."""
    busy = [o for o, n in agents_by_ordinal.items() if o >= spec_shards and n > 0]
    return max(spec_shards, max(busy) + 1) if busy else spec_shards


def retiring_shards(pool: str, spec_shards: int, shard_names: list[str]) -> list[str]:
    """Shards whose ordinal is at or above spec.shards: to be drained before the scale-down."""
    out = []
    for name in shard_names:
        n = ordinal(name, pool)
        if n is not None and n >= spec_shards:
            out.append(name)
    return sorted(out)


def pool_status(spec_shards: int, ready: int, placed: int, previous: dict[str, Any], now_iso: str) -> dict[str, Any]:
    """The RuntimePool's status: counts and a Ready condition (every wanted shard has a fresh,
    non-draining Lease). `previous` keeps the condition's lastTransitionTime while it holds."""
    ok = ready >= spec_shards
    cond: dict[str, Any] = {"type": "Ready", "status": "True" if ok else "False",
            "reason": "ShardsReady" if ok else "ShardsMissing",
            "message": f"{ready} of {spec_shards} shards have a fresh Lease and are not draining"}
    old: dict[str, Any] = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), {})
    cond["lastTransitionTime"] = old.get("lastTransitionTime") if old.get("status") == cond["status"] else now_iso
    return {"readyShards": ready, "agents": placed, "conditions": [cond]}


def status_differs(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether a status patch would change anything (condition timestamps aside)."""
    def strip(status: dict[str, Any]) -> dict[str, Any]:
        conds = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []]
        return {"readyShards": status.get("readyShards"), "agents": status.get("agents"), "conditions": conds}
    return strip(current) != strip(desired)
