"""Supervision of one tool process group without a thread: exit watching, output capture, kill, reap.

The shell tool (`agent_runtime.tools.shell`) starts its child with `subprocess.Popen(...,
start_new_session=True)`, so the child leads a process group of its own (pid == pgid). This module
watches that group from the event loop:

* `ProcessGroup` learns of the leader's exit through a pidfd registered with the loop (Linux >= 5.3;
  without pidfd, by non-reaping `waitid` polls scheduled on the loop with backoff). At the exit
  notification the leader is still an unreaped zombie that owns the pgid, so the rest of the group
  (background jobs) is SIGKILLed then, before the leader is reaped: a recycled pgid is never
  signalled. `kill_and_reap()` ends the group early (timeout, cancellation), waiting a bounded
  time for the reap; the watcher still reaps a leader that takes longer.
* `read_pipe` reads the output pipe with a loop pipe transport straight into a bounded `HeadTail`
  (`agent_runtime.tools.output`): memory per call is O(output cap), whatever the command prints.
* `release_later` removes the call's pids cgroup (`agent_runtime.tools.sandbox`), retrying with
  backoff while killed processes leave it.

Why not `asyncio.create_subprocess_exec`: on Python 3.11 its default child watcher starts one thread
per child to `waitpid` it, and `Process.wait()` does not return while a background grandchild still
holds the output pipe. With thousands of agents per machine we want neither. Nothing here starts a
task: the watchers are loop callbacks (a reader on the pidfd, or `call_later` polls) that end with
the leader's exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess

from agent_runtime.tools.output import HeadTail
from agent_runtime.tools.sandbox import SandboxedCommand

__all__ = ["REAP_WAIT_S", "PipeSink", "ProcessGroup", "read_pipe", "release_later"]

log = logging.getLogger(__name__)

# Seconds to wait for a SIGKILLed process group leader to be reaped before giving up on waiting
# (the exit watcher still reaps it later).
REAP_WAIT_S = 5.0
# Without pidfd: the first and the largest delay between two `waitid` polls, seconds.
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.1


class PipeSink(asyncio.Protocol):
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


async def read_pipe(rfd: int, capture: HeadTail, closed: asyncio.Future[None]) -> asyncio.BaseTransport:
    """Read the pipe `rfd` (owned from now on) into `capture` with a loop pipe transport; `closed`
    resolves when the transport has let go of the pipe (EOF, or `transport.close()`)."""
    loop = asyncio.get_running_loop()
    pipe = open(rfd, "rb", buffering=0)  # noqa: SIM115 - owned by the transport below
    try:
        transport, _ = await loop.connect_read_pipe(lambda: PipeSink(capture, closed), pipe)
    except BaseException:
        pipe.close()
        raise
    return transport


class ProcessGroup:
    """A child started with start_new_session=True: leader pid == pgid. Exit watched via pidfd."""

    def __init__(self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.proc = proc
        self.pgid = proc.pid
        self._loop = loop
        self.exited: asyncio.Future[int] = loop.create_future()
        self._pidfd: int | None = None
        self._poll: asyncio.Handle | None = None
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: poll without reaping instead
            self._poll = loop.call_soon(self._poll_exit, _POLL_FIRST_S)
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

    def _poll_exit(self, delay: float) -> None:
        """One non-reaping `waitid` poll; the next one `delay` seconds later (doubling, capped)."""
        try:
            exited = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            exited = True  # reaped elsewhere; poll() in _on_exit copes
        if exited:
            self._poll = None
            self._on_exit()
            return
        self._poll = self._loop.call_later(delay, self._poll_exit, min(delay * 2, _POLL_MAX_S))

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
            await asyncio.wait_for(asyncio.shield(self.exited), REAP_WAIT_S)
        except TimeoutError:
            log.warning("shell process group %d did not exit %.0fs after SIGKILL", self.pgid, REAP_WAIT_S)


def release_later(sandbox: SandboxedCommand, loop: asyncio.AbstractEventLoop, delay: float = 0.02) -> None:
    """Remove the call's cgroup; killed processes may take a moment to leave it (retried with
    backoff for about a minute; a cgroup still busy then is left for `reap_orphans`)."""
    if sandbox.release():
        return
    if delay > 8.0:
        log.warning("pids cgroup %s still busy; left behind", sandbox.cgroup)
        return
    sandbox.kill_all()
    loop.call_later(delay, release_later, sandbox, loop, delay * 1.5)
