"""Mock provider servers: the Anthropic, OpenAI (Chat + Responses) and Gemini APIs on loopback.

One aiohttp app serves all of them (`/v1/messages`, `/v1/chat/completions`, `/v1/responses`,
`/{v1,v1beta}/models/{model}:streamGenerateContent?alt=sse`). Behind every route sits the simulated
model (`SimulatedProvider.plan`), or the next scripted message when a test queued one. Each API's
prompt caching is applied (`caching.PromptCache`) and the time to first token grows with the
*uncached* prompt tokens, so a cache hit is visible in latency as it is in reality.

The model is pluggable: `MockState.model` is anything with `plan(ModelRequest) -> AssistantMessage`
(`MockModel`; a benchmark's session model, say), the simulated model by default.

Faults, on request:
- the `x-mock-fault` request header (one request), or
- `POST /mock/faults {"faults": [...]}` (queued, one per following request; tests in-process can
  append to `MockState.faults` directly).
A fault is `kind[:key=value,...]`:
  rate_limit[:retry_after=S|retry_after_ms=MS]  429 with the provider's hint (Gemini: RetryInfo in the body)
  overloaded                                    529 (Anthropic) / 503 (OpenAI, Gemini)
  server_error                                  500
  midstream_error                               the provider's error event after half the stream
  cut                                           the stream stops after half its events, no terminator
  malformed                                     a data line that is not JSON, after half the stream
  slow[:delay=S]                                S seconds (default 0.05) between events
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web

from agent_runtime.listen import bound_port
from agent_runtime.messages import AssistantMessage
from agent_runtime.native import TokenCache, count_tokens
from agent_runtime.providers.base import ModelRequest
from agent_runtime.providers.simulated import SimulatedModelConfig, SimulatedProvider
from mock_providers import anthropic as anthropic_wire
from mock_providers import gemini as gemini_wire
from mock_providers import openai as openai_wire
from mock_providers.caching import CacheRequestError, CacheUsage, PromptCache
from mock_providers.common import Answer, BadRequest, ParsedRequest

FAULT_KINDS = ("rate_limit", "overloaded", "server_error", "midstream_error", "cut", "malformed", "slow")
APIS = ("anthropic", "openai", "openai-responses", "gemini")


class FaultError(ValueError):
    """A fault spec that names no known fault or has a bad parameter."""


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    params: dict[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        kind, _, rest = spec.strip().partition(":")
        if kind not in FAULT_KINDS:
            raise FaultError(f"unknown fault {kind!r}; known: {list(FAULT_KINDS)}")
        params: dict[str, float] = {}
        for item in filter(None, rest.split(",")):
            key, _, value = item.partition("=")
            try:
                params[key.strip()] = float(value)
            except ValueError:
                raise FaultError(f"fault {kind}: {item!r} is not key=number") from None
        return cls(kind, params)


@dataclasses.dataclass(frozen=True, slots=True)
class MockConfig:
    """The simulated model behind the mocks, and the cache and latency model."""

    model: SimulatedModelConfig = SimulatedModelConfig()
    ttft_base_s: float = 0.0
    ttft_per_uncached_token_s: float = 0.0  # e.g. 2e-5: 50k uncached tokens add one second
    event_interval_s: float = 0.0  # pacing between streamed events (0: as fast as possible)
    anthropic_min_cache_tokens: int = 1024
    openai_min_cache_tokens: int = 1024
    gemini_min_cache_tokens: int = 1024
    thinking_text: str = "The user wants a small program; I will look at the workspace first."
    redacted_thinking: bool = False  # Anthropic: each thinking answer also has a `redacted_thinking` block
    api_key: str | None = None  # when set, requests must carry exactly this key


class MockModel(Protocol):
    """What answers behind the routes: the complete next message for a parsed request."""

    def plan(self, request: ModelRequest) -> AssistantMessage: ...


class MockState:
    """Mutable state of one mock server: caches, queued faults and scripted answers, a request log."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        tokens = TokenCache()
        self.caches = {
            "anthropic": PromptCache(min_tokens=config.anthropic_min_cache_tokens, tokens=tokens),
            "openai": PromptCache(min_tokens=config.openai_min_cache_tokens, tokens=tokens),
            "gemini": PromptCache(min_tokens=config.gemini_min_cache_tokens, tokens=tokens),
        }
        self.faults: collections.deque[Fault] = collections.deque()
        self.script: collections.deque[AssistantMessage] = collections.deque()
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=256)
        self.counts: collections.Counter[str] = collections.Counter()
        self.model: MockModel = SimulatedProvider(config.model)
        self.ids = itertools.count(1)
        self.clock: Callable[[], float] = time.monotonic


