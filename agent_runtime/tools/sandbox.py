"""The sandbox of a tool process: resource limits and a process-count cgroup.

`SandboxedCommand` turns `/bin/sh -c COMMAND` into the argv that runs it with the limits of the
`ToolContext`, and owns the per-call cgroup (when there is one):

* **rlimits** (per process, inherited by children): address space (`memory_mb`), CPU seconds
  (`cpu_s`), open files (`open_files`). They are set by util-linux `prlimit` exec'ing the shell
  (`prlimit --as=.. --cpu=.. --nofile=.. -- /bin/sh -c ..`); without `prlimit`, by a `preexec_fn`.
* **processes** (`processes`): a pids cgroup per call (cgroup v1 `pids` hierarchy, writable: root
  in a container or a delegated hierarchy). The shell joins it before exec'ing the command, so
  every descendant is counted and a fork bomb stops at the limit; at the end of the call every
  process left in the cgroup is killed, including ones that left the process group (`setsid`).
  `RLIMIT_NPROC` is not used: it counts all processes of the runtime's user, not of the call.
  Without a usable pids cgroup the process count is not limited (the wall-clock timeout and the
  process-group kill still apply); `pids_cgroup_available()` says which case applies.
* **filesystem** (Landlock, `agent_runtime.tools.landlock`): the runtime builds the call's ruleset
  (the workspace, read-only system folders and `read_paths`, a few devices) and the exec wrapper
  `agent_runtime/tools/confine.py` (`python -I -S`) enters it before exec'ing the rest of the
  argv, so the command and all its descendants are confined. Without Landlock the call runs
  unconfined (a warning once per process), or is refused with `confinement_required`;
  `landlock_available()` says which case applies.

The argv, outermost first: the cgroup join (`sh -c 'echo $$ > cgroup.procs; exec "$@"'`: it must
write outside the Landlock policy), the confine wrapper (before the rlimits: the interpreter
needs more address space than a small `memory_mb`), `prlimit`, `/bin/sh -c COMMAND`.

The shell around it (`shell.ShellTool`) keeps the scrubbed environment, the new session, the
wall-clock timeout and the head+tail output cap.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import resource
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from agent_runtime.tools import landlock
from agent_runtime.tools.base import ToolContext, ToolError

__all__ = [
    "CONFINE",
    "SandboxedCommand",
    "confinement",
    "landlock_available",
    "pids_cgroup_available",
    "reap_orphans",
    "tmp_dir",
]

log = logging.getLogger(__name__)

PIDS_ROOT = Path("/sys/fs/cgroup/pids")
_PARENT = "agent-runtime"
_PRLIMIT = shutil.which("prlimit")
_counter = itertools.count()
_cgroup_ok: bool | None = None
CONFINE = str(Path(__file__).with_name("confine.py"))
_PYTHON = sys.executable or shutil.which("python3") or ""
_warned_unconfined = False


def landlock_available() -> bool:
    """Whether tool processes are confined by Landlock here (checked once per process)."""
    return landlock.landlock_available() and bool(_PYTHON)


def confinement() -> str:
    """One line for startup logs: how tool processes are confined on this machine."""
    if landlock_available():
        return f"Landlock ABI {landlock.abi_version()} (filesystem: workspace + read-only system folders)"
    if not landlock.landlock_available():
        reason = landlock.unavailable_reason()
    elif not _PYTHON:
        reason = "no Python interpreter to run the confine wrapper"
    else:
        reason = "turned off"
    return f"NONE: tool processes can read and write whatever this user can ({reason})"


def tmp_dir(workspace: Path) -> Path:
    """The call's TMPDIR: inside the workspace (the shared /tmp is outside the Landlock policy)."""
    return workspace / ".tmp"


def pids_cgroup_available() -> bool:
    """Whether per-call pids cgroups can be made here (checked once per process)."""
    global _cgroup_ok
    if _cgroup_ok is None:
        parent = PIDS_ROOT / _PARENT
        try:
            parent.mkdir(exist_ok=True)
            _cgroup_ok = os.access(parent / "cgroup.procs", os.W_OK) and (PIDS_ROOT / "cgroup.procs").exists()
        except OSError:
            _cgroup_ok = False
    return _cgroup_ok


