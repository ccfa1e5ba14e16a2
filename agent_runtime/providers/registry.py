"""Provider selection: one adapter per provider name, all sharing the shard's one HTTP session.

`ProviderRouter` is the `Provider` the host hands to every actor; it routes each call by
`ModelRequest.provider` (the manifest's `spec.model.provider`) and region. Base URLs come from
configuration (`ProviderSettings`: code, CLI flags or the environment); API keys from the environment
or a mounted secret file, never from a manifest, and they are held as `Secret`s so no repr or log
line shows them.

Environment:
  AGENT_RUNTIME_<PROVIDER>_BASE_URL            default endpoint (PROVIDER: ANTHROPIC, OPENAI, GEMINI)
  AGENT_RUNTIME_<PROVIDER>_BASE_URL_<REGION>   endpoint of one region (REGION upper-cased, '-' as '_')
  ANTHROPIC_API_KEY / OPENAI_API_KEY / GEMINI_API_KEY (or GOOGLE_API_KEY)
  AGENT_RUNTIME_SECRETS_DIR                    a folder holding files named like the key variables
                                               (a mounted Kubernetes secret; wins over the variables)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from agent_runtime.providers.anthropic import AnthropicCodec
from agent_runtime.providers.base import ModelRequest, Provider, ProviderError, StreamEvent
from agent_runtime.providers.gemini import GeminiCodec
from agent_runtime.providers.http import HttpProvider, ProviderSession, Secret
from agent_runtime.providers.openai_chat import OpenAIChatCodec
from agent_runtime.providers.openai_responses import OpenAIResponsesCodec
from agent_runtime.providers.wire import WireCodec

HTTP_PROVIDERS = ("anthropic", "openai", "openai-responses", "gemini")
DEFAULT_BASE_URLS: dict[str, str] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "openai-responses": "https://api.openai.com/v1",
    "gemini": "https://generativelanguage.googleapis.com",
}
KEY_VARIABLES: dict[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "openai-responses": ("OPENAI_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
}


def env_name(provider: str) -> str:
    """`openai-responses` shares OpenAI's endpoint variables."""
    return "OPENAI" if provider.startswith("openai") else provider.upper()


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Where each provider lives. `base_urls[provider][region]`; region None is the default."""

    base_urls: Mapping[str, Mapping[str | None, str]] = dataclasses.field(default_factory=dict)
    secrets_dir: Path | None = None
    anthropic_thinking_budget: int | None = None

    def urls_of(self, provider: str) -> dict[str | None, str]:
        urls: dict[str | None, str] = {None: DEFAULT_BASE_URLS[provider]}
        urls.update(self.base_urls.get(provider, {}))
        return urls

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProviderSettings:
        env = os.environ if environ is None else environ
        base_urls: dict[str, dict[str | None, str]] = {}
        for provider in HTTP_PROVIDERS:
            prefix = f"AGENT_RUNTIME_{env_name(provider)}_BASE_URL"
            urls: dict[str | None, str] = {}
            for name, value in env.items():
                if name == prefix:
                    urls[None] = value
                elif name.startswith(prefix + "_"):
                    urls[name[len(prefix) + 1 :].lower().replace("_", "-")] = value
            if urls:
                base_urls[provider] = urls
        secrets = env.get("AGENT_RUNTIME_SECRETS_DIR")
        return cls(base_urls=base_urls, secrets_dir=Path(secrets) if secrets else None)

    def with_base_url(self, provider: str, url: str, region: str | None = None) -> ProviderSettings:
        """A copy with one endpoint replaced (CLI flags, the demo's local mocks)."""
        merged = {p: dict(u) for p, u in self.base_urls.items()}
        merged.setdefault(provider, {})[region] = url
        return dataclasses.replace(self, base_urls=merged)


def api_key(provider: str, settings: ProviderSettings, environ: Mapping[str, str] | None = None) -> Secret:
    """The key from a mounted secret file `<secrets_dir>/<VARIABLE>` when a secrets folder is
    configured and has one, else from the environment; empty if neither has one (the provider then
    answers 401, which the agent records as a non-retryable error). Read once, at startup."""
    env = os.environ if environ is None else environ
    if settings.secrets_dir is not None:
        for var in KEY_VARIABLES[provider]:
            path = settings.secrets_dir / var
            if path.is_file():
                return Secret(path.read_text(encoding="utf-8").strip())
    for var in KEY_VARIABLES[provider]:
        if env.get(var):
            return Secret(env[var])
    return Secret("")


def codec_for(provider: str, settings: ProviderSettings) -> WireCodec:
    if provider == "anthropic":
        return AnthropicCodec(thinking_budget=settings.anthropic_thinking_budget)
    if provider == "openai":
        return OpenAIChatCodec()
    if provider == "openai-responses":
        return OpenAIResponsesCodec()
    if provider == "gemini":
        return GeminiCodec()
    raise ValueError(f"no HTTP provider {provider!r}; known: {list(HTTP_PROVIDERS)}")


class ProviderRouter(Provider):
    """Every provider of a shard behind one `Provider`; routes by `request.provider`."""

    name = "router"

    def __init__(self, providers: Mapping[str, Provider], session: ProviderSession | None = None) -> None:
        self.providers = dict(providers)
        self.session = session

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        provider = self.providers.get(request.provider)
        if provider is None:
            return _refuse(request.provider, sorted(self.providers))
        return provider.stream(request)

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        if self.session is not None:
            await self.session.aclose()


async def _refuse(name: str, known: list[str]) -> AsyncIterator[StreamEvent]:
    raise ProviderError(f"provider {name!r} is not configured on this shard (configured: {known})", retryable=False,
                        code="unknown_provider")
    yield  # pragma: no cover - makes this an async generator


def build_router(simulated: Provider, settings: ProviderSettings | None = None,
                 environ: Mapping[str, str] | None = None, session: ProviderSession | None = None) -> ProviderRouter:
    """The in-process simulated model plus one HTTP adapter per provider API, one shared session."""
    settings = settings or ProviderSettings.from_env(environ)
    session = session or ProviderSession()
    providers: dict[str, Provider] = {"simulated": simulated}
    for name in HTTP_PROVIDERS:
        providers[name] = HttpProvider(codec_for(name, settings), session, settings.urls_of(name),
                                       api_key(name, settings, environ))
    return ProviderRouter(providers, session)
