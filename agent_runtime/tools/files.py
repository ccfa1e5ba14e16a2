"""The file tools: `read_file`, `write_file`, `list_dir`, and the file IO `edit_file` shares.

Each resolves its path with `agent_runtime.tools.workspace.resolve_in_workspace` first, then does
its IO beneath the workspace's fd (`agent_runtime.tools.beneath`: `openat2(RESOLVE_BENEATH)`, so a
symlink swapped in meanwhile cannot lead outside). Filesystem errors become `ToolError`s the model
can act on (`os_error`). `read_file` notes the version of a file of at most 4 MiB and remembers its
content in the `agent_runtime.tools.versions` store, the base of a later `edit_file`
(`agent_runtime.tools.edit`), which writes with `write_atomic` as `write_file` does.

File IO is small and bounded (reads stop at the output cap, directory listings at a fixed count),
so it runs inline unless the context provides a small shared executor (`run_io`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from agent_runtime.tools.base import Tool, ToolContext, ToolError, ToolOutput, ToolSpec
from agent_runtime.tools.beneath import dir_beneath, makedirs_beneath, open_beneath
from agent_runtime.tools.output import cap_text, trim_incomplete_end
from agent_runtime.tools.versions import VERSION_MAX, VERSIONS, VersionStore, file_version
from agent_runtime.tools.workspace import display_path, resolve_in_workspace

__all__ = [
    "ListDirTool",
    "ReadFileTool",
    "WriteFileTool",
    "open_regular",
    "os_error",
    "run_io",
    "write_atomic",
]

T = TypeVar("T")

# Upper bound of bytes `read_file` scans to reach `offset` (inline / with an executor).
_SCAN_INLINE = 4 * 1024 * 1024
_SCAN_EXECUTOR = 64 * 1024 * 1024
_LIST_MAX_ENTRIES = 1000
_LIST_MAX_SCAN = 100_000


def os_error(exc: OSError, shown: str) -> ToolError:
    """A model-readable ToolError for a filesystem error on `shown`."""
    if isinstance(exc, FileNotFoundError):
        return ToolError(f"{shown}: no such file or directory", code="not_found")
    if isinstance(exc, IsADirectoryError):
        return ToolError(f"{shown}: is a directory", code="is_a_directory")
    if isinstance(exc, NotADirectoryError):
        return ToolError(f"{shown}: not a directory (a component of the path is a file)", code="not_a_directory")
    if isinstance(exc, PermissionError):
        return ToolError(f"{shown}: permission denied", code="permission_denied")
    return ToolError(f"{shown}: {exc.strerror or exc}", code="io_error")


async def run_io(ctx: ToolContext, fn: Callable[[], T]) -> T:
    """Run bounded blocking file IO: on the context's executor if it has one, else inline."""
    if ctx.executor is None:
        return fn()
    return await asyncio.get_running_loop().run_in_executor(ctx.executor, fn)


