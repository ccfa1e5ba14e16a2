"""A shard's HTTP API (real server, real files; no apiserver needed for these paths)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from agent_runtime.kube.client import KubeClient
from agent_runtime.kube.config import KubeConfig
from agent_runtime.kube.shard import ShardConfig, run_shard
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
