"""Agent tools: specs, confinement to a workspace folder, built-ins, and safe execution.

`base` defines the contracts (`Tool`, `ToolSpec`, `ToolContext`, `ToolOutput`, the `ToolError`
tree); `workspace` confines paths; `output` bounds output; `builtin` holds `shell`, `read_file`,
`write_file`, `list_dir`, `edit_file`; `sandbox` limits tool processes (`landlock` builds their filesystem policy, the
`confine` wrapper enters it); `registry` validates and executes `ToolCall`s into `ToolResult`s
(`agent_runtime.messages`), which the agent loop records and returns to the model.
"""

from agent_runtime.tools.base import (
    PathEscape,
    Tool,
    ToolArgumentsInvalid,
    ToolContext,
    ToolError,
    ToolOutput,
    ToolSpec,
    ToolTimeout,
    UnknownTool,
)
from agent_runtime.tools.builtin import EditFileTool, ListDirTool, ReadFileTool, ShellTool, WriteFileTool
from agent_runtime.tools.registry import ToolRegistry, default_registry
from agent_runtime.tools.workspace import resolve_in_workspace

__all__ = [
    "EditFileTool",
    "ListDirTool",
    "PathEscape",
    "ReadFileTool",
    "ShellTool",
    "Tool",
    "ToolArgumentsInvalid",
    "ToolContext",
    "ToolError",
    "ToolOutput",
    "ToolRegistry",
    "ToolSpec",
    "ToolTimeout",
    "UnknownTool",
    "WriteFileTool",
    "default_registry",
    "resolve_in_workspace",
]
