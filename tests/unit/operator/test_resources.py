"""RuntimePool → desired objects (pure reconcile)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agent_operator import resources
from agent_operator.models import RuntimePoolSpec

POOL = resources.PoolRef("eu", "agents", "uid-1")


def by_kind(objs: list[resources.Desired]) -> dict[str, dict[str, Any]]:
    return {f"{o.kind}/{o.name}": o.manifest for o in objs}


def spec(**kw: Any) -> RuntimePoolSpec:
    return RuntimePoolSpec.model_validate({"region": "eu-west", **kw})


def test_pool_yields_every_object_owned_by_the_pool() -> None:
    objs = resources.desired_objects(POOL, spec(shards=3), 3, "tok")
    names = [f"{o.kind}/{o.name}" for o in objs]
    assert names == ["ConfigMap/eu-config", "Service/eu", "PersistentVolumeClaim/eu-data", "Secret/eu-admin-token",
                     "ServiceAccount/eu-shard", "Role/eu-shard", "RoleBinding/eu-shard", "StatefulSet/eu"]
    for o in objs:
        owner = o.manifest["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "RuntimePool" and owner["uid"] == "uid-1" and owner["controller"] is True
        assert o.manifest["metadata"]["namespace"] == "agents"
    assert [o.create_only for o in objs].count(True) == 1  # only the Secret: a token is never rotated by accident


def test_statefulset_runs_one_shard_per_pod_with_the_pool_settings() -> None:
    s = spec(shards=5, image="reg/ar:1", port=9000, leaseDurationSeconds=9,
             nodeSelector={"topology.kubernetes.io/region": "eu-west"},
             affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
             resources={"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}})
    sts = by_kind(resources.desired_objects(POOL, s, 5, "tok"))["StatefulSet/eu"]
    assert sts["spec"]["replicas"] == 5 and sts["spec"]["serviceName"] == "eu"
    pod = sts["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"topology.kubernetes.io/region": "eu-west"}
    assert "podAntiAffinity" in pod["affinity"]
    (c,) = pod["containers"]
    assert c["image"] == "reg/ar:1" and c["resources"] == {"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}}
    args = c["args"]
    assert args[:1] == ["shard"] and args[args.index("--shard") + 1] == "$(POD_NAME)"
    assert args[args.index("--listen") + 1] == "0.0.0.0:9000" and args[args.index("--lease-duration") + 1] == "9"
    assert args[args.index("--advertise") + 1] == "http://$(POD_NAME).eu.$(POD_NAMESPACE).svc:9000"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "eu-data"  # one shared volume per pool
    assert sts["spec"]["selector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()


def test_configmap_carries_provider_endpoints_and_service_is_headless() -> None:
    objs = by_kind(resources.desired_objects(POOL, spec(providers={"openai": "https://proxy/v1"}), 1, "t"))
    data = objs["ConfigMap/eu-config"]["data"]
    assert data["AGENT_RUNTIME_OPENAI_BASE_URL"] == "https://proxy/v1"
    assert "AGENT_RUNTIME_ANTHROPIC_BASE_URL" not in data
    assert data["AGENT_RUNTIME_REGION"] == "eu-west"
    assert objs["Service/eu"]["spec"]["clusterIP"] == "None"


def test_storage_class_and_access_mode_reach_the_claim() -> None:
    pvc = by_kind(resources.desired_objects(POOL, spec(storage={"size": "20Gi", "storageClassName": "nfs"}), 1,
                                            "t"))["PersistentVolumeClaim/eu-data"]
    assert pvc["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "20Gi"}},
                           "storageClassName": "nfs"}


def test_scale_down_keeps_busy_shards_until_drained() -> None:
    assert resources.replicas_for(2, {0: 10, 1: 10, 2: 0, 3: 0}) == 2
    assert resources.replicas_for(2, {0: 10, 1: 10, 3: 4}) == 4
    assert resources.retiring_shards("eu", 2, ["eu-0", "eu-1", "eu-2", "eu-10", "other-3"]) == ["eu-10", "eu-2"]


def test_tool_sandbox_reaches_the_shard_command_line() -> None:
    """Shards refuse unconfinable shell calls unless the pool says otherwise (many users' agents
    share a shard's volume and pod); extra read paths are passed one flag each."""
    def args(**kw: Any) -> list[str]:
        sts = by_kind(resources.desired_objects(POOL, spec(**kw), 1, "t"))["StatefulSet/eu"]
        return list(sts["spec"]["template"]["spec"]["containers"][0]["args"])

    assert "--tool-confinement-required" in args() and "--tool-read-path" not in args()
    relaxed = args(toolSandbox={"confinementRequired": False, "readPaths": ["/opt/tools", "/nix"]})
    assert "--tool-confinement-required" not in relaxed
    assert [relaxed[i + 1] for i, a in enumerate(relaxed) if a == "--tool-read-path"] == ["/opt/tools", "/nix"]
    with pytest.raises(ValidationError, match="should match pattern"):
        spec(toolSandbox={"readPaths": ["relative/dir"]})
    with pytest.raises(ValidationError):
        spec(toolSandbox={"readPaths": [f"/p{i}" for i in range(33)]})


def test_bad_pool_specs_are_refused_by_the_model() -> None:
    with pytest.raises(ValidationError):
        spec(shards=-1)
    with pytest.raises(ValidationError):
        spec(capacityPerShard=0)
    with pytest.raises(ValidationError):
        RuntimePoolSpec.model_validate({"region": "EU West"})
    with pytest.raises(ValidationError):
        spec(replicas=3)  # unknown field


def test_pool_status_ready_condition_keeps_its_transition_time() -> None:
    first = resources.pool_status(3, 2, 10, {}, "t1")
    assert first["conditions"][0]["status"] == "False" and first["conditions"][0]["lastTransitionTime"] == "t1"
    same = resources.pool_status(3, 2, 11, first, "t2")
    assert same["conditions"][0]["lastTransitionTime"] == "t1"
    assert resources.status_differs(first, same)  # agent count changed
    assert not resources.status_differs(same, resources.pool_status(3, 2, 11, same, "t3"))
    ready = resources.pool_status(3, 3, 11, same, "t4")
    assert ready["conditions"][0]["status"] == "True" and ready["conditions"][0]["lastTransitionTime"] == "t4"


def test_provider_keys_secret_is_mounted_as_files_never_as_env_values() -> None:
    plain = by_kind(resources.desired_objects(POOL, spec(), 1, "t"))["StatefulSet/eu"]["spec"]["template"]["spec"]
    assert "provider-keys" not in {v["name"] for v in plain["volumes"]}
    assert "AGENT_RUNTIME_SECRETS_DIR" not in {e["name"] for e in plain["containers"][0]["env"]}

    pod = by_kind(resources.desired_objects(POOL, spec(providerKeysSecret="llm-keys"), 1, "t"))[
        "StatefulSet/eu"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["provider-keys"]["secret"] == {"secretName": "llm-keys"}
    mount = {m["name"]: m for m in c["volumeMounts"]}["provider-keys"]
    assert mount["readOnly"] is True
    env = {e["name"]: e for e in c["env"]}
    assert env["AGENT_RUNTIME_SECRETS_DIR"]["value"] == mount["mountPath"]
    assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in c["env"])


def test_secrets_are_mounted_outside_what_tool_processes_may_read() -> None:
    """A shard's shell tool calls may read the system folders (`landlock.SYSTEM_READ_PATHS`: /etc,
    /usr, /opt, ...) and the pool's `toolSandbox.readPaths`. The admin token (admin of every agent
    through the shard's API, which the call reaches over loopback) and the provider keys must not
    be mounted under any of them: a hostile agent would `cat` them."""
    from agent_runtime.tools.landlock import SYSTEM_READ_PATHS

    pool_spec = spec(providerKeysSecret="llm-keys", toolSandbox={"readPaths": ["/opt/toolchain"]})
    pod = by_kind(resources.desired_objects(POOL, pool_spec, 1, "t"))["StatefulSet/eu"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    secret_volumes = {v["name"] for v in pod["volumes"] if "secret" in v}
    mounts = [m["mountPath"] for m in c["volumeMounts"] if m["name"] in secret_volumes]
    assert len(mounts) == 2
    readable = [*SYSTEM_READ_PATHS, *pool_spec.tool_sandbox.read_paths]
    for mount in mounts:
        under = [r for r in readable if mount == r or mount.startswith(r.rstrip("/") + "/")]
        assert under == [], f"{mount} is readable by tool processes (under {under})"
    assert resources.shard_args(POOL, pool_spec)[resources.shard_args(POOL, pool_spec).index("--admin-token-file") + 1] == (
        f"{resources.TOKEN_MOUNT}/admin.token")


def _role_allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def test_shard_role_grants_every_call_a_shard_makes_and_nothing_more() -> None:
    """Found on real pods (make cluster): a shard's watch of its own Lease (agent_runtime/kube/lease.py:
    list + watch with field selector metadata.name) got 403 in a loop when the
    Role lacked list/watch on leases. Each call a shard makes, and only those, is granted."""
    role = by_kind(resources.desired_objects(POOL, spec(), 1, "tok"))["Role/eu-shard"]
    calls = {("agentruntime.dev", "agents", "list"), ("agentruntime.dev", "agents", "watch"),
             ("agentruntime.dev", "agents/status", "patch"),
             ("coordination.k8s.io", "leases", "list"), ("coordination.k8s.io", "leases", "watch"),
             ("coordination.k8s.io", "leases", "get"), ("coordination.k8s.io", "leases", "create"),
             ("coordination.k8s.io", "leases", "update"), ("coordination.k8s.io", "leases", "patch")}
    for group, resource, verb in sorted(calls):
        assert _role_allows(role["rules"], group, resource, verb), (group, resource, verb)
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    assert granted == calls
