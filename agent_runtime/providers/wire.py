"""The contract between a wire codec and the HTTP shell (sans-IO).

A codec knows one provider API: how a canonical `ModelRequest` becomes an HTTP request, how the SSE
events of its stream become canonical `StreamEvent`s, and how an error response becomes a
`ProviderError` with the provider's retry hint. It does no IO, so recorded streams replay through
it byte for byte in unit tests, and `agent_runtime.providers.http.HttpProvider` is the one IO shell
shared by every codec.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from agent_runtime.native import SseEvent
from agent_runtime.providers.base import ModelRequest, ProviderError, StreamEvent
from agent_runtime.providers.retry import retry_hint


_SHOWN_HEADERS = frozenset({"content-type", "accept", "anthropic-version", "anthropic-beta", "openai-beta"})


@dataclasses.dataclass(frozen=True, slots=True)
class HttpRequest:
    """One HTTP request of a codec. Its headers carry the API key: the repr (used by str, logs,
    tracebacks, assertion messages) shows only the values of known harmless headers."""

    url: str
    headers: dict[str, str] = dataclasses.field(repr=False)
    body: bytes = dataclasses.field(repr=False)

    def __repr__(self) -> str:
        shown = {k: (v if k.lower() in _SHOWN_HEADERS else "***") for k, v in self.headers.items()}
        return f"HttpRequest(url={self.url!r}, headers={shown!r}, body=<{len(self.body)} bytes>)"

    __str__ = __repr__


class StreamDecoder(Protocol):
    """Turns the SSE events of one response into canonical events. One per model call."""

    def feed(self, event: SseEvent) -> list[StreamEvent]:
        """Events for one SSE event; raises `ProviderError` for an error event or malformed data."""

    def finish(self) -> list[StreamEvent]:
        """The stream ended: the closing events, or `ProviderError` if it was cut short."""


class WireCodec(Protocol):
    provider: str

    def encode(self, request: ModelRequest, base_url: str, api_key: str) -> HttpRequest:
        """The HTTP request for one streamed model call."""

    def decoder(self) -> StreamDecoder:
        """A fresh decoder for one response stream."""

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The error an HTTP status >= 400 stands for."""


class FragmentCache:
    """Encoded JSON of canonical messages, by object identity, so a call re-serializes only the
    messages it has not sent before (the history is append-only and its messages are immutable).
    Holds each message it keys (an id is never reused while cached); FIFO-bounded."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._items: collections.OrderedDict[int, tuple[object, orjson.Fragment]] = collections.OrderedDict()

    def get(self, message: object, encode: Callable[[], Any]) -> orjson.Fragment:
        hit = self._items.get(id(message))
        if hit is not None and hit[0] is message:
            return hit[1]
        fragment = orjson.Fragment(orjson.dumps(encode()))
        self._items[id(message)] = (message, fragment)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return fragment

    def get_many(self, message: object, encode: Callable[[], list[Any]]) -> orjson.Fragment | None:
        """Several JSON values of one message as one comma-joined fragment (None if there are none)."""
        hit = self._items.get(id(message))
        if hit is not None and hit[0] is message:
            return hit[1]
        values = encode()
        if not values:
            return None
        fragment = orjson.Fragment(b",".join(orjson.dumps(v) for v in values))
        self._items[id(message)] = (message, fragment)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return fragment

    def __len__(self) -> int:
        return len(self._items)


RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads_event(data: str, provider: str) -> Any:
    """Parse one SSE data payload; malformed JSON is a retryable `malformed_stream` error."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProviderError(
            f"{provider}: malformed JSON in stream: {data[:80]!r}", retryable=True, code="malformed_stream", status=200
        ) from exc


def parse_tool_arguments(text: str, provider: str) -> dict[str, Any]:
    """Complete tool-call arguments: a JSON object (empty text is `{}`)."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProviderError(
            f"{provider}: tool arguments are not JSON: {text[:80]!r}", retryable=True, code="malformed_tool_call", status=200
        ) from exc
    if not isinstance(value, dict):
        raise ProviderError(f"{provider}: tool arguments are not an object", retryable=True, code="malformed_tool_call")
    return value


def http_error(
    provider: str, status: int, headers: Mapping[str, str], body: bytes, *, message: str | None = None, code: str | None = None
) -> ProviderError:
    """A `ProviderError` for an HTTP error, with the error body's message and the retry hint."""
    parsed: Any = None
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    detail = message
    kind = code
    if isinstance(parsed, dict):
        err = parsed.get("error")
        if isinstance(err, dict):
            detail = detail or str(err.get("message", ""))
            kind = kind or str(err.get("type") or err.get("status") or err.get("code") or "")
    lower = {k.lower(): v for k, v in headers.items()}
    should = lower.get("x-should-retry")
    retryable = status in RETRYABLE_STATUS if should is None else should.strip().lower() == "true"
    return ProviderError(
        f"{provider}: HTTP {status}: {detail or body[:120].decode('utf-8', 'replace')}",
        retryable=retryable,
        code=kind or f"http_{status}",
        retry_after_s=retry_hint(headers, parsed),
        status=status,
    )


def stream_cut(provider: str) -> ProviderError:
    return ProviderError(f"{provider}: stream ended before the message was complete", retryable=True,
                         code="stream_cut", status=200)
