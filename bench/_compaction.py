"""Naive compaction, the baseline of the cache benchmark: summarise everything and replace the history.

What most agent harnesses do when the conversation grows: once the prompt's conversation part (the
messages after system + tools) passes a token budget, one extra model call — the whole conversation
plus a "summarise" instruction, same system prompt and tools, through the same adapter and mock
server, so it is billed and cached like any call — writes a summary; from then on the model sees
`[summary] + the messages that came after it`, until the next compaction summarises that in turn.

It is a `Provider` wrapping the real one (the router → Anthropic adapter → mock server): the agent
runtime keeps its full history (`ModelRequest.messages`), this wrapper rewrites what each call
sends. Per agent it keeps the summary and the index in the runtime's history where it was taken.
Tokens are counted with the native counter (o200k), each message once.

Two knobs give the shapes met in practice: the budget (the benchmark's "naive" uses the same budget
as ours' tail; "naive-160k" the usual auto-compact point, 80% of a 200k window), and
`summariser_system`: a summary call with its own summariser system prompt (as many harnesses make
it) changes the prompt's first cached block, so that call reads nothing from the cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson

from agent_runtime.messages import AssistantMessage, Message, ToolResultMessage, Usage, UserMessage
from agent_runtime.native import TokenCache
from agent_runtime.providers.base import MessageCompleted, ModelRequest, Provider, StreamEvent, TextDelta


@dataclasses.dataclass(slots=True)
class Compacted:
    summary: str | None = None
    summary_tokens: int = 0
    cut: int = 0  # runtime history index where the summary ends
    counts: list[int] = dataclasses.field(default_factory=list)  # tokens of runtime message i


@dataclasses.dataclass(frozen=True, slots=True)
class SummaryCall:
    turn: int
    usage: Usage
    tokens_before: int
    summary_tokens: int


def message_text(m: Message) -> str:
    if isinstance(m, UserMessage):
        return m.text
    if isinstance(m, ToolResultMessage):
        return m.result.content
    assert isinstance(m, AssistantMessage)
    return m.text + "".join(orjson.dumps({"name": c.name, "input": c.arguments}).decode() for c in m.tool_calls)


class NaiveCompaction(Provider):
    """Summarise-all-and-replace in front of `inner` (see the module docstring)."""

    name = "naive-compaction"

    def __init__(self, inner: Provider, budget: int, prompt: str, summariser_system: str | None = None) -> None:
        self.inner = inner
        self.budget = budget
        self.prompt = prompt
        self.summariser_system = summariser_system  # None: the agent's own system prompt (the cached prefix)
        self.tokens = TokenCache()
        self.agents: dict[str, Compacted] = {}
        self.summaries: list[SummaryCall] = []
        self.turn = 0  # set by the benchmark: which turn a summary call belongs to

    def _view(self, request: ModelRequest, st: Compacted) -> tuple[list[Message], int]:
        msgs = request.messages
        if len(st.counts) < len(msgs):
            st.counts.extend(self.tokens.count_many([message_text(m) for m in msgs[len(st.counts):]]))
        view: list[Message] = [UserMessage(st.summary)] if st.summary is not None else []
        view.extend(msgs[st.cut:])
        return view, st.summary_tokens + sum(st.counts[st.cut:len(msgs)])

    async def _summarise(self, request: ModelRequest, view: list[Message]) -> tuple[str, Usage]:
        ask = dataclasses.replace(request, messages=[*view, UserMessage(self.prompt)])
        if self.summariser_system is not None:
            ask = dataclasses.replace(ask, system=self.summariser_system)
        parts: list[str] = []
        usage = Usage()
        async for event in self.inner.stream(ask):
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, MessageCompleted):
                usage = event.usage
        return "".join(parts), usage

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        st = self.agents.setdefault(request.agent_key, Compacted())
        view, tokens = self._view(request, st)
        if tokens > self.budget:
            summary, usage = await self._summarise(request, view)
            st.summary, st.summary_tokens, st.cut = summary, self.tokens.count(summary), len(request.messages)
            self.summaries.append(SummaryCall(self.turn, usage, tokens, st.summary_tokens))
            view, _ = self._view(request, st)
        async for event in self.inner.stream(dataclasses.replace(request, messages=view)):
            yield event

    async def aclose(self) -> None:
        await self.inner.aclose()


def summary_rows(calls: list[SummaryCall]) -> list[dict[str, Any]]:
    return [{"turn": c.turn, "tokens_before": c.tokens_before, "summary_tokens": c.summary_tokens} for c in calls]
