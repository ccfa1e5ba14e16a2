"""The operator's Agent watch keeps identities only (Reflector keep_objects=False): a deletion that
a re-list discovers (after 410 Gone) reaches the controller as metadata without spec or status. The
controller must drop that agent and plan nothing for it, and keep planning the others."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent_operator.controller import Controller, Settings
from agent_runtime.kube.client import KubeClient, Reflector
from agent_runtime.kube.config import KubeConfig


def _lease(name: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": {"name": name, "namespace": "ns", "labels": {"agentruntime.dev/pool": "p"}},
            "spec": {"holderIdentity": name, "renewTime": now, "leaseDurationSeconds": 60}}


def _agent(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "uid": f"u-{name}", "resourceVersion": rv, "generation": 1,
                         "finalizers": ["agentruntime.dev/finalizer"]},
            "spec": {"runtimePool": "p", "onDelete": "remove"}, "status": {"phase": "Running", "shard": "p-0", "pool": "p"}}


async def test_a_relist_deletion_with_identity_only_drops_the_agent_and_plans_nothing_for_it() -> None:
    ctl = Controller(KubeClient(KubeConfig("http://127.0.0.1:9")), Settings(namespaces=("ns",), manage_pools=False))
    ctl.on_pool("ADDED", {"metadata": {"namespace": "ns", "name": "p", "uid": "u", "generation": 1},
                          "spec": {"region": "r", "shards": 1, "capacityPerShard": 100}})
    ctl.on_lease("ADDED", _lease("p-0"))
    r = Reflector(None, "/apis/x", ctl.on_agent, keep_objects=False)  # type: ignore[arg-type]
    r._apply_list([_agent("a", "5"), _agent("b", "6")])  # noqa: SLF001
    assert set(ctl.agents) == {"ns/a", "ns/b"} and ctl.agents["ns/a"].on_delete == "remove"
    await ctl.step()
    assert ctl.work.queue.empty()  # (both already where they belong)

    r._apply_list([_agent("b", "6")])  # noqa: SLF001  (a was deleted while the watch was gone)
    assert set(ctl.agents) == {"ns/b"}
    await ctl.step()
    assert ctl.work.queue.empty() and not ctl.work.inflight
