"""The four built-in tools: `shell`, `read_file`, `write_file`, `list_dir`.

Each is confined to the agent's workspace folder (`ToolContext.workspace`):

* file tools resolve every path with `agent_runtime.tools.workspace.resolve_in_workspace` first;
* `shell` runs `/bin/sh -c COMMAND` with the workspace as cwd and HOME, a scrubbed environment
  (PATH, HOME, LANG, TMPDIR only: no secret of the runtime is inherited), stdin from /dev/null,
  stdout and stderr merged into one pipe, in a new session (its own process group), inside the
  sandbox of `agent_runtime.tools.sandbox` (resource limits; Landlock: the filesystem outside the
  workspace is read-only system folders or denied).

Why the shell is not spawned with `asyncio.create_subprocess_exec`: on Python 3.11 asyncio's
default child watcher starts one thread per child to `waitpid` it, and `Process.wait()` does not
return while a background grandchild still holds the output pipe. With thousands of agents per
machine we want neither. So the shell is started with `subprocess.Popen` (the same fork/exec asyncio
uses underneath), its exit is watched through a pidfd registered with the event loop (no thread),
and the output pipe is read by a loop pipe transport straight into a bounded `HeadTail` buffer
(`agent_runtime.tools.output`). When the shell exits, the rest of its process group (background
jobs) is killed before the shell is reaped, so the pgid cannot be recycled under us. On timeout or
cancellation the whole group is killed with SIGKILL and reaped before the call returns or
re-raises.

File IO is small and bounded (reads stop at the output cap, directory listings at a fixed count),
so it runs inline unless the context provides a small shared executor.

The registry (`agent_runtime.tools.registry`) validates arguments against each `spec.input_schema`
before `run` is called, and turns outputs and `ToolError`s into `ToolResult`s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import io
import logging
import os
import signal
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from agent_runtime import native
from agent_runtime.tools.base import (
    Tool,
    ToolArgumentsInvalid,
    ToolContext,
    ToolError,
    ToolOutput,
    ToolSpec,
    ToolTimeout,
)
from agent_runtime.tools.output import HeadTail, cap_text, trim_incomplete_end
from agent_runtime.tools.sandbox import SandboxedCommand, confinement, reap_orphans, tmp_dir
from agent_runtime.tools.beneath import dir_beneath, makedirs_beneath, open_beneath
from agent_runtime.tools.workspace import display_path, resolve_in_workspace

__all__ = [
    "BUILTIN_TOOLS",
    "EditFileTool",
    "ListDirTool",
    "ReadFileTool",
    "ShellTool",
    "VersionStore",
    "WriteFileTool",
    "file_version",
    "scrubbed_env",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Seconds to wait for a SIGKILLed process group leader to be reaped before giving up on waiting
# (the pidfd watcher still reaps it later).
_REAP_WAIT_S = 5.0
# Upper bound of bytes `read_file` scans to reach `offset` (inline / with an executor).
_SCAN_INLINE = 4 * 1024 * 1024
_SCAN_EXECUTOR = 64 * 1024 * 1024
# Files up to this size get a version (read whole, hashed, remembered) and can be edited.
_VERSION_MAX = 4 * 1024 * 1024
_LIST_MAX_ENTRIES = 1000
_LIST_MAX_SCAN = 100_000


def scrubbed_env(workspace: Path) -> dict[str, str]:
    """The whole environment of a shell call: PATH, HOME=workspace, LANG, TMPDIR=workspace/.tmp.
    Nothing else leaks."""
    return {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": str(workspace),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp_dir(workspace)),
    }


def _os_error(exc: OSError, shown: str) -> ToolError:
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


async def _run_io(ctx: ToolContext, fn: Callable[[], T]) -> T:
    """Run bounded blocking file IO: on the context's executor if it has one, else inline."""
    if ctx.executor is None:
        return fn()
    return await asyncio.get_running_loop().run_in_executor(ctx.executor, fn)


# --------------------------------------------------------------------------------------------
# shell


