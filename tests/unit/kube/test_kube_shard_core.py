"""The shard's pure helpers: Agent object -> manifest, the Ready condition merge, the key queue."""

from __future__ import annotations

import asyncio

import pytest

from agent_runtime.kube.placement_watch import KeyQueue, manifest_of
from agent_runtime.kube.reporter import ready_conditions
from agent_runtime.manifest import ManifestError


def agent(spec: dict) -> dict:
    return {"apiVersion": "agentruntime.dev/v1alpha1", "kind": "Agent",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u-1", "resourceVersion": "7", "generation": 2,
                         "labels": {"team": "search"}},
            "spec": spec, "status": {"phase": "Placed"}}


def test_manifest_of_an_agent_object() -> None:
    m = manifest_of(agent({"model": {"provider": "simulated", "name": "m"}, "systemPrompt": "hi",
                           "onDelete": "remove", "runtimePool": "pool"}))
    assert m.key == "ns/a"
    assert m.spec.system_prompt == "hi" and m.spec.runtime_pool == "pool"
    assert m.metadata.labels == {"team": "search"}


def test_manifest_of_a_bad_spec_names_the_field() -> None:
    with pytest.raises(ManifestError, match="tools"):
        manifest_of(agent({"tools": ["rm_rf"]}))


def test_ready_condition_keeps_the_operators_conditions() -> None:
    obj = {"status": {"conditions": [
        {"type": "Placed", "status": "True", "reason": "Placed", "message": "on pool-0"},
        {"type": "Ready", "status": "True", "reason": "Active", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    out = ready_conditions(obj, True, "Active", "active on shard pool-0", now=1_800_000_000)
    assert [c["type"] for c in out] == ["Placed", "Ready"]
    assert out[0] == obj["status"]["conditions"][0]
    assert out[1]["lastTransitionTime"] == "2026-01-01T00:00:00Z"  # no transition: the time is kept
    flipped = ready_conditions(obj, False, "InvalidSpec", "bad", now=0)
    assert flipped[1]["status"] == "False" and flipped[1]["lastTransitionTime"] == "1970-01-01T00:00:00Z"
    assert ready_conditions({}, True, "Active", "x", now=0)[0]["type"] == "Ready"


async def test_key_queue_dedupes_and_never_hands_one_key_to_two_workers() -> None:
    q = KeyQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert await q.get() == "a"
    q.add("a")  # changed while a worker has it: queued again only after done
    assert await q.get() == "b"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await q.get()
    q.done("a")
    assert await q.get() == "a"
    q.done("a")
    q.done("b")
    assert q.idle()
