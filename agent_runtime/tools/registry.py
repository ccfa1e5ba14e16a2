"""The tool registry: which tools an agent has, and the one safe way to execute a model's call.

`ToolRegistry.execute(call, ctx)` is what the agent loop calls for every `ToolCall` the model
emits. It never raises for a bad call: an unknown tool name, arguments that fail the tool's JSON
Schema (Draft 2020-12, validators compiled once per schema and cached), a `ToolError` from the tool
(path escape, timeout, missing file, ...), even an unexpected exception (a bug), all become a
`ToolResult` with `is_error=True` and a message the model can act on, formatted
`error[<code>]: <message>`. Only `asyncio.CancelledError` propagates (an interrupt must stop the
turn; the tools clean up on the way out). `duration_ms` is measured with `time.perf_counter`.

`specs(names)` gives the tool specs to advertise to a provider, in the order asked for, so prompts
(and their prompt-cache prefixes) are deterministic. `default_registry()` holds the five built-ins,
`BUILTIN_TOOLS`: `shell` (`agent_runtime.tools.shell`), `read_file`, `write_file`, `list_dir`
(`agent_runtime.tools.files`) and `edit_file` (`agent_runtime.tools.edit`).

Next step: the agent loop records the returned `ToolResult` (a `tool_result` event, see
`agent_runtime.events`) and sends it back to the model as a `ToolResultMessage`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

from agent_runtime.messages import ToolCall, ToolResult
from agent_runtime.tools.base import (
    Tool,
    ToolArgumentsInvalid,
    ToolContext,
    ToolError,
    ToolOutput,
    ToolSpec,
    ToolTimeout,
    UnknownTool,
)
from agent_runtime.tools.edit import EditFileTool
from agent_runtime.tools.files import ListDirTool, ReadFileTool, WriteFileTool
from agent_runtime.tools.output import cap_text
from agent_runtime.tools.shell import ShellTool

__all__ = ["BUILTIN_TOOLS", "ToolRegistry", "default_registry", "format_tool_error"]

log = logging.getLogger(__name__)

BUILTIN_TOOLS: tuple[type[Tool], ...] = (ShellTool, ReadFileTool, WriteFileTool, ListDirTool, EditFileTool)
"""The built-in tools, in registration order (the order `specs()` gives them in without names)."""

# Extra seconds past ctx.timeout_s before the registry stops a tool that ignores its own limit
# (the shell enforces ctx.timeout_s itself and needs a moment to kill and reap).
TIMEOUT_GRACE_S = 10.0
# Room for the notes a tool adds on top of `output_cap` bytes of payload before the registry cuts.
_NOTE_SLACK = 1024
_MAX_REPORTED_ERRORS = 5
_MAX_ERROR_CHARS = 300

_validator_cache: dict[str, jsonschema.protocols.Validator] = {}


def _compiled(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """The Draft 2020-12 validator of `schema`, built and checked once per distinct schema."""
    key = json.dumps(schema, sort_keys=True, default=repr)
    validator = _validator_cache.get(key)
    if validator is None:
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        _validator_cache[key] = validator
    return validator


def format_tool_error(exc: ToolError) -> str:
    """How a ToolError reads in a ToolResult: `error[<code>]: <message>`."""
    return f"error[{exc.code}]: {exc.message}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _describe(err: ValidationError) -> list[str]:
    """Model-readable sentences for one schema violation, each naming the field."""
    path = ".".join(str(p) for p in err.absolute_path)
    prefix = f"{path}." if path else ""
    field = f"field '{path}'" if path else "the arguments"
    instance = err.instance
    if err.validator == "required" and isinstance(instance, dict):
        missing = [p for p in err.validator_value if p not in instance]
        return [f"missing required field '{prefix}{m}'" for m in missing] or [_clip(err.message)]
    if err.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(err.schema.get("properties", {}))
        extras = sorted(str(k) for k in instance if k not in allowed)
        allowed_text = ", ".join(allowed) if allowed else "none"
        return [f"unexpected field '{prefix}{x}' (allowed fields: {allowed_text})" for x in extras]
    if err.validator == "type":
        expected = err.validator_value
        expected_text = " or ".join(expected) if isinstance(expected, list) else str(expected)
        what = "must be an object" if not path and expected == "object" else f"must be of type {expected_text}"
        return [f"{field} {what} (got {_json_type(instance)})"]
    return [_clip(f"{field}: {err.message}")]


class ToolRegistry:
    """Named tools with compiled argument validators; executes calls without ever raising for them."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool, *, replace: bool = False) -> None:
        """Add `tool`. Its schema is checked and compiled now (a bad schema is a bug: it raises)."""
        spec = tool.spec
        if not isinstance(spec, ToolSpec):
            raise TypeError(f"{type(tool).__name__}.spec must be a ToolSpec")
        if spec.name in self._tools and not replace:
            raise ValueError(f"a tool named {spec.name!r} is already registered")
        self._validators[spec.name] = _compiled(spec.input_schema)
        self._tools[spec.name] = tool

    def get(self, name: str) -> Tool:
        """The tool called `name`; `UnknownTool` naming the available ones otherwise."""
        try:
            return self._tools[name]
        except (KeyError, TypeError):
            available = ", ".join(self._tools) or "none"
            raise UnknownTool(f"no tool named {name!r}; available tools: {available}") from None

    def names(self) -> list[str]:
        """Registered tool names, in registration order."""
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def specs(self, names: Sequence[str] | None = None) -> list[ToolSpec]:
        """Specs of `names` in exactly that order (duplicates dropped), or of all in registration
        order. An unknown name raises `UnknownTool`: that is a configuration error, not a call."""
        if names is None:
            return [t.spec for t in self._tools.values()]
        if isinstance(names, str):
            raise TypeError("names must be a sequence of tool names, not a string")
        return [self.get(n).spec for n in dict.fromkeys(names)]

    def validate(self, name: str, arguments: Any) -> None:
        """Raise `ToolArgumentsInvalid` (naming the fields) unless `arguments` fit the tool's schema."""
        self.get(name)
        errors = sorted(
            self._validators[name].iter_errors(arguments),
            key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator)),
        )
        if not errors:
            return
        sentences: list[str] = []
        for err in errors:
            for s in _describe(err):
                if s not in sentences:
                    sentences.append(s)
        shown = sentences[:_MAX_REPORTED_ERRORS]
        if len(sentences) > len(shown):
            shown.append(f"and {len(sentences) - len(shown)} more")
        raise ToolArgumentsInvalid(f"invalid arguments for tool {name!r}: " + "; ".join(shown))

    async def execute(self, call: ToolCall, ctx: ToolContext) -> ToolResult:
        """Run one call. Never raises for a bad call or a failing tool; `CancelledError` propagates."""
        start = time.perf_counter()
        content, is_error = await self._run(call, ctx)
        duration_ms = (time.perf_counter() - start) * 1000.0
        return ToolResult(
            tool_call_id=call.id, name=call.name, content=content, is_error=is_error, duration_ms=duration_ms
        )

    async def _run(self, call: ToolCall, ctx: ToolContext) -> tuple[str, bool]:
        try:
            tool = self.get(call.name)
            self.validate(call.name, call.arguments)
            limit = ctx.timeout_s + TIMEOUT_GRACE_S
            deadline = asyncio.timeout(limit)
            try:
                async with deadline:
                    out = await tool.run(call.arguments, ctx)
            except TimeoutError:
                if not deadline.expired():
                    raise  # a TimeoutError of the tool's own making: treated like any exception
                raise ToolTimeout(f"tool {call.name!r} did not finish within {limit:g} s and was stopped") from None
            if not isinstance(out, ToolOutput):
                raise TypeError(f"{type(tool).__name__}.run returned {type(out).__name__}, not ToolOutput")
        except ToolError as exc:
            return cap_text(format_tool_error(exc), ctx.output_cap + _NOTE_SLACK), True
        except Exception as exc:  # a bug in a tool: report it, never crash the agent
            log.exception("tool %r raised unexpectedly (call %s)", call.name, call.id)
            detail = _clip(str(exc))
            return f"error[internal]: tool {call.name!r} failed unexpectedly: {type(exc).__name__}: {detail}", True
        return cap_text(out.content, ctx.output_cap + _NOTE_SLACK), out.is_error


def default_registry() -> ToolRegistry:
    """A new registry holding the five built-ins: shell, read_file, write_file, list_dir, edit_file."""
    return ToolRegistry(cls() for cls in BUILTIN_TOOLS)
