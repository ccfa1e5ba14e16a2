"""Workspace confinement: map a model-supplied path to a real path inside the agent's folder.

Every file tool (`agent_runtime.tools.files`, `agent_runtime.tools.edit`) calls
`resolve_in_workspace` before touching the filesystem. The path is resolved the way the kernel
would follow it (`os.path.realpath`: symlinks first, then `..`), and the result must lie inside the
resolved workspace. This refuses `..` that climbs out, absolute paths elsewhere, and symlinks
(anywhere along the path) that lead outside, while allowing `a/../b`, absolute paths that are
inside, and symlinks that stay inside.

The check is point-in-time (a process swapping a directory for a symlink between the check and the
open could race it): the caller (`files.py`, `edit.py`) does the IO next through `beneath.py`,
which opens beneath the workspace's fd and so cannot be raced out. The `shell` tool is confined by
Landlock (`sandbox.py`), not by this.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent_runtime.tools.base import PathEscape, ToolArgumentsInvalid

__all__ = ["display_path", "resolve_in_workspace"]


def resolve_in_workspace(workspace: Path, user_path: str) -> Path:
    """The real path `user_path` names, relative to `workspace`; `PathEscape` if it leaves it.

    The returned path is fully resolved (no symlinks, no `..`); it need not exist.
    """
    if not isinstance(user_path, str):
        raise ToolArgumentsInvalid(f"path must be a string, got {type(user_path).__name__}")
    if "\x00" in user_path:
        raise ToolArgumentsInvalid(f"path {user_path!r} contains a NUL byte")
    root = Path(os.path.realpath(workspace))
    if user_path == "~" or user_path.startswith("~/"):
        # The shell tool runs with HOME=workspace; keep `~` meaning the same for the file tools.
        user_path_rel = user_path[2:] if len(user_path) > 1 else "."
        candidate = root / user_path_rel
    else:
        candidate = Path(user_path)
        if not candidate.is_absolute():
            candidate = root / candidate
    resolved = Path(os.path.realpath(candidate))
    if not resolved.is_relative_to(root):
        if Path(os.path.normpath(candidate)).is_relative_to(root):
            why = "a symlink on the path leads outside the workspace"
        else:
            why = "it points outside the workspace"
        raise PathEscape(
            f"path {user_path!r} is refused: {why} (it resolves to {str(resolved)!r}); "
            f"use a path inside the workspace, relative to its root"
        )
    return resolved


def display_path(workspace: Path, resolved: Path) -> str:
    """How to show a resolved path to the model: relative to the workspace root, POSIX style."""
    root = Path(os.path.realpath(workspace))
    try:
        rel = resolved.relative_to(root)
    except ValueError:
        return str(resolved)
    text = rel.as_posix()
    return text if text else "."
