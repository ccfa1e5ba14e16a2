"""apiserver paths of the objects the operator reads and writes (pure)."""

from __future__ import annotations

from typing import Any

PLURALS = {
    "ConfigMap": ("", "configmaps"), "Service": ("", "services"), "Secret": ("", "secrets"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"), "ServiceAccount": ("", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io/v1", "roles"), "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
    "StatefulSet": ("apps/v1", "statefulsets"), "Lease": ("coordination.k8s.io/v1", "leases"),
}


def path_for(api_version: str, plural: str, namespace: str | None, name: str | None = None,
             subresource: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    if name:
        out += f"/{name}"
    if subresource:
        out += f"/{subresource}"
    return out


def object_path(obj: dict[str, Any], *, named: bool = True) -> str:
    """The path of a manifest (`named`), or of its collection (for a create)."""
    kind = obj["kind"]
    if kind not in PLURALS:
        raise ValueError(f"no plural known for kind {kind}")
    meta = obj["metadata"]
    return path_for(obj["apiVersion"], PLURALS[kind][1], meta.get("namespace"), meta["name"] if named else None)
