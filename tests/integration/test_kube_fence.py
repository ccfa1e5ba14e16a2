"""The owner lock between two processes: one writer per agent log, released by kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from agent_runtime import layout
from agent_runtime.kube import fence

HOLDER = """
import sys, time
from pathlib import Path
from agent_runtime.kube.fence import try_lock
fd = try_lock(Path(sys.argv[1]) / "owner.lock", "other-shard")
print("locked" if fd is not None else "busy", flush=True)
time.sleep(600)
"""


async def _holder(folder: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, str(folder), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"locked"
    return proc


async def test_second_owner_waits_then_gets_the_lock_after_kill_9(tmp_path: Path) -> None:
    folder = tmp_path / "agents" / "ns" / "a"
    proc = await _holder(folder)
    try:
        with pytest.raises(fence.LockTimeout, match="still locked"):
            await fence.acquire(folder, "me", timeout_s=0.3)
        waiter = asyncio.create_task(fence.acquire(folder, "me", timeout_s=20))
        await asyncio.sleep(0.2)
        assert not waiter.done()  # still retrying (bounded backoff)
        os.kill(proc.pid, signal.SIGKILL)
        fd = await asyncio.wait_for(waiter, 20)
        assert (folder / "owner.lock").read_text().startswith("me pid=")
        await fence.release(fd)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    fd = await fence.acquire(folder, "one", timeout_s=1)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, str(folder), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"busy"
    proc.kill()
    await proc.wait()
    await fence.release(fd)
    proc2 = await _holder(folder)  # now another process gets it
    proc2.kill()
    await proc2.wait()


async def test_cancelled_acquire_does_not_leave_the_lock_held(tmp_path: Path) -> None:
    """A shard stopping (or a worker cancelled) while `acquire` waits on its worker thread: the
    thread may still take the lock; it must not stay held by an fd nobody knows about."""
    for _ in range(20):
        task = asyncio.create_task(fence.acquire(tmp_path, "shard-a"))
        await asyncio.sleep(0)  # the flock call is now on the worker thread
        task.cancel()
        try:
            fd = await task
        except asyncio.CancelledError:
            pass
        else:
            await fence.release(fd)
        await asyncio.sleep(0.05)  # let the worker thread finish
        other = fence.try_lock(layout.owner_lock(tmp_path), "shard-b")
        assert other is not None, "the cancelled acquire left the owner lock held"
        fence.unlock(other)