class _PipeSink(asyncio.Protocol):
    """Feeds everything read from the output pipe into a HeadTail; resolves `closed` at the end."""

    def __init__(self, capture: HeadTail, closed: asyncio.Future[None]) -> None:
        self._capture = capture
        self._closed = closed

    def data_received(self, data: bytes) -> None:
        self._capture.feed(data)

    def eof_received(self) -> bool:
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


class _ProcessGroup:
    """A child started with start_new_session=True: leader pid == pgid. Exit watched via pidfd."""

    def __init__(self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.proc = proc
        self.pgid = proc.pid
        self._loop = loop
        self.exited: asyncio.Future[int] = loop.create_future()
        self._pidfd: int | None = None
        self._poller: asyncio.Task[None] | None = None
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: poll without reaping instead
            self._poller = loop.create_task(self._poll_exit())
        else:
            loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        # The leader has exited but is not reaped yet: it is a zombie that still owns the pgid, so
        # killing the group now cannot hit a recycled pgid. Background jobs die with it.
        self.kill()
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        rc = self.proc.poll()  # reaps the leader
        if rc is None:  # cannot happen after an exit notification; be defensive
            rc = self.proc.wait()
        if not self.exited.done():
            self.exited.set_result(rc)

    async def _poll_exit(self) -> None:
        delay = 0.005
        while True:
            try:
                exited = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                exited = True  # reaped elsewhere; poll() below copes
            if exited:
                self._on_exit()
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    def kill(self) -> None:
        """SIGKILL the whole group, unless the leader is already reaped (the pgid may be reused)."""
        if self.exited.done():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)

    async def kill_and_reap(self) -> None:
        """Kill the group and wait (bounded, shielded) for the leader to be reaped."""
        self.kill()
        if self.exited.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), _REAP_WAIT_S)
        except TimeoutError:
            log.warning("shell process group %d did not exit %.0fs after SIGKILL", self.pgid, _REAP_WAIT_S)


def _release_later(sandbox: SandboxedCommand, loop: asyncio.AbstractEventLoop, delay: float = 0.02) -> None:
    """Remove the call's cgroup; killed processes may take a moment to leave it (retried with
    backoff for about a minute; a cgroup still busy then is left for `reap_orphans`)."""
    if sandbox.release():
        return
    if delay > 8.0:
        log.warning("pids cgroup %s still busy; left behind", sandbox.cgroup)
        return
    sandbox.kill_all()
    loop.call_later(delay, _release_later, sandbox, loop, delay * 1.5)


