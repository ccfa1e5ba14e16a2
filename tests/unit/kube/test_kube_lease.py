"""The Lease a shard writes (`Lease.body`) and its own-Lease watch (draining), without an apiserver."""

from __future__ import annotations

from typing import Any

from agent_runtime.kube.client import KubeClient
from agent_runtime.kube.config import KubeConfig
from agent_runtime.kube.lease import Lease
from agent_runtime.kube.names import ADDRESS_ANNOTATION, DRAINING_ANNOTATION, POOL_LABEL

NOW = "2026-12-07T21:00:00.000000Z"


def lease(drains: list[bool] | None = None) -> Lease:
    sink = drains if drains is not None else []
    ls = Lease(KubeClient(KubeConfig("http://127.0.0.1:9")), "ns", "pool", "pool-1", 15, on_draining=sink.append)
    ls.address = "http://10.0.0.7:8470"
    return ls


def test_a_new_lease_names_its_holder_pool_and_address() -> None:
    body = lease().body(None, NOW)
    assert body["metadata"] == {"name": "pool-1", "namespace": "ns", "labels": {POOL_LABEL: "pool"},
                                "annotations": {ADDRESS_ANNOTATION: "http://10.0.0.7:8470"}}
    assert body["spec"] == {"holderIdentity": "pool-1", "acquireTime": NOW, "leaseTransitions": 0,
                            "leaseDurationSeconds": 15, "renewTime": NOW}


def test_renewal_keeps_what_others_wrote_and_counts_a_change_of_holder() -> None:
    existing: dict[str, Any] = {
        "metadata": {"name": "pool-1", "namespace": "ns", "resourceVersion": "9",
                     "annotations": {DRAINING_ANNOTATION: "true", ADDRESS_ANNOTATION: "http://old"}},
        "spec": {"holderIdentity": "pool-1-old-pod", "acquireTime": "then", "leaseTransitions": 2}}
    body = lease().body(existing, NOW)
    assert body["metadata"]["resourceVersion"] == "9"  # optimistic concurrency: replace what was read
    assert body["metadata"]["annotations"] == {DRAINING_ANNOTATION: "true", ADDRESS_ANNOTATION: "http://10.0.0.7:8470"}
    assert body["spec"]["holderIdentity"] == "pool-1" and body["spec"]["leaseTransitions"] == 3
    again = lease().body(body, "later")
    assert again["spec"]["acquireTime"] == NOW and again["spec"]["leaseTransitions"] == 3  # same holder
    assert again["spec"]["renewTime"] == "later"


def test_the_own_lease_watch_reports_draining_changes_only() -> None:
    drains: list[bool] = []
    ls = lease(drains)
    draining = {"metadata": {"name": "pool-1", "annotations": {DRAINING_ANNOTATION: "True"}}}
    ls._on_own_lease("MODIFIED", {"metadata": {"name": "pool-1"}})  # noqa: SLF001
    ls._on_own_lease("MODIFIED", draining)  # noqa: SLF001
    ls._on_own_lease("MODIFIED", draining)  # noqa: SLF001
    ls._on_own_lease("DELETED", draining)  # noqa: SLF001 - a deleted Lease drains nothing
    assert drains == [True, False]