def _auth_key(api: str, request: web.Request) -> str:
    h = request.headers
    if api == "anthropic":
        bearer = h.get("authorization", "")
        return h.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else "")
    if api == "gemini":
        return h.get("x-goog-api-key") or request.query.get("key", "")
    bearer = h.get("authorization", "")
    return bearer[7:] if bearer.lower().startswith("bearer ") else ""


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def _error(api: str, status: int, message: str, *, kind: str | None = None,
           retry_after: float | None = None, retry_after_ms: float | None = None) -> web.Response:
    headers: dict[str, str] = {}
    if api == "gemini":
        return _json(gemini_wire.error_body(status, message, retry_after if status == 429 else None), status)
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    if retry_after_ms is not None:
        headers["retry-after-ms"] = f"{retry_after_ms:g}"
    if api == "anthropic":
        anthropic_kinds = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
                           500: "api_error", 529: "overloaded_error"}
        headers["request-id"] = "req_mock"
        return _json(anthropic_wire.error_body(kind or anthropic_kinds.get(status, "api_error"), message), status, headers)
    openai_kinds = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded",
                    500: "server_error", 503: "server_error"}
    headers["x-request-id"] = "req_mock"
    code = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(status)
    return _json(openai_wire.error_body(kind or openai_kinds.get(status, "server_error"), message, code), status, headers)


def _http_fault(api: str, fault: Fault) -> web.Response | None:
    p = fault.params
    if fault.kind == "rate_limit":
        if "retry_after" not in p and "retry_after_ms" not in p:
            p = {"retry_after_ms": 20.0} if api != "gemini" else {"retry_after": 0.02}
        return _error(api, 429, "Rate limited (mock fault).", retry_after=p.get("retry_after"),
                      retry_after_ms=p.get("retry_after_ms"))
    if fault.kind == "overloaded":
        return _error(api, 529 if api == "anthropic" else 503, "Overloaded (mock fault).")
    if fault.kind == "server_error":
        return _error(api, 500, "Internal server error (mock fault).")
    return None


def _midstream_error(api: str, seq: int) -> bytes:
    if api == "anthropic":
        return anthropic_wire.midstream_error()
    if api == "openai":
        return openai_wire.midstream_error_chat()
    if api == "openai-responses":
        return openai_wire.midstream_error_responses(seq)
    return gemini_wire.midstream_error()