def _exit_note(rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"[exit code {rc} (killed by {name})]"
    return f"[exit code {rc}]"


class ShellTool(Tool):
    """`/bin/sh -c COMMAND` in the workspace, output capped, wall-clock limited, group-killed."""

    spec = ToolSpec(
        name="shell",
        description=(
            "Run a shell command with /bin/sh -c in the workspace folder (also HOME). stdout and "
            "stderr are merged; long output keeps its head and tail. The exit code is appended; a "
            "nonzero exit is an error. Background processes do not outlive the call. The environment "
            "holds only PATH, HOME, LANG and TMPDIR (a folder in the workspace); stdin is empty. Files "
            "outside the workspace are read-only system folders or not accessible (Permission denied)."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "command": {"type": "string", "minLength": 1, "description": "The command line for /bin/sh -c."},
                "timeout_s": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": "Wall-clock limit in seconds; the agent's own limit caps it.",
                },
            },
            "required": ["command"],
            "additionalProperties": False,
        },
        read_only=False,
        idempotent=False,
    )

    _reaped = False

    def __init__(self) -> None:
        if not ShellTool._reaped:  # once per process: processes of runtimes that died
            ShellTool._reaped = True
            reap_orphans()
            log.info("shell tool confinement: %s", confinement())

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        command: str = args["command"]
        timeout = min(float(args.get("timeout_s", ctx.timeout_s)), ctx.timeout_s)
        loop = asyncio.get_running_loop()
        workspace = Path(os.path.realpath(ctx.workspace))
        if not workspace.is_dir():
            raise ToolError(f"the workspace folder {str(workspace)!r} does not exist", code="workspace_missing")

        capture = HeadTail(ctx.output_cap)
        if "\x00" in command:
            raise ToolArgumentsInvalid("command cannot be run: embedded null byte")
        with contextlib.suppress(OSError):  # a file named .tmp: TMPDIR is unusable, the call still runs
            tmp_dir(workspace).mkdir(exist_ok=True)
        sandbox = SandboxedCommand(command, ctx)
        rfd, wfd = os.pipe()  # both ends close-on-exec: no other agent's shell inherits them
        try:
            proc = subprocess.Popen(
                sandbox.argv,
                stdin=subprocess.DEVNULL,
                stdout=wfd,
                stderr=subprocess.STDOUT,
                cwd=workspace,
                env=scrubbed_env(workspace),
                start_new_session=True,
                close_fds=True,
                preexec_fn=sandbox.preexec_fn,  # noqa: PLW1509 - only without prlimit(1)
                pass_fds=sandbox.pass_fds,
            )
        except ValueError as exc:  # e.g. an embedded NUL byte
            os.close(rfd)
            _release_later(sandbox, loop)
            raise ToolArgumentsInvalid(f"command cannot be run: {exc}") from None
        except OSError as exc:
            os.close(rfd)
            _release_later(sandbox, loop)
            raise ToolError(f"could not start /bin/sh: {exc}", code="spawn_failed") from None
        finally:
            os.close(wfd)
            sandbox.started()

        group = _ProcessGroup(proc, loop)
        pipe_closed: asyncio.Future[None] = loop.create_future()
        transport: asyncio.BaseTransport | None = None
        timed_out = False
        detached_holder = False
        try:
            pipe = open(rfd, "rb", buffering=0)  # noqa: SIM115 - owned by the transport below
            try:
                transport, _ = await loop.connect_read_pipe(lambda: _PipeSink(capture, pipe_closed), pipe)
            except BaseException:
                pipe.close()
                raise
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(group.exited)
                    # The group is dead now; drain what is left in the pipe until EOF.
                    await asyncio.shield(pipe_closed)
            except TimeoutError:
                if group.exited.done():
                    detached_holder = True  # a process outside the group still holds the pipe
                else:
                    timed_out = True
        finally:
            # Runs on success, timeout and cancellation alike: nothing of the call survives it.
            if transport is not None:
                transport.close()
            sandbox.kill_all()  # what left the process group (setsid) but not the cgroup
            await group.kill_and_reap()
            sandbox.kill_all()
            _release_later(sandbox, loop)
            if transport is not None and not pipe_closed.done():
                await asyncio.wait([pipe_closed], timeout=1.0)  # let the transport release the fd

        text = capture.render()
        if timed_out:
            so_far = f"Output so far:\n{text}" if text else "It printed nothing."
            raise ToolTimeout(f"command timed out after {timeout:g} s; its process group was killed. {so_far}")
        rc = group.exited.result()
        parts = [text]
        if text and not text.endswith("\n"):
            parts.append("\n")
        if detached_holder:
            parts.append("[output stopped at the time limit: a process outside the group kept the pipe open]\n")
        parts.append(_exit_note(rc))
        return ToolOutput("".join(parts), is_error=rc != 0)


# --------------------------------------------------------------------------------------------
# read_file


def file_version(raw: bytes) -> str:
    """The version of a file's content, as `read_file` reports it and `edit_file` expects it."""
    return "v-" + hashlib.sha256(raw).hexdigest()[:16]


