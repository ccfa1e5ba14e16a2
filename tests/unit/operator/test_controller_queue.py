"""The planner's bounded job queue: a step with more patches to send than the queue holds sends
what fits and leaves the rest for the next step (it must not raise QueueFull and stop the planner)."""

from __future__ import annotations

from datetime import UTC, datetime

from agent_operator.controller import Controller, Settings
from agent_runtime.kube.client import KubeClient
from agent_runtime.kube.config import KubeConfig


def _lease(name: str) -> dict[str, object]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": {"name": name, "namespace": "ns", "labels": {"agentruntime.dev/pool": "p"}},
            "spec": {"holderIdentity": name, "renewTime": now, "leaseDurationSeconds": 60}}


async def test_a_step_larger_than_the_queue_sends_what_fits_and_the_rest_later() -> None:
    ctl = Controller(KubeClient(KubeConfig("http://127.0.0.1:9")), Settings(namespaces=("ns",), manage_pools=False))
    ctl.work.queue = type(ctl.work.queue)(maxsize=10)  # (the real one holds 10,000)
    ctl.on_pool("ADDED", {"metadata": {"namespace": "ns", "name": "p", "uid": "u", "generation": 1},
                          "spec": {"region": "r", "shards": 2, "capacityPerShard": 100}})
    for shard in ("p-0", "p-1"):
        ctl.on_lease("ADDED", _lease(shard))
    for i in range(25):
        ctl.on_agent("ADDED", {"metadata": {"namespace": "ns", "name": f"a{i}", "uid": f"u{i}", "resourceVersion": "1",
                                            "generation": 1}, "spec": {"model": {"provider": "simulated", "name": "m"}}})
    await ctl.step()  # raised asyncio.QueueFull
    assert ctl.work.queue.qsize() == 10
    queued = set()
    while not ctl.work.queue.empty():
        queued.add(ctl.work.queue.get_nowait()[0])
    assert ctl.work.inflight == queued  # (nothing marked in flight that was not queued)
    waiting = [a for a in ctl.agents.values() if a.key not in queued]
    assert len(waiting) == 15 and all(a.target is None for a in waiting)
