"""What deleting an Agent does to its log folder on the pool's shared volume (blocking file IO:
the owning shard, or the operator when it mounts the volume (`--data`), runs these in a worker
thread, never on the event loop).

The folder (`agent_runtime.layout`: `<data>/agents/<ns>/<name>/`) is touched only under an
exclusive flock on its owner.lock, which the owning shard holds while the agent is active and
drops when it releases the agent (on seeing the deletion timestamp it releases the agent, then
disposes of the folder itself; kill -9 drops the lock too). `archive` renames the folder to
`<data>/archive/<ns>/<name>-<UTC stamp>/`; `remove` deletes it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from agent_runtime import errors, layout
from agent_runtime.backoff import Backoff

LOCK_POLL = Backoff(first_s=0.02, cap_s=0.5, jitter=False)  # waiting for the owner lock: 20 ms doubling to 0.5 s



class FolderBusy(errors.Error, code="folder_busy"):
    """owner.lock stayed held (a shard still has the agent open); retry later."""


def dispose(data: Path, namespace: str, name: str, mode: str, *, lock_wait_s: float = 10.0,
            now: datetime | None = None) -> str:
    """Archive or remove the agent's folder; returns what happened (for the log and the event)."""
    folder = layout.agent_folder(data, namespace, name)
    if not folder.exists():
        return f"no folder at {folder}"
    lock_path = layout.owner_lock(folder)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + lock_wait_s
        attempt = 0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise FolderBusy(f"{lock_path} still held after {lock_wait_s}s") from None
                time.sleep(LOCK_POLL.delay(attempt))
                attempt += 1
        if mode == "remove":
            shutil.rmtree(folder)
            return f"removed {folder}"
        target = layout.archive_folder(data, namespace, name, now or datetime.now(timezone.utc))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, target)
        return f"archived {folder} to {target}"
    finally:
        os.close(fd)
