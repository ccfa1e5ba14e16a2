"""The provider interface: one canonical request in, one canonical event stream out.

Adapters (Anthropic, OpenAI, Gemini, the in-process simulated model) translate to and from their
wire formats; the loop (`agent_runtime.agent.actor`) only ever sees these types. Text deltas are live and
not durable; the loop makes the completed message durable.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from agent_runtime import errors
from agent_runtime.messages import Message, ProviderState, StopReason, ToolCall, Usage

if TYPE_CHECKING:
    from agent_runtime.tools.base import ToolSpec


@dataclasses.dataclass(frozen=True, slots=True)
class ModelRequest:
    """What one model call sends. `messages` is shared with the agent state, never copied."""

    model: str
    system: str
    messages: Sequence[Message]
    tools: Sequence[ToolSpec]
    max_tokens: int
    agent_key: str
    context_tokens: int = 0
    provider: str = "simulated"
    region: str | None = None
    thinking_budget: int | None = None  # spec.model.thinkingBudget: reasoning on, with this many tokens
    frozen_ends: tuple[int, ...] = ()
    """Message counts at the ends of the last frozen chunks (at most the last two): the prefix up to
    each is byte-identical on every call (compression), so codecs put cache breakpoints there."""


@dataclasses.dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """Reasoning text (Anthropic thinking blocks, Gemini thought parts): live only, never durable."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCallStarted:
    index: int
    id: str
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCallArgsDelta:
    index: int
    fragment: str


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCallCompleted:
    index: int
    call: ToolCall


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderStateUpdated:
    """The provider state of the reasoning complete so far in the stream (a finished thinking block,
    a signed call, a reasoning item). Live only: an interrupt keeps the latest one with the partial
    message (its started calls need it on the next call); `MessageCompleted`'s supersedes it."""

    provider_state: ProviderState


@dataclasses.dataclass(frozen=True, slots=True)
class UsageReported:
    """Usage the provider has reported so far in this stream (Anthropic's `message_start` and
    `message_delta`, Gemini's `usageMetadata`, OpenAI's usage chunk). Billed even if the stream then
    fails or is interrupted: the actor records the last one of an attempt that never completed.
    `MessageCompleted.usage` supersedes it."""

    usage: Usage


@dataclasses.dataclass(frozen=True, slots=True)
class MessageCompleted:
    """The end of the message. `provider_state`: what the provider needs echoed back on the next
    call (signed thinking blocks, thought signatures, reasoning items); durable with the message."""

    stop_reason: StopReason
    usage: Usage
    provider_state: ProviderState | None = None


StreamEvent = (
    TextDelta | ThinkingDelta | ToolCallStarted | ToolCallArgsDelta | ToolCallCompleted | ProviderStateUpdated
    | UsageReported | MessageCompleted
)


class ProviderError(errors.Error, code="provider_error"):
    """A model call failed. `retryable` says whether trying again may help; `retry_after_s` is the
    provider's own hint (`retry-after-ms`, `retry-after`, Gemini `RetryInfo`) when it gave one;
    `status` is the HTTP status (200 for an error inside a started stream, None without a response)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: str = "provider_error",
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code  # the provider's own vocabulary: the row of `provider_error` still applies
        self.retry_after_s = retry_after_s
        self.status = status


class Provider(abc.ABC):
    """A streaming model endpoint."""

    name: str

    @abc.abstractmethod
    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream one model response; the last event is `MessageCompleted`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections."""
