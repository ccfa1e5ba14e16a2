"""The `shell` tool: `/bin/sh -c COMMAND` in the agent's workspace, confined, capped and group-killed.

The command runs with the workspace as cwd and HOME, a scrubbed environment (`scrubbed_env`: PATH,
HOME, LANG, TMPDIR only; no secret of the runtime is inherited), stdin from /dev/null, stdout and
stderr merged into one pipe, in a new session (its own process group), inside the sandbox of
`agent_runtime.tools.sandbox` (resource limits, a pids cgroup; Landlock: the filesystem outside
the workspace is read-only system folders or denied).

The child is started with `subprocess.Popen` and supervised without a thread by
`agent_runtime.tools.process`: its exit is watched from the event loop, the output pipe is read into
a bounded `HeadTail`, and when the shell exits the rest of its process group (background jobs) is
killed before the shell is reaped. On timeout or cancellation the whole group is killed with SIGKILL
and reaped before the call returns or re-raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from agent_runtime.tools.base import Tool, ToolArgumentsInvalid, ToolContext, ToolError, ToolOutput, ToolSpec, ToolTimeout
from agent_runtime.tools.output import HeadTail
from agent_runtime.tools.process import ProcessGroup, read_pipe, release_later
from agent_runtime.tools.sandbox import SandboxedCommand, confinement, reap_orphans, tmp_dir

__all__ = ["DEFAULT_PATH", "ShellTool", "scrubbed_env"]

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def scrubbed_env(workspace: Path) -> dict[str, str]:
    """The whole environment of a shell call: PATH, HOME=workspace, LANG, TMPDIR=workspace/.tmp.
    Nothing else leaks."""
    return {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": str(workspace),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp_dir(workspace)),
    }


def _exit_note(rc: int) -> str:
    """The last line of a shell result: the exit code, and the signal that killed the shell."""
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
            release_later(sandbox, loop)
            raise ToolArgumentsInvalid(f"command cannot be run: {exc}") from None
        except OSError as exc:
            os.close(rfd)
            release_later(sandbox, loop)
            raise ToolError(f"could not start /bin/sh: {exc}", code="spawn_failed") from None
        finally:
            os.close(wfd)
            sandbox.started()

        group = ProcessGroup(proc, loop)
        pipe_closed: asyncio.Future[None] = loop.create_future()
        transport: asyncio.BaseTransport | None = None
        timed_out = False
        detached_holder = False
        try:
            transport = await read_pipe(rfd, capture, pipe_closed)
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
            release_later(sandbox, loop)
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
