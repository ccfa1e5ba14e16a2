"""Opening paths of the workspace so that they cannot lead out of it, whatever happens meanwhile.

`workspace.resolve_in_workspace` checks a path once; the file tools then use it. Between the two a
process of the agent (its shell, or a `setsid` process that outlived a shell call where there is
no pids cgroup) can swap a folder of the path for a symlink to another agent's folder, and the
runtime, which is not confined, would follow it (tests/integration/test_tools_landlock.py
`test_file_tools_cannot_be_raced_out_of_the_workspace`: a write landed in a sibling's folder after
25 tries). Here every open starts from the workspace's fd with `openat2(RESOLVE_BENEATH |
RESOLVE_NO_MAGICLINKS)`: the kernel follows symlinks that stay inside and refuses, atomically, any
that leads out (EXDEV → `PathEscape`). Writes and folder creation then work relative to the fd of
the parent folder (`*at` calls on one name), never through a path again.

Without `openat2` (Linux < 5.6, a seccomp profile refusing it) the open is a plain `open` whose
result is checked afterwards (`/proc/self/fd`): the file is closed unread if it lies outside.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from agent_runtime.tools.base import PathEscape
from agent_runtime.tools.landlock import contains, syscall

__all__ = ["dir_beneath", "makedirs_beneath", "open_beneath"]

SYS_OPENAT2 = 437  # the same number on every architecture (unified table, Linux 5.6+)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08

_have_openat2: bool | None = None


def _escape(path: Path) -> PathEscape:
    return PathEscape(f"path {str(path)!r} is refused: a symlink on the path leads outside the workspace "
                      "(it changed while the tool ran)")


def _relative(root: str, path: Path) -> str:
    rel = os.path.relpath(path, root)
    if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
        raise _escape(path)
    return rel


def open_beneath(workspace: Path, path: Path, flags: int, mode: int = 0o600) -> int:
    """`os.open(path, flags, mode)` for a `path` inside `workspace` (as `resolve_in_workspace`
    returns it), refusing any way out (`PathEscape`); the fd is close-on-exec."""
    global _have_openat2
    root = os.path.realpath(workspace)
    rel = _relative(root, path)
    flags |= os.O_CLOEXEC
    if _have_openat2 is not False:
        rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            creates = bool(flags & os.O_CREAT) or flags & os.O_TMPFILE == os.O_TMPFILE  # else mode must be 0
            how = struct.pack("=QQQ", flags, mode if creates else 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
            err = 0
            for _ in range(16):  # EAGAIN: a rename raced the lookup; try again
                fd = int(syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_long(rootfd), rel.encode(), how, ctypes.c_size_t(len(how))))
                if fd >= 0:
                    _have_openat2 = True
                    return fd
                err = ctypes.get_errno()
                if err != errno.EAGAIN:
                    break
            if err == errno.EXDEV:
                raise _escape(path)
            if err != errno.ENOSYS and not (err == errno.EPERM and _have_openat2 is None):
                raise OSError(err, os.strerror(err), str(path))
            _have_openat2 = False
        finally:
            os.close(rootfd)
    fd = os.open(path, flags, mode)
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        where = None
    if where is None or not contains(root, where):
        os.close(fd)
        raise _escape(path)
    return fd


@contextlib.contextmanager
def dir_beneath(workspace: Path, path: Path, flags: int = os.O_PATH) -> Iterator[int]:
    """The fd of folder `path` inside `workspace` (for `*_at` calls on one name), closed after."""
    fd = open_beneath(workspace, path, flags | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def makedirs_beneath(workspace: Path, path: Path) -> None:
    """`path.mkdir(parents=True, exist_ok=True)` where every folder is made inside `workspace`
    (each `mkdir` is relative to its parent's fd, itself opened beneath the workspace)."""
    root = Path(os.path.realpath(workspace))
    rel = Path(_relative(str(root), path))
    current = root
    for part in rel.parts:
        if part == ".":
            continue
        child = current / part
        try:
            os.close(open_beneath(root, child, os.O_PATH | os.O_DIRECTORY))
        except FileNotFoundError:
            with dir_beneath(root, current) as parent, contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=parent)
        current = child
