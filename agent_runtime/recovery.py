"""`agentctl recover`: bring a quarantined agent back from a damaged event log.

The host quarantines an agent whose log SQLite reports damaged (`LogCorrupt`; see `host`). Its
recovery runs in the server that holds it, not offline on the data folder: that server owns the
agent's handle, its clients and (in Kubernetes) its folder's owner lock, so nothing can wake the
agent while its files are swapped, and the other agents of the shard keep serving meanwhile.

`recover` salvages the log into a new one (`eventlog.salvage`: events in seq order up to the first
unreadable one, the old file kept beside it as `events.db.corrupt-<UTC stamp>`) and wakes the
agent on it. A healthy agent gets a full `PRAGMA quick_check` first (a damage not yet met by a
read is found and recovered); if it passes, `NotCorrupt` and nothing is touched.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timezone
from typing import Any

from agent_runtime import errors, layout
from agent_runtime.eventlog.base import LogCorrupt
from agent_runtime.eventlog.salvage import recover_log
from agent_runtime.eventlog.sqlite import SqliteEventLog
from agent_runtime.host import AgentNotFound, Host

log = logging.getLogger(__name__)


class NotCorrupt(errors.Error, code="not_corrupt"):
    """`recover` of an agent whose log is healthy: nothing to salvage."""


async def recover(host: Host, key: str) -> dict[str, Any]:
    """Salvage agent `key`'s damaged log and wake the agent on the new one; what was kept and lost."""
    handle = host.get(key)
    if handle.failure is None:
        with contextlib.suppress(LogCorrupt):  # found now: the log's callback quarantines it
            awake = await host.wake(key)
            if isinstance(awake.log, SqliteEventLog):
                await awake.log.check()
        if handle.failure is None:
            raise NotCorrupt(f"the event log of agent {key} passes quick_check: nothing to recover")
    async with handle.lock:
        if host.handles.get(key) is not handle:
            raise AgentNotFound(key)
        if handle.failure is None:  # a concurrent recover did it
            raise NotCorrupt(f"agent {key} was recovered meanwhile: nothing to recover")
        actor = handle.actor
        if actor is not None:  # stopped by the quarantine: wait until its log is closed
            await actor.closed.wait()
        db = layout.event_log(handle.folder)
        now = datetime.now(timezone.utc)
        salvage = await host.executor.run(lambda: recover_log(db, now))
        log.warning("agent %s recovered: %s", key, salvage.to_dict())
        handle.failure = None
        handle.summary = {}
    await host.wake(key)  # replays the salvaged events; a turn they leave open resumes
    return {"agent": key, **salvage.to_dict(), "phase": handle.phase()}
