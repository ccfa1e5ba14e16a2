"""A shard's HTTP API (real server, real files; no apiserver needed for these paths)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from agent_runtime.kube.client import KubeClient
from agent_runtime.kube.config import KubeConfig
from agent_runtime.kube.shard import Shard, ShardConfig, run_shard
from agent_runtime.standalone import ServerConfig

MANIFEST = """apiVersion: agentruntime.dev/v1alpha1
kind: Agent
metadata: {name: intruder, namespace: default}
spec:
  model: {provider: simulated, name: sim}
"""


async def test_shard_refuses_creating_agents_over_http(tmp_path: Path) -> None:
    """On a shard, agents arrive through the Agent watch (owner lock first). `POST /v1/agents` would
    register (and a message would open) a log with no owner lock, next to its real owner: refused.
    The shard is the one `agentctl shard` runs (`run_shard`), over an apiserver nobody answers at."""
    config = ShardConfig(namespace="default", pool="p", shard="p-0",
                         server=ServerConfig(data_dir=tmp_path, port=0, auth=False))
    async with KubeClient(KubeConfig("http://127.0.0.1:9")) as kube, run_shard(config, kube) as running:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{running.url}/v1/agents", data=MANIFEST,
                                 headers={"Content-Type": "application/yaml"}) as resp:
                body = await resp.json()
                assert (resp.status, body["code"]) == (501, "not_supported"), body
        assert "default/intruder" not in running.host.handles
    assert not (tmp_path / "agents" / "default" / "intruder").exists()


async def test_shard_guard_answers_starting_deleting_and_creating_in_the_api_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shard's HTTP guard, pinned to what it answered before the error tree (8e44598): an agent
    placed here but not active yet is `agent_starting` (503, `Retry-After: 1`) on every path under
    it, the WebSocket upgrade included; DELETE is `conflict` (409) while the agent is active here,
    else accepted (202); POST /v1/agents is `not_supported` (501); an unknown agent passes to the API
    (404). The watch's two answers are stubbed (no apiserver); the server, sockets and files are real."""
    monkeypatch.setattr(Shard, "starting", lambda self, key: key == "default/starting")
    monkeypatch.setattr(Shard, "refuse_delete",
                        lambda self, key: "it is active here" if key == "default/held" else None)
    config = ShardConfig(namespace="default", pool="p", shard="p-0",
                         server=ServerConfig(data_dir=tmp_path, port=0, auth=False))
    starting = (503, "1", {"type": "error", "code": "agent_starting",
                           "message": "agent default/starting is starting on shard p-0; retry"})
    cases = [
        ("GET", "/v1/agents/default/starting", starting),
        ("POST", "/v1/agents/default/starting/messages", starting),
        ("GET", "/v1/agents/default/starting/events?after=0", starting),
        ("GET", "/v1/agents/default/starting/ws", starting),
        ("DELETE", "/v1/agents/default/held",
         (409, None, {"type": "error", "code": "conflict", "message": "it is active here"})),
        ("DELETE", "/v1/agents/default/gone",
         (202, None, {"accepted": True, "message": "the owning shard disposes of the folder per spec.onDelete"})),
        ("POST", "/v1/agents",
         (501, None, {"type": "error", "code": "not_supported",
                      "message": "in Kubernetes mode agents are managed with kubectl (kubectl apply agents)"})),
        ("GET", "/v1/agents/default/nobody",
         (404, None, {"type": "error", "code": "agent_not_found", "message": "no agent 'default/nobody'"})),
    ]
    async with KubeClient(KubeConfig("http://127.0.0.1:9")) as kube, run_shard(config, kube) as running:
        async with aiohttp.ClientSession() as http:
            for method, path, want in cases:
                async with http.request(method, running.url + path) as resp:
                    got = (resp.status, resp.headers.get("Retry-After"), await resp.json())
                    assert resp.content_type == "application/json"
                assert got == want, (method, path)
