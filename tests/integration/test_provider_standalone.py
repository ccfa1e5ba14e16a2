"""The standalone server with agents of every provider side by side: real adapters over one shared
session → real HTTP → the mock servers. Usage totals reach the agent's GET summary and /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from agent_runtime.agent.actor import ActorConfig
from agent_runtime.manifest import make_manifest
from agent_runtime.providers.http import HttpProvider
from agent_runtime.providers.registry import HTTP_PROVIDERS, ProviderRouter, ProviderSettings
from agent_runtime.standalone import ServerConfig, serve
from mock_providers.server import MockServer

MODELS = {"simulated": "sim-coder-1", "anthropic": "claude-sonnet-5", "openai": "gpt-4.1-mini",
          "openai-responses": "gpt-4.1-mini", "gemini": "gemini-2.5-flash"}


async def test_agents_of_every_provider_side_by_side(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"):
        (secrets / var).write_text("sk-from-a-mounted-secret\n")
    async with MockServer() as mock:
        mock.state.config = type(mock.state.config)(api_key="sk-from-a-mounted-secret")
        settings = ProviderSettings(secrets_dir=secrets)
        for name in HTTP_PROVIDERS:
            settings = settings.with_base_url(name, mock.base_url(name))
        config = ServerConfig(data_dir=tmp_path / "data", port=0, auth=False, providers=settings,
                              actor=ActorConfig(retry_base_s=0.001))
        async with serve(config) as running:
            host = running.host
            router = host.provider
            assert isinstance(router, ProviderRouter)
            sessions = {id(p.session) for p in router.providers.values() if isinstance(p, HttpProvider)}
            assert len(sessions) == 1  # one pooled session for the whole shard
            for provider, model in MODELS.items():
                await host.apply(make_manifest(f"agent-{provider}", model={"provider": provider, "name": model}))
            await asyncio.gather(*(host.user_message(f"default/agent-{p}", "m1", "task: write fib") for p in MODELS))
            for _ in range(2000):
                if all(host.get(f"default/agent-{p}").phase() == "idle" for p in MODELS):
                    break
                await asyncio.sleep(0.01)
            async with aiohttp.ClientSession() as http:
                summaries = {}
                for p in MODELS:
                    async with http.get(f"{running.url}/v1/agents/default/agent-{p}") as resp:
                        summaries[p] = await resp.json()
                async with http.get(f"{running.url}/metrics") as resp:
                    metrics = await resp.text()
    for provider, summary in summaries.items():
        assert summary["phase"] == "idle" and summary["errors"] == 0, (provider, summary)
        tokens = summary["tokens"]
        assert tokens["output"] > 0 and tokens["input"] + tokens["cache_read"] + tokens["cache_write"] > 0
    served = {r["api"] for r in mock.state.requests}
    assert served == set(HTTP_PROVIDERS)  # the simulated agent never went over HTTP
    for provider in HTTP_PROVIDERS:
        assert f'agent_runtime_model_tokens_total{{provider="{provider}",kind="output"}}' in metrics
    assert 'agent_runtime_model_calls_total{provider="simulated"}' in metrics
    assert "sk-from-a-mounted-secret" not in metrics
