"""Tool contracts: what a tool declares, what it receives, what it returns, how it fails.

Every tool an agent can call is a `Tool`: a static `ToolSpec` (name, description, JSON Schema of its
arguments, MCP-style `read_only` / `idempotent` hints) plus an `async run(args, ctx)` that returns a
`ToolOutput`. `ToolContext` carries the per-agent limits (workspace folder, wall-clock timeout,
output cap, an optional small shared executor for file IO). Expected failures are `ToolError`s with
a stable `code` string, never bare exceptions.

Tools never build `ToolResult`s themselves: `agent_runtime.tools.registry` validates arguments,
runs the tool, turns `ToolOutput` / `ToolError` into the canonical `agent_runtime.messages.ToolResult`
and measures its duration. The built-in tools are listed in `agent_runtime.tools.registry.BUILTIN_TOOLS`.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
from pathlib import Path
from typing import Any

from agent_runtime import errors

__all__ = [
    "PathEscape",
    "Tool",
    "ToolArgumentsInvalid",
    "ToolContext",
    "ToolError",
    "ToolOutput",
    "ToolSpec",
    "ToolTimeout",
    "UnknownTool",
]


@dataclasses.dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the model is told about a tool.

    `input_schema` is a JSON Schema (Draft 2020-12) object schema; the registry compiles it once and
    validates every call against it. `read_only` and `idempotent` mirror the MCP tool annotations
    (`readOnlyHint`, `idempotentHint`): a scheduler may run read-only calls concurrently or skip
    approval for them.
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool = False
    idempotent: bool = False

    def to_dict(self) -> dict[str, Any]:
        """MCP-shaped description (`inputSchema` + `annotations`), for provider adapters."""
        return {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.input_schema,
            "annotations": {"readOnlyHint": self.read_only, "idempotentHint": self.idempotent},
        }


@dataclasses.dataclass(frozen=True, slots=True)
class ToolContext:
    """Per-call limits and confinement of one agent.

    `workspace`: the only folder file tools may touch and the shell's cwd/HOME.
    `timeout_s`: upper bound of a call's wall-clock time (a tool argument may only lower it).
    `output_cap`: maximum bytes of tool output kept for the model (head + tail, with a note).
    `executor`: optional small shared executor for file IO; without one, file tools do bounded
    reads inline (never the loop's default executor, whose thread count grows with load).
    `memory_mb`, `cpu_s`, `open_files`, `processes`: resource limits of a tool process (address
    space, CPU seconds, open files, processes at once); None leaves that limit as inherited.
    `read_paths`: folders (or files) a tool process may read and execute besides the workspace
    and the system folders of the Landlock policy (`agent_runtime.tools.landlock`), e.g. `/nix`.
    `confinement_required`: refuse to run a tool process when Landlock is unavailable (default:
    run it unconfined, with a warning once per process).
    """

    workspace: Path
    timeout_s: float = 30.0
    output_cap: int = 64_000
    executor: concurrent.futures.Executor | None = None
    memory_mb: int | None = None
    cpu_s: int | None = None
    open_files: int | None = None
    processes: int | None = None
    read_paths: tuple[Path, ...] = ()
    confinement_required: bool = False

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if self.output_cap < 256:
            raise ValueError(f"output_cap must be >= 256 bytes, got {self.output_cap!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class ToolOutput:
    """What a tool hands back: text for the model, and whether it describes a failure."""

    content: str
    is_error: bool = False


class Tool(abc.ABC):
    """A tool: a static `spec` and an async `run`.

    `run` receives arguments already validated against `spec.input_schema`. It returns a
    `ToolOutput`, or raises a `ToolError` for an expected failure. It must be cancellation-safe:
    an `asyncio.CancelledError` releases whatever the call holds (processes, files) and propagates.
    """

    spec: ToolSpec

    @abc.abstractmethod
    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        raise NotImplementedError


class ToolError(errors.Error, code="tool_error"):
    """An expected tool failure; the registry reports it to the model as an error result.

    `code` is a stable machine-readable name (`invalid_arguments`, `path_escape`, `timeout`,
    `unknown_tool`, `not_found`, ...); the message is written for the model to act on.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code  # the tools' own vocabulary: the row of `tool_error` still applies

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ToolArgumentsInvalid(ToolError, code="invalid_arguments"):
    """The call's arguments do not match the tool's input schema."""


class PathEscape(ToolError, code="path_escape"):
    """A path argument points outside the agent's workspace."""


class ToolTimeout(ToolError, code="timeout"):
    """The call ran past its wall-clock limit and was stopped."""


class UnknownTool(ToolError, code="unknown_tool"):
    """No tool of that name is registered."""
