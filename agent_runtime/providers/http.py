"""The IO shell of every HTTP provider: one pooled aiohttp session per shard, one codec per API.

`ProviderSession` owns the shard's single `aiohttp.ClientSession` (keep-alive connections pooled per
endpoint, created lazily on the running loop). `HttpProvider` posts the codec's request, feeds the
response bytes to the native SSE parser and the parsed events to the codec's decoder, and yields
canonical events. Transport failures (refused connection, reset, timeout) become retryable
`ProviderError`s, except after the decoder has seen the message's terminator (the message is whole;
retrying it would drop it and re-run its early tool calls); nothing here knows a wire format.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp

from agent_runtime.native import SseBufferOverflow, SseParser
from agent_runtime.providers.base import MessageCompleted, ModelRequest, Provider, ProviderError, StreamEvent
from agent_runtime.providers.wire import WireCodec


class Secret:
    """An API key that never shows up in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)" if self._value else "Secret(<empty>)"

    __str__ = __repr__


class ProviderSession:
    """The shard's one HTTP client session (created on first use, on the running loop)."""

    def __init__(self, *, limit: int = 1024, limit_per_host: int = 512, connect_timeout_s: float = 10.0,
                 read_timeout_s: float = 300.0) -> None:
        self.limit = limit
        self.limit_per_host = limit_per_host
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.limit, limit_per_host=self.limit_per_host, keepalive_timeout=60)
            # No cookie jar, no auto-decompress surprises: provider streams are plain SSE bytes.
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class HttpProvider(Provider):
    """A provider API over HTTP + SSE. `base_urls` maps a region (None: the default) to a base URL."""

    def __init__(self, codec: WireCodec, session: ProviderSession, base_urls: Mapping[str | None, str], api_key: Secret,
                 *, max_sse_buffer: int = 1 << 20) -> None:
        if None not in base_urls:
            raise ValueError(f"{codec.provider}: a default base URL (region None) is required")
        self.codec = codec
        self.name = codec.provider
        self.session = session
        self.base_urls = dict(base_urls)
        self.api_key = api_key
        self.max_sse_buffer = max_sse_buffer
        self.bytes_received = 0
        self.events_parsed = 0

    def base_url(self, region: str | None) -> str:
        return self.base_urls.get(region) or self.base_urls[None]

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        http = self.codec.encode(request, self.base_url(request.region), self.api_key.reveal())
        session = self.session.get()
        completed = False  # the decoder saw the message's terminator
        try:
            async with session.post(http.url, data=http.body, headers=http.headers) as resp:
                if resp.status >= 400:
                    body = await resp.read()
                    raise self.codec.error(resp.status, resp.headers, body)
                parser = SseParser(self.max_sse_buffer)
                decoder = self.codec.decoder()
                async for chunk in resp.content.iter_any():
                    self.bytes_received += len(chunk)
                    events = parser.feed(chunk)
                    self.events_parsed += len(events)
                    for sse in events:
                        for out in decoder.feed(sse):
                            completed = completed or isinstance(out, MessageCompleted)
                            yield out
                parser.finish()
                for out in decoder.finish():
                    yield out
        except SseBufferOverflow as exc:
            raise ProviderError(f"{self.name}: {exc}", retryable=True, code="malformed_stream", status=200) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            if completed:
                return  # the whole message arrived; only the end of the HTTP body was lost
            raise ProviderError(f"{self.name}: connection failed: {type(exc).__name__}: {exc}", retryable=True,
                                code="connection_error") from exc

    async def aclose(self) -> None:
        """The session belongs to the registry (shared by every provider of the shard)."""
