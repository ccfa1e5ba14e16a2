"""Agent tools: specs, confinement to a workspace folder, built-ins, and safe execution.

`base` defines the contracts (`Tool`, `ToolSpec`, `ToolContext`, `ToolOutput`, the `ToolError`
tree); `workspace` confines paths and `beneath` does the file IO under the workspace; `output`
bounds output. The built-ins: `shell` (supervised by `process`, limited by `sandbox`: `landlock`
builds the filesystem policy, the `confine` wrapper enters it); `files` holds `read_file`,
`write_file`, `list_dir`; `edit` holds `edit_file`, which merges against the `versions` store.
`registry` lists the built-ins and validates and executes `ToolCall`s into `ToolResult`s
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
from agent_runtime.tools.edit import EditFileTool
from agent_runtime.tools.files import ListDirTool, ReadFileTool, WriteFileTool
from agent_runtime.tools.registry import ToolRegistry, default_registry
from agent_runtime.tools.shell import ShellTool
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
