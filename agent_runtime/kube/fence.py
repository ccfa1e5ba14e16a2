"""Single writer per agent log across shards: an exclusive `flock` on `<agent folder>/owner.lock`.

Held while the agent is active on a shard; the kernel drops it when the holder exits (kill -9
included), so the next owner never opens a log another process still writes. The new owner
retries with bounded backoff (the old one may still be hibernating the agent). The blocking
calls run on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from agent_runtime import errors, layout
from agent_runtime.backoff import Backoff


class LockTimeout(errors.Error, code="lock_timeout"):
    """Another process still holds the agent's owner lock after every retry."""


def try_lock(path: Path, owner: str) -> int | None:
    """An fd holding the exclusive lock on `path`, or None if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{owner} pid={os.getpid()}\n".encode(), 0)
    return fd


def unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _unlock_result(attempt: asyncio.Future[int | None]) -> None:
    if not attempt.cancelled() and attempt.exception() is None:
        fd = attempt.result()
        if fd is not None:
            unlock(fd)  # LOCK_UN never waits


async def acquire(folder: Path, owner: str, timeout_s: float = 30.0, first_backoff_s: float = 0.02,
                  max_backoff_s: float = 0.1) -> int:
    """Take the owner lock of `folder`, retrying for up to `timeout_s` (`first_backoff_s` apart,
    doubling to `max_backoff_s`); `LockTimeout` after that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    backoff = Backoff(first_backoff_s, max_backoff_s, jitter=False)
    tries = 0
    path = layout.owner_lock(folder)
    while True:
        attempt = asyncio.ensure_future(asyncio.to_thread(try_lock, path, owner))
        try:
            fd = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The thread runs on and may take the lock: drop it then, or it stays held for good.
            attempt.add_done_callback(_unlock_result)
            raise
        if fd is not None:
            return fd
        delay = backoff.delay(tries)
        if loop.time() + delay > deadline:
            raise LockTimeout(f"{path} is still locked by another process after {timeout_s:.0f}s")
        await asyncio.sleep(delay)
        tries += 1


async def release(fd: int) -> None:
    await asyncio.to_thread(unlock, fd)