def open_regular(root: Path, path: Path, shown: str) -> io.BufferedReader:
    """Open a regular file for reading; `not_a_file` for anything else. Opened non-blocking, so a
    FIFO (the agent's shell can make one) is refused at once instead of blocking the thread (or the
    loop) in `open` until a writer comes."""
    try:
        fd = open_beneath(root, path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise os_error(exc, shown) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ToolError(f"{shown}: is a directory", code="is_a_directory")
        if not stat.S_ISREG(mode):
            raise ToolError(f"{shown}: not a regular file", code="not_a_file")
        os.set_blocking(fd, True)
        return open(fd, "rb")  # noqa: SIM115 - the caller closes it
    except BaseException:
        os.close(fd)
        raise



# --------------------------------------------------------------------------------------------
# read_file


def _read_text(
    root: Path, path: Path, shown: str, offset: int, limit: int | None, cap: int, scan_cap: int,
    versions: tuple[VersionStore, Path] | None = None,
) -> str:
    """Lines [offset, offset+limit) of a text file, at most `cap` bytes; notes say how to go on.
    A file of at most 4 MiB is read whole, and its version is noted at the end."""
    f = open_regular(root, path, shown)
    version = None
    with f:
        st = os.fstat(f.fileno())
        if versions is not None and st.st_size <= VERSION_MAX:
            whole = f.read(VERSION_MAX + 1)
            if len(whole) <= VERSION_MAX and b"\x00" not in whole[:8192]:
                version = file_version(whole)
                with contextlib.suppress(UnicodeDecodeError):
                    versions[0].put(versions[1], version, whole.decode("utf-8"))
            f = io.BytesIO(whole)  # type: ignore[assignment]
        line_no = 1
        scanned = 0
        while line_no < offset:
            line = f.readline(64 * 1024)
            if not line:
                return f"[{shown} has {line_no - 1} lines; offset {offset} is past the end]"
            scanned += len(line)
            if line.endswith(b"\n"):
                line_no += 1
            if scanned > scan_cap:
                raise ToolError(
                    f"{shown}: offset {offset} lies more than {scan_cap} bytes into the file; "
                    "use the shell tool (e.g. sed -n) for such files",
                    code="file_too_large",
                )
        out = bytearray()
        n_lines = 0
        truncated = False
        while limit is None or n_lines < limit:
            room = cap - len(out)
            line = f.readline(room + 1)
            if not line:
                break
            if len(line) > room:
                out += line[:room]
                truncated = True
                break
            out += line
            if line.endswith(b"\n"):
                n_lines += 1
        more = truncated or bool(f.read(1))
    if b"\x00" in out[:8192]:
        raise ToolError(f"{shown}: looks like a binary file ({st.st_size} bytes); not shown", code="binary_file")
    raw = bytes(out)
    if truncated:
        raw = trim_incomplete_end(raw)
    text = raw.decode("utf-8", errors="replace")
    if more:
        next_line = offset + n_lines
        why = f"output cap of {cap} bytes reached" if truncated else f"limit of {limit} lines reached"
        sep = "" if text.endswith("\n") or not text else "\n"
        text += f"{sep}[... {why}; file is {st.st_size} bytes; continue with offset={next_line} ...]"
    if version is not None:
        sep = "" if text.endswith("\n") or not text else "\n"
        text += f"{sep}[version: {version}]"
    return text


class ReadFileTool(Tool):
    """Read a text file of the workspace, by lines, capped at the output cap."""

    spec = ToolSpec(
        name="read_file",
        description=(
            "Read a UTF-8 text file in the workspace. `offset` is the 1-based line to start at, `limit` "
            "the number of lines. Output is capped; a trailing note then gives the offset to continue. "
            "The last line, [version: ...], names the version of the whole file for edit_file."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "path": {"type": "string", "minLength": 1, "description": "File path, relative to the workspace."},
                "offset": {"type": "integer", "minimum": 1, "description": "First line to return (1-based)."},
                "limit": {"type": "integer", "minimum": 1, "description": "Maximum number of lines to return."},
            },
            "required": ["path"],
            "additionalProperties": False,
        },
        read_only=True,
        idempotent=True,
    )

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        path = resolve_in_workspace(ctx.workspace, args["path"])
        shown = display_path(ctx.workspace, path)
        offset = int(args.get("offset", 1))
        limit = int(args["limit"]) if "limit" in args else None
        scan_cap = _SCAN_INLINE if ctx.executor is None else _SCAN_EXECUTOR
        text = await run_io(ctx, lambda: _read_text(ctx.workspace, path, shown, offset, limit, ctx.output_cap, scan_cap,
                                                          (self.versions, ctx.workspace)))
        return ToolOutput(text)

    def __init__(self, versions: VersionStore | None = None) -> None:
        self.versions = versions if versions is not None else VERSIONS


# --------------------------------------------------------------------------------------------
# write_file


