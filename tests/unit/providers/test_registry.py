"""Provider endpoints and keys from configuration; the router; the CLI's --base-url flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runtime.cli.main import _provider_settings, build_parser
from agent_runtime.messages import Usage, UserMessage
from agent_runtime.metrics import Metrics
from agent_runtime.providers.base import ModelRequest, ProviderError
from agent_runtime.providers.http import HttpProvider, Secret
from agent_runtime.providers.registry import DEFAULT_BASE_URLS, ProviderSettings, api_key, build_router
from agent_runtime.providers.simulated import SimulatedProvider


def test_endpoints_from_the_environment_with_regions() -> None:
    env = {"AGENT_RUNTIME_ANTHROPIC_BASE_URL": "http://a", "AGENT_RUNTIME_ANTHROPIC_BASE_URL_EU_WEST": "http://a-eu",
           "AGENT_RUNTIME_OPENAI_BASE_URL": "http://o/v1"}
    s = ProviderSettings.from_env(env)
    assert s.urls_of("anthropic") == {None: "http://a", "eu-west": "http://a-eu"}
    assert s.urls_of("openai-responses")[None] == "http://o/v1"  # both OpenAI APIs share the endpoint
    assert s.urls_of("gemini") == {None: DEFAULT_BASE_URLS["gemini"]}


def test_keys_from_a_mounted_secret_win_over_the_environment(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "from-env", "GOOGLE_API_KEY": "google"}
    assert api_key("openai", ProviderSettings(), env).reveal() == "from-env"
    assert api_key("gemini", ProviderSettings(), env).reveal() == "google"
    (tmp_path / "OPENAI_API_KEY").write_text("from-file\n")
    assert api_key("openai", ProviderSettings(secrets_dir=tmp_path), env).reveal() == "from-file"
    assert api_key("anthropic", ProviderSettings(), {}).reveal() == ""
    assert "from" not in repr(Secret("from-file")) and "from" not in str(Secret("from-file"))


async def test_router_routes_by_provider_and_refuses_unknown_ones() -> None:
    router = build_router(SimulatedProvider(), ProviderSettings(), environ={})
    assert {type(p) for n, p in router.providers.items() if n != "simulated"} == {HttpProvider}
    req = ModelRequest(model="m", system="", messages=[UserMessage("hi")], tools=(), max_tokens=10, agent_key="a",
                       provider="mistral")
    with pytest.raises(ProviderError) as info:
        async for _ in router.stream(req):
            pass
    assert info.value.code == "unknown_provider" and not info.value.retryable
    await router.aclose()


def test_cli_base_url_flags() -> None:
    args = build_parser().parse_args(["serve", "--base-url", "gemini=http://g", "--base-url", "anthropic@eu=http://a-eu"])
    s = _provider_settings(args)
    assert s.urls_of("gemini")[None] == "http://g"
    assert s.urls_of("anthropic")["eu"] == "http://a-eu"
    bad = build_parser().parse_args(["serve", "--base-url", "mistral=http://m"])
    with pytest.raises(SystemExit, match="PROVIDER"):
        _provider_settings(bad)


def test_metrics_render_usage_retries_and_errors() -> None:
    m = Metrics()
    m.model_usage("anthropic", Usage(10, 5, 100, 7))
    m.model_retry("anthropic", "overloaded_error")
    m.model_error("gemini", "RESOURCE_EXHAUSTED")
    text = m.render({})
    assert 'agent_runtime_model_tokens_total{provider="anthropic",kind="cache_read"} 100' in text
    assert 'agent_runtime_model_retries_by_reason_total{provider="anthropic",reason="overloaded_error"} 1' in text
    assert 'agent_runtime_model_errors_total{provider="gemini",code="RESOURCE_EXHAUSTED"} 1' in text
    assert "agent_runtime_model_retries_total 1" in text
