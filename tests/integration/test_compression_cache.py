"""Frozen-prefix compression against each mock provider: real adapters → real HTTP → the mocks'
caching models (including a consolidation of the frozen chunks into one archive message). Where the prefix is stable the provider reports cache reads, also on the first
call after a fold and after a restart of the whole server (the prefix rebuilt from the log is the
same bytes: a fresh adapter with no encoded fragments gets the same cache hit)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from agent_runtime.agent.actor import ActorConfig
from agent_runtime.events import Event
from agent_runtime.manifest import make_manifest
from agent_runtime.providers.registry import HTTP_PROVIDERS, ProviderSettings
from agent_runtime.standalone import ServerConfig, serve
from mock_providers.server import MockConfig, MockServer

MODELS = {"anthropic": "claude-sonnet-5", "openai": "gpt-4.1-mini", "openai-responses": "gpt-4.1-mini",
          "gemini": "gemini-2.5-flash"}
COMPRESSION = {"tailBudget": 700, "keepTail": 250, "foldedOutputTokens": 40, "frozenBudget": 1024}
SYSTEM = "You are a careful coding agent. " * 40  # ~300 tokens: the prefix passes the mocks' minimum early


async def _idle(host: Any, keys: list[str]) -> None:
    for _ in range(3000):
        if all(host.get(k).phase() in ("idle", "hibernated") for k in keys):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("agents did not go idle")


def _usages_after_folds(events: list[Event]) -> list[dict[str, Any]]:
    out = []
    after_fold = False
    for e in events:
        if e.kind == "compression":
            after_fold = True
        elif e.kind == "usage" and after_fold:
            out.append(e.data)
            after_fold = False
    return out


async def test_cache_reads_across_folds_and_restart_for_every_provider(tmp_path: Path) -> None:
    keys = [f"default/agent-{p}" for p in MODELS]
    mock_config = MockConfig(anthropic_min_cache_tokens=256, openai_min_cache_tokens=256, gemini_min_cache_tokens=256)
    async with MockServer(config=mock_config) as mock:
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"):
            (secrets / var).write_text("sk-test\n")
        settings = ProviderSettings(secrets_dir=secrets)
        for name in HTTP_PROVIDERS:
            settings = settings.with_base_url(name, mock.base_url(name))

        def config() -> ServerConfig:
            return ServerConfig(data_dir=tmp_path / "data", port=0, auth=False, providers=settings,
                                actor=ActorConfig(retry_base_s=0.001))

        async with serve(config()) as running:
            host = running.host
            for provider, model in MODELS.items():
                await host.apply(make_manifest(f"agent-{provider}", model={"provider": provider, "name": model},
                                               systemPrompt=SYSTEM, compression=COMPRESSION))
            for turn in range(8):
                await asyncio.gather(*(host.user_message(k, f"m{turn}", f"task {turn}: write fib") for k in keys))
                await _idle(host, keys)
            before = {k: await host.read_events(k, 0) for k in keys}
            async with aiohttp.ClientSession() as http, http.get(f"{running.url}/metrics") as resp:
                metrics = await resp.text()

        # the whole server again, on the same data folder, against the same (warm) provider caches
        async with serve(config()) as running:
            host = running.host
            await asyncio.gather(*(host.user_message(k, "after-restart", "task: write primes") for k in keys))
            await _idle(host, keys)
            after = {k: await host.read_events(k, 0) for k in keys}

    assert "agent_runtime_compressions_total" in metrics and 'agent_runtime_model_cost_units_total{provider="anthropic"}' in metrics
    for key in keys:
        events = before[key]
        folds = [e for e in events if e.kind == "compression"]
        assert len(folds) >= 2, (key, len(folds))
        assert all(e.data["tokens_after"] < e.data["tokens_before"] for e in folds)
        # the frozen chunks passed frozenBudget: consolidated into one archive message, which every API accepts
        assert any(e.data.get("consolidated") for e in folds), key
        assert not [e for e in events if e.kind == "error"], key
        # the first call after each fold still reads the earlier prefix from the cache
        firsts = _usages_after_folds(events)
        assert firsts and all(u["cache_read_tokens"] > 0 for u in firsts), (key, firsts)
        usages = [e.data for e in events if e.kind == "usage"]
        late = usages[len(usages) // 2 :]
        read = sum(u["cache_read_tokens"] for u in late)
        total = sum(u["input_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"] for u in late)
        assert read / total > 0.5, (key, read, total)
        assert all("cost_units" in u and "cached_share" in u for u in usages)
        # after the restart: the first call's prefix is the last call's prompt, byte for byte
        last = usages[-1]
        prev_total = last["input_tokens"] + last["cache_read_tokens"] + last["cache_write_tokens"]
        new = after[key][len(events):]
        first = next(e.data for e in new if e.kind == "usage")
        folded_first = any(e.kind == "compression" for e in new[: [e.kind for e in new].index("usage")])
        if folded_first:  # a fold came first: the chunks before it are still read
            assert first["cache_read_tokens"] > 0, (key, first)
        else:
            assert first["cache_read_tokens"] >= prev_total - 128, (key, first, prev_total)
