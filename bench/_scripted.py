"""A scripted model for tests and benchmarks: exact stream events at exact times.

`ScriptedProvider(scripts)` answers the n-th model call with the n-th script (then a plain final
answer once the scripts run out). A script is a list of steps, each after an optional delay:
`Say(text)` (a text delta), `Call(ToolCall)` (started, argument deltas, completed — the way the
adapters stream a tool-call block), `Stop(reason)` (`MessageCompleted`), `Fail(ProviderError)`,
`Hang()` (never ends: for interrupts). It records each call's busy interval (first byte to
`MessageCompleted`) so benchmarks can compute idle time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence

from agent_runtime.messages import StopReason, ToolCall, Usage
from agent_runtime.providers.base import (
    MessageCompleted,
    ModelRequest,
    Provider,
    ProviderError,
    StreamEvent,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallCompleted,
    ToolCallStarted,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Say:
    text: str
    after_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    call: ToolCall
    after_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Stop:
    reason: StopReason
    after_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Fail:
    error: ProviderError
    after_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Hang:
    after_s: float = 0.0


Step = Say | Call | Stop | Fail | Hang
Script = Sequence[Step]
FINAL: Script = (Say("All done."), Stop("end_turn"))


class ScriptedProvider(Provider):
    name = "scripted"

    def __init__(self, scripts: Sequence[Script] | Callable[[ModelRequest, int], Script] = ()) -> None:
        self._scripts = scripts
        self.calls = 0
        self.requests: list[ModelRequest] = []
        self.busy: list[tuple[float, float]] = []  # (start, end) perf_counter of each finished stream

    def script_for(self, request: ModelRequest, n: int) -> Script:
        if callable(self._scripts):
            return self._scripts(request, n)
        return self._scripts[n] if n < len(self._scripts) else FINAL

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        n = self.calls
        self.calls += 1
        self.requests.append(request)
        script = self.script_for(request, n)
        start = time.perf_counter()
        index = 0
        out_tokens = 0
        for step in script:
            if step.after_s > 0:
                await asyncio.sleep(step.after_s)
            if isinstance(step, Say):
                out_tokens += max(1, len(step.text) // 4)
                yield TextDelta(step.text)
            elif isinstance(step, Call):
                call = step.call
                yield ToolCallStarted(index, call.id, call.name)
                args = json.dumps(call.arguments, separators=(",", ":"))
                for j in range(0, len(args), 32):
                    yield ToolCallArgsDelta(index, args[j : j + 32])
                yield ToolCallCompleted(index, call)
                index += 1
                out_tokens += max(1, len(args) // 4)
            elif isinstance(step, Stop):
                self.busy.append((start, time.perf_counter()))
                yield MessageCompleted(step.reason, Usage(input_tokens=request.context_tokens, output_tokens=out_tokens))
                return
            elif isinstance(step, Fail):
                raise step.error
            else:
                await asyncio.Event().wait()
        self.busy.append((start, time.perf_counter()))
        yield MessageCompleted("end_turn", Usage(input_tokens=request.context_tokens, output_tokens=out_tokens))