class MockProviderApp:
    """The request handlers over one `MockState`."""

    def __init__(self, state: MockState) -> None:
        self.state = state

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/messages", self._route("anthropic"))
        app.router.add_post("/v1/chat/completions", self._route("openai"))
        app.router.add_post("/v1/responses", self._route("openai-responses"))
        app.router.add_post("/{version:v1|v1beta}/models/{tail:[^/]+}", self._route("gemini"))
        app.router.add_post("/mock/faults", self._queue_faults)
        app.router.add_delete("/mock/faults", self._clear_faults)
        app.router.add_get("/mock/stats", self._stats)
        return app

    def _route(self, api: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self.serve(api, request)

        return handler

    async def _queue_faults(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            faults = [Fault.parse(str(s)) for s in body["faults"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, FaultError) as exc:
            return _json({"error": f"expected {{\"faults\": [\"kind[:k=v]\", ...]}}: {exc}"}, 400)
        self.state.faults.extend(faults)
        return _json({"queued": len(self.state.faults)}, 200)

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.state.faults.clear()
        return _json({"queued": 0}, 200)

    async def _stats(self, request: web.Request) -> web.Response:
        return _json({"requests": dict(self.state.counts), "queued_faults": len(self.state.faults)}, 200)

    async def serve(self, api: str, request: web.Request) -> web.StreamResponse:
        state = self.state
        state.counts[api] += 1
        key = _auth_key(api, request)
        expected = state.config.api_key
        if not key or (expected is not None and key != expected):
            return _error(api, 401, "invalid x-api-key" if api == "anthropic" else "Incorrect API key provided.")
        if api == "anthropic" and "anthropic-version" not in request.headers:
            return _error(api, 400, "anthropic-version: header is required")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(api, 400, "The request body is not valid JSON.")
        try:
            fault = Fault.parse(request.headers["x-mock-fault"]) if "x-mock-fault" in request.headers else (
                state.faults.popleft() if state.faults else None)
        except FaultError as exc:
            return _error(api, 400, str(exc))
        state.requests.append({"api": api, "path": request.path, "query": dict(request.query), "body": body,
                               "headers": {k.lower(): v for k, v in request.headers.items()
                                           if k.lower() not in ("authorization", "x-api-key", "x-goog-api-key")}})
        if fault is not None:
            refused = _http_fault(api, fault)
            if refused is not None:
                return refused
        try:
            parsed, usage = self._parse(api, request, body)
        except (BadRequest, CacheRequestError, KeyError, TypeError, ValueError) as exc:
            return _error(api, 400, f"{type(exc).__name__}: {exc}")
        answer = self._answer(api, parsed, usage)
        chunks = self._encode(api, parsed, answer)
        return await self._send(api, request, chunks, usage, fault)

    def _parse(self, api: str, request: web.Request, body: Any) -> tuple[ParsedRequest, CacheUsage]:
        now = self.state.clock()
        caches = self.state.caches
        if api == "anthropic":
            parsed = anthropic_wire.parse(body)
            return parsed, caches["anthropic"].anthropic_usage(parsed.blocks, now, parsed.automatic_ttl)
        if api == "gemini":
            model, _, method = request.match_info["tail"].partition(":")
            if method != "streamGenerateContent" or request.query.get("alt") != "sse":
                raise BadRequest("the mock serves streamGenerateContent?alt=sse only")
            parsed = gemini_wire.parse(body, model)
            return parsed, caches["gemini"].gemini_usage(parsed.blocks, now)
        parsed = openai_wire.parse_chat(body) if api == "openai" else openai_wire.parse_responses(body)
        if not parsed.stream:
            raise BadRequest("the mock serves streaming requests only (\"stream\": true)")
        return parsed, caches["openai"].openai_usage(parsed.blocks, now, parsed.cache_key)

    def _answer(self, api: str, parsed: ParsedRequest, usage: CacheUsage) -> Answer:
        state = self.state
        if state.script:
            message = state.script.popleft()
        else:
            request = ModelRequest(model=parsed.model, system=parsed.system, messages=parsed.messages, tools=parsed.tools,
                                   max_tokens=parsed.max_tokens, agent_key=parsed.cache_key or parsed.system[:64])
            message = state.model.plan(request)
        thinking = state.config.thinking_text if parsed.thinking else ""
        out_text = message.text + "".join(orjson.dumps(c.arguments).decode() for c in message.tool_calls)
        output_tokens = count_tokens(out_text + thinking) if out_text or thinking else 0
        return Answer(message, usage, max(1, output_tokens), thinking, f"mock{next(state.ids):08d}",
                      redacted_thinking=state.config.redacted_thinking)

    def _encode(self, api: str, parsed: ParsedRequest, answer: Answer) -> list[bytes]:
        if api == "anthropic":
            return anthropic_wire.stream(parsed, answer)
        if api == "openai":
            return openai_wire.stream_chat(parsed, answer)
        if api == "openai-responses":
            return openai_wire.stream_responses(parsed, answer)
        return gemini_wire.stream(parsed, answer)

    async def _send(self, api: str, request: web.Request, chunks: list[bytes], usage: CacheUsage,
                    fault: Fault | None) -> web.StreamResponse:
        cfg = self.state.config
        interval = cfg.event_interval_s
        if fault is not None:
            half = max(1, len(chunks) // 2)
            if fault.kind == "cut":
                chunks = chunks[:half]
            elif fault.kind == "midstream_error":
                chunks = [*chunks[:half], _midstream_error(api, half)]
            elif fault.kind == "malformed":
                head = b"event: content_block_delta\n" if api == "anthropic" else b""
                chunks = [*chunks[:half], head + b'data: {"type": "content_blo\n\n', *chunks[half:]]
            elif fault.kind == "slow":
                interval = fault.params.get("delay", 0.05)
        ttft = cfg.ttft_base_s + usage.uncached_tokens * cfg.ttft_per_uncached_token_s
        if self.state.requests:
            self.state.requests[-1].update(ttft_s=ttft, cache_read_tokens=usage.read_tokens,
                                           cache_write_tokens=usage.write_tokens, prompt_tokens=usage.total_tokens)
        response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                               "cache-control": "no-cache",
                                               "request-id" if api == "anthropic" else "x-request-id": "req_mock"})
        try:
            await response.prepare(request)
            if ttft > 0:
                await asyncio.sleep(ttft)
            if interval > 0:
                for i, chunk in enumerate(chunks):
                    if i:
                        await asyncio.sleep(interval)
                    await response.write(chunk)
            else:
                await response.write(b"".join(chunks))
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away mid-stream (an interrupted turn): nothing to finish
        return response


@dataclasses.dataclass(slots=True)
class MockServer:
    """A running mock server on loopback. `async with MockServer() as mock: mock.base_urls`."""

    config: MockConfig = MockConfig()
    host: str = "127.0.0.1"
    port: int = 0
    state: MockState = dataclasses.field(init=False)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self.state = MockState(self.config)

    async def __aenter__(self) -> MockServer:
        self._runner = web.AppRunner(MockProviderApp(self.state).app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
        await site.start()
        self.port = bound_port(site, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, provider: str) -> str:
        """The base URL an adapter (or an official SDK) is configured with for `provider`."""
        return self.url + "/v1" if provider.startswith("openai") else self.url
