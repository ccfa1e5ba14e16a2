"""`edit_file`: replace text in a file against the version the model read (optimistic concurrency).

The edit is applied to the version `read_file` showed (its content comes from the
`agent_runtime.tools.versions` store). If the file changed since, `native.merge3` (git's
algorithm) merges the edit with those changes: a clean merge is written, a conflict writes nothing
and reports the regions. The result names the new version and gives a unified diff of what changed
on disk. The IO is `agent_runtime.tools.files`' (`open_regular`, `write_atomic`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_runtime import native
from agent_runtime.tools.base import Tool, ToolContext, ToolError, ToolOutput, ToolSpec
from agent_runtime.tools.files import open_regular, os_error, run_io, write_atomic
from agent_runtime.tools.output import cap_text
from agent_runtime.tools.versions import VERSION_MAX, VERSIONS, VersionStore, file_version
from agent_runtime.tools.workspace import display_path, resolve_in_workspace

__all__ = ["EditFileTool"]


def _conflict_report(shown: str, version: str, result: native.MergeResult) -> str:
    lines = [
        f"{shown} changed since version {version} and your edit conflicts with those changes in "
        f"{len(result.conflicts)} region(s); nothing was written. Read the file again and redo the edit."
    ]
    for c in result.conflicts[:5]:
        lines.append(
            f"lines {c.theirs_start + 1}-{max(c.theirs_end, c.theirs_start + 1)} of the current file:\n"
            f"<<<<<<< your edit\n{c.ours}=======\n{c.theirs}>>>>>>> current file"
        )
    if len(result.conflicts) > 5:
        lines.append(f"[... {len(result.conflicts) - 5} more conflict regions ...]")
    return "\n".join(lines)


def _edit(path: Path, shown: str, version: str, old: str, new: str, replace_all: bool, versions: VersionStore,
          workspace: Path) -> str:
    try:
        with open_regular(workspace, path, shown) as f:
            raw = f.read(VERSION_MAX + 1)
    except OSError as exc:
        raise os_error(exc, shown) from None
    if len(raw) > VERSION_MAX:
        raise ToolError(f"{shown}: larger than {VERSION_MAX} bytes; use write_file or the shell", code="file_too_large")
    try:
        current = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{shown}: not UTF-8 text", code="binary_file") from None
    current_version = file_version(raw)
    versions.put(workspace, current_version, current)
    base = current if version == current_version else versions.get(workspace, version)
    if base is None:
        raise ToolError(
            f"{shown} changed since version {version}, and that version is no longer known (it is now "
            f"{current_version}); read the file again and redo the edit",
            code="stale_version",
        )
    found = base.count(old)
    if found == 0:
        raise ToolError(f"old_text does not occur in version {version} of {shown}", code="edit_not_found")
    if found > 1 and not replace_all:
        raise ToolError(
            f"old_text occurs {found} times in {shown}; include more context to make it unique, or set replace_all",
            code="edit_ambiguous",
        )
    ours = base.replace(old, new) if replace_all else base.replace(old, new, 1)
    merged_note = ""
    if base is current or version == current_version:
        result = ours
    else:
        merge = native.merge3(base, ours, current, labels=("your edit", "current file"))
        if merge.merged is None:
            raise ToolError(_conflict_report(shown, version, merge), code="edit_conflict")
        result = merge.merged
        merged_note = f"; merged with the changes made since {version}"
    data = result.encode("utf-8")
    write_atomic(workspace, path, shown, data)
    new_version = file_version(data)
    versions.put(workspace, new_version, result)
    patch = native.diff(current, result).unified(context=2, from_file=f"a/{shown}", to_file=f"b/{shown}")
    return f"edited {shown} (version {new_version}{merged_note})\n{patch}"


class EditFileTool(Tool):
    """Replace text in a file of the workspace, against the version the model read."""

    spec = ToolSpec(
        name="edit_file",
        description=(
            "Replace `old_text` by `new_text` in a UTF-8 text file of the workspace. `version` is the "
            "[version: ...] that read_file showed: if the file changed since, your edit is merged with "
            "those changes (three-way), or the conflicting regions are returned and nothing is written. "
            "Returns the new version and a unified diff of the change."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "path": {"type": "string", "minLength": 1, "description": "File path, relative to the workspace."},
                "version": {"type": "string", "minLength": 1, "maxLength": 100, "description": "The version read_file reported."},
                "old_text": {"type": "string", "minLength": 1, "description": "The exact text to replace."},
                "new_text": {"type": "string", "description": "The replacement."},
                "replace_all": {"type": "boolean", "description": "Replace every occurrence (default: exactly one)."},
            },
            "required": ["path", "version", "old_text", "new_text"],
            "additionalProperties": False,
        },
        read_only=False,
        idempotent=False,
    )

    def __init__(self, versions: VersionStore | None = None) -> None:
        self.versions = versions if versions is not None else VERSIONS

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        path = resolve_in_workspace(ctx.workspace, args["path"])
        shown = display_path(ctx.workspace, path)
        old, new = args["old_text"], args["new_text"]
        replace_all = bool(args.get("replace_all", False))
        text = await run_io(ctx, lambda: _edit(path, shown, args["version"], old, new, replace_all, self.versions,
                                                     ctx.workspace))
        return ToolOutput(cap_text(text, ctx.output_cap))
