"""The operator's startup order: the Leases' expiry clocks start after every Agent is listed."""

from __future__ import annotations

import asyncio
from typing import Any

from agent_operator.__main__ import startup
from agent_operator.controller import Controller, Settings


class FakeApi:
    """Answers prime()'s lists: one pool, one shard Lease renewed a moment ago."""

    async def list(self, path: str, label_selector: str | None = None, field_selector: str | None = None
                   ) -> tuple[list[dict[str, Any]], str]:
        if path.endswith("/runtimepools"):
            return [{"metadata": {"namespace": "ns", "name": "pool", "uid": "u", "generation": 1},
                     "spec": {"region": "local", "shards": 1}}], "1"
        return [{"metadata": {"namespace": "ns", "name": "pool-0", "labels": {"agentruntime.dev/pool": "pool"}},
                 "spec": {"holderIdentity": "pool-0", "leaseDurationSeconds": 15,
                          "renewTime": "2026-11-25T10:00:00.000000Z"}}], "2"


class SlowWatch:
    """A Reflector whose first list takes `seconds` of the controller's clock."""

    def __init__(self, clock: list[float], seconds: float) -> None:
        self.synced = asyncio.Event()
        self.clock, self.seconds = clock, seconds

    async def list_all(self) -> None:
        await asyncio.sleep(0)
        self.clock[0] += self.seconds
        self.synced.set()


async def test_leases_are_first_seen_after_a_long_agent_list() -> None:
    clock = [1000.0]
    controller = Controller(FakeApi(), Settings(namespaces=("ns",)), clock=lambda: clock[0])  # type: ignore[arg-type]
    watch = SlowWatch(clock, seconds=60.0)  # four Lease durations
    lister = asyncio.create_task(watch.list_all())
    await startup(controller, [watch])  # type: ignore[list-item]
    await lister
    (shard,) = controller.shards.values()
    assert shard.observed_at == 1060.0  # seen after the Agents were listed...
    assert shard.fresh(clock[0]) and shard.eligible(clock[0])  # ...so it is fresh at the first plan