def write_atomic(root: Path, path: Path, shown: str, data: bytes) -> None:
    """Every step beneath the workspace (`beneath`): the folders are made, the temp file written
    and renamed relative to the parent folder's fd, so a folder swapped for a symlink meanwhile
    cannot send the write elsewhere."""
    try:
        try:
            fd = open_beneath(root, path, os.O_PATH)
        except FileNotFoundError:
            mode = 0o644
        else:
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ToolError(f"{shown}: is a directory", code="is_a_directory")
            mode = stat.S_IMODE(st.st_mode)
        makedirs_beneath(root, path.parent)
        with dir_beneath(root, path.parent) as parent:
            tmp = f".{path.name}.{os.urandom(4).hex()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
            try:
                with open(fd, "wb") as f:
                    f.write(data)
                    os.fchmod(f.fileno(), mode)
                # atomic; replaces a symlink itself, never follows it
                os.replace(tmp, path.name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=parent)
                raise
    except OSError as exc:
        raise os_error(exc, shown) from None


class WriteFileTool(Tool):
    """Write a whole text file of the workspace atomically, creating parent folders."""

    spec = ToolSpec(
        name="write_file",
        description=(
            "Create or overwrite a UTF-8 text file in the workspace with `content`, atomically. Parent "
            "folders are created. Returns the number of bytes written."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "path": {"type": "string", "minLength": 1, "description": "File path, relative to the workspace."},
                "content": {"type": "string", "description": "The complete new content of the file."},
            },
            "required": ["path", "content"],
            "additionalProperties": False,
        },
        read_only=False,
        idempotent=True,
    )

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        path = resolve_in_workspace(ctx.workspace, args["path"])
        shown = display_path(ctx.workspace, path)
        if shown == ".":
            raise ToolError("cannot write to the workspace folder itself; name a file", code="is_a_directory")
        data = args["content"].encode("utf-8", errors="replace")
        await run_io(ctx, lambda: write_atomic(ctx.workspace, path, shown, data))
        return ToolOutput(f"wrote {len(data)} bytes to {shown}")


# --------------------------------------------------------------------------------------------
# list_dir


def _list(root: Path, path: Path, shown: str) -> tuple[list[str], bool]:
    names: list[str] = []
    complete = True
    try:
        with dir_beneath(root, path, os.O_RDONLY) as fd, os.scandir(fd) as it:
            for entry in it:
                if len(names) >= _LIST_MAX_SCAN:
                    complete = False
                    break
                try:
                    is_dir = entry.is_dir()  # a symlink to a folder lists as a folder
                except OSError:
                    is_dir = False
                names.append(entry.name + "/" if is_dir else entry.name)
    except OSError as exc:
        raise os_error(exc, shown) from None
    names.sort()
    return names, complete


class ListDirTool(Tool):
    """List a workspace folder: sorted names, `/` after folders, capped count."""

    spec = ToolSpec(
        name="list_dir",
        description=(
            f"List a folder of the workspace: one entry per line, sorted, folders end with '/'. At most "
            f"{_LIST_MAX_ENTRIES} entries are shown."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "path": {"type": "string", "default": ".", "description": "Folder path, relative to the workspace."},
            },
            "additionalProperties": False,
        },
        read_only=True,
        idempotent=True,
    )

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        path = resolve_in_workspace(ctx.workspace, args.get("path", "."))
        shown = display_path(ctx.workspace, path)
        names, complete = await run_io(ctx, lambda: _list(ctx.workspace, path, shown))
        if not names:
            return ToolOutput(f"[{shown} is empty]")
        lines = names[:_LIST_MAX_ENTRIES]
        hidden = len(names) - len(lines)
        text = "\n".join(lines)
        if hidden or not complete:
            more = f"{hidden}{'' if complete else '+'}"
            text += f"\n[... {more} more entries not shown; use the shell tool (ls, find) to filter ...]"
        return ToolOutput(cap_text(text, ctx.output_cap))
