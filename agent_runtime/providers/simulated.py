"""The simulated model: deterministic, streaming, and doing real work through real tools.

There is no internet here, so the demo and the tests talk to this model behind the same
`Provider` interface the real adapters implement. Given a seed it is deterministic: the same
conversation gets the same answer. It streams text at a configurable token rate after a
configurable time-to-first-token, and for coding tasks it emits realistic tool calls (look at the
workspace, write a program, run it, read it back) before answering with what it saw.

It reads only the tail of the conversation (back to the last user message), so a call costs the
same at turn 5 and at turn 500.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
from collections.abc import AsyncIterator, Sequence

from agent_runtime.messages import AssistantMessage, Message, ToolCall, ToolResultMessage, Usage, UserMessage
from agent_runtime.providers.base import (
    MessageCompleted,
    ModelRequest,
    Provider,
    StreamEvent,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallCompleted,
    ToolCallStarted,
)

# Small programs the model "writes". Each prints something checkable.
PROGRAMS: dict[str, tuple[str, str]] = {
    "fib": (
        "fib.py",
        "def fib(n):\n    a, b = 0, 1\n    out = []\n    for _ in range(n):\n        out.append(a)\n"
        "        a, b = b, a + b\n    return out\n\n\nprint(*fib(12))\n",
    ),
    "primes": (
        "primes.py",
        "def primes(limit):\n    found = []\n    for n in range(2, limit):\n"
        "        if all(n % p for p in found if p * p <= n):\n            found.append(n)\n"
        "    return found\n\n\nprint(*primes(60))\n",
    ),
    "wordcount": (
        "wordcount.py",
        "import collections\n\nTEXT = 'the quick brown fox jumps over the lazy dog the end'\n"
        "counts = collections.Counter(TEXT.split())\nfor word, n in counts.most_common(3):\n"
        "    print(word, n)\n",
    ),
    "sort": (
        "sort.py",
        "def insertion_sort(xs):\n    xs = list(xs)\n    for i in range(1, len(xs)):\n"
        "        j = i\n        while j and xs[j - 1] > xs[j]:\n"
        "            xs[j - 1], xs[j] = xs[j], xs[j - 1]\n            j -= 1\n    return xs\n\n\n"
        "print(*insertion_sort([5, 3, 9, 1, 4, 8, 2]))\n",
    ),
    "reverse": (
        "reverse.py",
        "import sys\n\nprint(' '.join(reversed('agents are fast plumbing is not'.split())))\n",
    ),
}

CHAT_LINES = (
    "Sure. Here is a short summary of where things stand in the workspace.",
    "I have looked at this before; nothing needs to change right now.",
    "That works. Let me know what you would like me to build next.",
    "Understood. I'll keep the files as they are.",
)


@dataclasses.dataclass(frozen=True, slots=True)
class SimulatedModelConfig:
    """Behaviour knobs. `tokens_per_s <= 0` streams as fast as possible (tests)."""

    seed: int = 0
    tokens_per_s: float = 0.0
    ttft_s: float = 0.0
    chunk_interval_s: float = 0.05
    run_probability: float = 0.35
    chat_probability: float = 0.15


def _tail_since_user(messages: Sequence[Message]) -> tuple[UserMessage | None, list[Message], int]:
    """The last user message, what came after it, and how many user messages precede it (bounded scan)."""
    tail: list[Message] = []
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, UserMessage):
            tail.reverse()
            return m, tail, i
        tail.append(m)
    tail.reverse()
    return None, tail, 0


def _pick_task(text: str, rng: random.Random) -> str:
    lowered = text.lower()
    for name in PROGRAMS:
        if name in lowered:
            return name
    return rng.choice(sorted(PROGRAMS))


class SimulatedProvider(Provider):
    """A deterministic streaming model that plans small coding tasks with the built-in tools."""

    name = "simulated"

    def __init__(self, config: SimulatedModelConfig | None = None) -> None:
        self.config = config or SimulatedModelConfig()

    def _rng(self, request: ModelRequest, user_index: int, user_text: str) -> random.Random:
        key = f"{self.config.seed}|{request.agent_key}|{user_index}|{user_text}".encode()
        return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))

    def plan(self, request: ModelRequest) -> AssistantMessage:
        """The complete next message (what `stream` streams). Pure and deterministic."""
        user, tail, user_index = _tail_since_user(request.messages)
        user_text = user.text if user else ""
        rng = self._rng(request, user_index, user_text)
        results = [m.result for m in tail if isinstance(m, ToolResultMessage)]
        step = sum(1 for m in tail if isinstance(m, AssistantMessage))
        tool_names = {t.name for t in request.tools}
        wants_chat = rng.random() < self.config.chat_probability and "task" not in user_text.lower()
        if wants_chat or not {"write_file", "list_dir"} <= tool_names:
            return AssistantMessage(text=rng.choice(CHAT_LINES), stop_reason="end_turn")

        task = _pick_task(user_text, rng)
        filename, source = PROGRAMS[task]
        run_it = "shell" in tool_names and rng.random() < self.config.run_probability
        call_id = f"call_{user_index}_{step}"
        if step == 0:
            return AssistantMessage(
                text=f"I'll start by looking at the workspace before writing {filename}.",
                tool_calls=(ToolCall(call_id, "list_dir", {"path": "."}),),
                stop_reason="tool_use",
            )
        if step == 1:
            return AssistantMessage(
                text=f"Writing {filename}.",
                tool_calls=(ToolCall(call_id, "write_file", {"path": filename, "content": source}),),
                stop_reason="tool_use",
            )
        if step == 2:
            if run_it:
                command = f"python3 {filename}"
            else:
                command = f"wc -l {filename} && grep -c 'print' {filename}"
            calls = [ToolCall(call_id, "shell", {"command": command})] if "shell" in tool_names else []
            if "read_file" in tool_names:
                calls.append(ToolCall(f"{call_id}_r", "read_file", {"path": filename, "limit": 5}))
            if calls:
                return AssistantMessage(text="Checking the result.", tool_calls=tuple(calls), stop_reason="tool_use")
        last = results[-1] if results else None
        errors = sum(1 for r in results if r.is_error)
        seen = (last.content.strip().splitlines() or [""])[0][:80] if last else ""
        text = (
            f"Done: {filename} is written and checked ({len(results)} tool calls, {errors} errors). "
            f"First line of the last output: {seen!r}."
        )
        return AssistantMessage(text=text, stop_reason="end_turn")

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        message = self.plan(request)
        cfg = self.config
        paced = cfg.tokens_per_s > 0
        if paced and cfg.ttft_s > 0:
            await asyncio.sleep(cfg.ttft_s)
        # ~4 characters per token, emitted in chunks every chunk_interval_s at tokens_per_s.
        tokens = [message.text[i : i + 4] for i in range(0, len(message.text), 4)]
        per_chunk = max(1, int(cfg.tokens_per_s * cfg.chunk_interval_s)) if paced else max(1, len(tokens))
        output_tokens = len(tokens)
        for i in range(0, len(tokens), per_chunk):
            if paced and i:
                await asyncio.sleep(cfg.chunk_interval_s)
            yield TextDelta("".join(tokens[i : i + per_chunk]))
        for index, call in enumerate(message.tool_calls):
            yield ToolCallStarted(index, call.id, call.name)
            args = json.dumps(call.arguments, separators=(",", ":"))
            output_tokens += max(1, len(args) // 4)
            for j in range(0, len(args), 64):
                yield ToolCallArgsDelta(index, args[j : j + 64])
            if paced:
                await asyncio.sleep(cfg.chunk_interval_s)
            yield ToolCallCompleted(index, call)
        yield MessageCompleted(
            message.stop_reason,
            Usage(input_tokens=request.context_tokens, output_tokens=output_tokens),
        )