def reap_orphans() -> int:
    """Kill what is left of tool calls of runtimes that died (`kill -9`, a crash) and remove
    their cgroups: the cgroup of a call is named after its runtime's pid. Returns how many
    such cgroups were found (a cgroup whose killed processes are not reaped yet stays until the
    next call of this). Called once per process, when the shell tool is created."""
    if not pids_cgroup_available():
        return 0
    removed = 0
    for path in (PIDS_ROOT / _PARENT).glob("call-*-*"):
        try:
            owner = int(path.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if owner == os.getpid() or _alive(owner):
            continue
        leftover = _Leftover(path)
        leftover.kill_all()
        leftover.release()
        removed += 1
    if removed:
        log.warning("killed the processes of %d tool calls left by runtimes that died", removed)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SandboxedCommand:
    """The argv (and `preexec_fn`, if any) that runs `command` within `ctx`'s limits."""

    def __init__(self, command: str, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.cgroup: Path | None = None
        self.ruleset: int | None = None
        argv = ["/bin/sh", "-c", command]
        limits = self._rlimits()
        self.preexec_fn: Callable[[], None] | None = None
        if limits and _PRLIMIT:
            flags = {resource.RLIMIT_AS: "--as", resource.RLIMIT_CPU: "--cpu", resource.RLIMIT_NOFILE: "--nofile"}
            argv = [_PRLIMIT, *(f"{flags[r]}={v}" for r, v in limits), "--", *argv]
        elif limits:
            self.preexec_fn = _setter(limits)
        self.ruleset = _ruleset(ctx)
        if self.ruleset is not None:
            argv = [_PYTHON, "-I", "-S", CONFINE, str(self.ruleset), *argv]
        if ctx.processes is not None and pids_cgroup_available():
            self.cgroup = self._make_cgroup(ctx.processes)
            if self.cgroup is not None:
                # Join the cgroup first, then become the command: every descendant is counted.
                argv = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.cgroup), *argv]
        self.argv = argv

    @property
    def pass_fds(self) -> tuple[int, ...]:
        """The fds the tool process must inherit (the ruleset, for the confine wrapper)."""
        return () if self.ruleset is None else (self.ruleset,)

    def started(self) -> None:
        """The process was spawned (or could not be): the runtime's copy of the ruleset fd goes."""
        if self.ruleset is not None:
            os.close(self.ruleset)
            self.ruleset = None

    def _rlimits(self) -> list[tuple[int, int]]:
        ctx = self.ctx
        out: list[tuple[int, int]] = []
        if ctx.memory_mb is not None:
            out.append((resource.RLIMIT_AS, ctx.memory_mb * 1024 * 1024))
        if ctx.cpu_s is not None:
            out.append((resource.RLIMIT_CPU, ctx.cpu_s))
        if ctx.open_files is not None:
            out.append((resource.RLIMIT_NOFILE, ctx.open_files))
        return out

    @staticmethod
    def _make_cgroup(limit: int) -> Path | None:
        path = PIDS_ROOT / _PARENT / f"call-{os.getpid()}-{next(_counter)}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(limit))
        except OSError as exc:
            log.warning("could not create pids cgroup %s: %s", path, exc)
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return path

    def members(self) -> list[int]:
        if self.cgroup is None:
            return []
        try:
            return [int(p) for p in (self.cgroup / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill_all(self) -> None:
        """SIGKILL every process left in the call's cgroup (they may have left its process group)."""
        for _ in range(50):
            pids = self.members()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def release(self) -> bool:
        """Remove the cgroup once it is empty; True when gone (or there was none)."""
        if self.cgroup is None:
            return True
        try:
            self.cgroup.rmdir()
        except OSError:
            return False
        self.cgroup = None
        return True


def _ruleset(ctx: ToolContext) -> int | None:
    """The Landlock ruleset fd of a call, or None to run it unconfined (no Landlock here)."""
    global _warned_unconfined
    if not landlock_available():
        if ctx.confinement_required:
            raise ToolError(
                f"tool processes must be confined but cannot be here: {confinement()}", code="unconfined"
            )
        if not _warned_unconfined:
            _warned_unconfined = True
            log.warning("shell tool calls run unconfined: %s", confinement())
        return None
    workspace = os.path.realpath(ctx.workspace)
    rules = landlock.policy(workspace, landlock.default_read_paths(ctx.read_paths))
    try:
        return landlock.build_ruleset(rules, landlock.abi_version())
    except OSError as exc:
        log.error("could not build the Landlock ruleset of a tool call in %s: %s", workspace, exc)
        raise ToolError(f"the command was not run: could not confine it ({exc.strerror})", code="confinement_failed") from None


def _setter(limits: list[tuple[int, int]]) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        for res, value in limits:
            resource.setrlimit(res, (value, value))

    return apply


class _Leftover(SandboxedCommand):
    """The cgroup of a call whose runtime died: only `kill_all` and `release`."""

    def __init__(self, path: Path) -> None:  # noqa: D107 - no command to build
        self.cgroup = path
