"""A shard's HTTP API (real server, real files; no apiserver needed for these paths)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web

from agent_runtime.kube.client import KubeClient
from agent_runtime.kube.config import KubeConfig
from agent_runtime.kube.shard import Shard, ShardConfig, _starting_middleware, build_host
from agent_runtime.kube.tokens import SharedTokenStore
from agent_runtime.server import make_app

MANIFEST = """apiVersion: agentruntime.dev/v1alpha1
kind: Agent
metadata: {name: intruder, namespace: default}
spec:
  model: {provider: simulated, name: sim}
"""


async def test_shard_refuses_creating_agents_over_http(tmp_path: Path) -> None:
    """On a shard, agents arrive through the Agent watch (owner lock first). `POST /v1/agents` would
    register (and a message would open) a log with no owner lock, next to its real owner: refused."""
    config = ShardConfig(namespace="default", pool="p", shard="p-0", data_dir=tmp_path, auth=False)
    async with build_host(config) as host:
        shard = Shard(config, host, KubeClient(KubeConfig("http://127.0.0.1:9")), address="")
        tokens = SharedTokenStore(tmp_path / "tokens.json", None, enabled=False)
        app = make_app(host, tokens)
        app.middlewares.append(_starting_middleware(shard, tokens))
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"http://127.0.0.1:{port}/v1/agents", data=MANIFEST,
                                     headers={"Content-Type": "application/yaml"}) as resp:
                    body = await resp.json()
                    assert (resp.status, body["code"]) == (501, "not_supported"), body
        finally:
            await runner.cleanup()
        assert "default/intruder" not in host.handles
        assert not (tmp_path / "agents" / "default" / "intruder").exists()
