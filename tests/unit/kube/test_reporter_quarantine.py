"""A quarantined agent (its event log is damaged) is reported Failed and not Ready in Kubernetes mode."""

from __future__ import annotations

from pathlib import Path

from agent_runtime.eventlog.base import LogCorrupt
from agent_runtime.host import AgentHandle
from agent_runtime.kube.reporter import agent_status
from agent_runtime.manifest import make_manifest


def test_a_quarantined_agent_is_failed_and_not_ready() -> None:
    handle = AgentHandle(manifest=make_manifest("a", namespace="ns"), folder=Path("/nonexistent"),
                         summary={"turns": 3, "tokens": {"input": 10, "output": 5}, "last_activity": 12.5})
    healthy = agent_status(handle)
    assert (healthy.phase, healthy.ready) == ("Idle", True)
    handle.failure = LogCorrupt("/data/agents/ns/a/events.db", "database disk image is malformed")
    failed = agent_status(handle)
    assert (failed.phase, failed.ready, failed.turns, failed.tokens.input) == ("Failed", False, 3, 10)
    assert handle.phase() == "failed"