class VersionStore:
    """Recently read or written file contents by workspace and version (content-addressed within
    a workspace, one byte bound for all), the bases of `edit_file`'s three-way merges. Shared by
    every agent of the process, but a version is only known in the workspace that read or wrote
    it: another agent naming it gets `stale_version`, never a merge against (or a probe of)
    content it did not see. In memory: after a restart an old version is unknown and the edit
    asks the model to read the file again."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()
        self._bytes = 0

    def put(self, workspace: Path, version: str, text: str) -> None:
        key = (str(workspace), version)
        if key in self._items:
            self._items.move_to_end(key)
            return
        size = len(text)
        if size > self.max_bytes:
            return
        self._items[key] = text
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old)

    def get(self, workspace: Path, version: str) -> str | None:
        key = (str(workspace), version)
        text = self._items.get(key)
        if text is not None:
            self._items.move_to_end(key)
        return text


VERSIONS = VersionStore()
"""The process-wide store the built-in `read_file` and `edit_file` share."""


def _open_regular(root: Path, path: Path, shown: str) -> io.BufferedReader:
    """Open a regular file for reading; `not_a_file` for anything else. Opened non-blocking, so a
    FIFO (the agent's shell can make one) is refused at once instead of blocking the thread (or the
    loop) in `open` until a writer comes."""
    try:
        fd = open_beneath(root, path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise _os_error(exc, shown) from None
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


def _read_text(
    root: Path, path: Path, shown: str, offset: int, limit: int | None, cap: int, scan_cap: int,
    versions: tuple[VersionStore, Path] | None = None,
) -> str:
    """Lines [offset, offset+limit) of a text file, at most `cap` bytes; notes say how to go on.
    A file of at most 4 MiB is read whole, and its version is noted at the end."""
    f = _open_regular(root, path, shown)
    version = None
    with f:
        st = os.fstat(f.fileno())
        if versions is not None and st.st_size <= _VERSION_MAX:
            whole = f.read(_VERSION_MAX + 1)
            if len(whole) <= _VERSION_MAX and b"\x00" not in whole[:8192]:
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
        text = await _run_io(ctx, lambda: _read_text(ctx.workspace, path, shown, offset, limit, ctx.output_cap, scan_cap,
                                                          (self.versions, ctx.workspace)))
        return ToolOutput(text)

    def __init__(self, versions: VersionStore | None = None) -> None:
        self.versions = versions if versions is not None else VERSIONS


# --------------------------------------------------------------------------------------------
# write_file


def _write_atomic(root: Path, path: Path, shown: str, data: bytes) -> None:
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
        raise _os_error(exc, shown) from None


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
        await _run_io(ctx, lambda: _write_atomic(ctx.workspace, path, shown, data))
        return ToolOutput(f"wrote {len(data)} bytes to {shown}")


# --------------------------------------------------------------------------------------------
# edit_file


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
        with _open_regular(workspace, path, shown) as f:
            raw = f.read(_VERSION_MAX + 1)
    except OSError as exc:
        raise _os_error(exc, shown) from None
    if len(raw) > _VERSION_MAX:
        raise ToolError(f"{shown}: larger than {_VERSION_MAX} bytes; use write_file or the shell", code="file_too_large")
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
    _write_atomic(workspace, path, shown, data)
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
        text = await _run_io(ctx, lambda: _edit(path, shown, args["version"], old, new, replace_all, self.versions,
                                                     ctx.workspace))
        return ToolOutput(cap_text(text, ctx.output_cap))


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
        raise _os_error(exc, shown) from None
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
        names, complete = await _run_io(ctx, lambda: _list(ctx.workspace, path, shown))
        if not names:
            return ToolOutput(f"[{shown} is empty]")
        lines = names[:_LIST_MAX_ENTRIES]
        hidden = len(names) - len(lines)
        text = "\n".join(lines)
        if hidden or not complete:
            more = f"{hidden}{'' if complete else '+'}"
            text += f"\n[... {more} more entries not shown; use the shell tool (ls, find) to filter ...]"
        return ToolOutput(cap_text(text, ctx.output_cap))


BUILTIN_TOOLS: tuple[type[Tool], ...] = (ShellTool, ReadFileTool, WriteFileTool, ListDirTool, EditFileTool)
