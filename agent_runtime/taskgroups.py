"""Running a set of tasks under one TaskGroup until told to stop.

asyncio's TaskGroup has no "cancel the group": the usual stand-in is a list of tasks cancelled by
hand in a `finally`. `run_until(stop, *jobs)` runs the jobs as tasks of one TaskGroup until the
`stop` event is set, then cancels every one of them and waits for them, so no task outlives the
call and there is no cancel bookkeeping at the call site. A job that fails cancels the others and
its error propagates (an ExceptionGroup, as from any TaskGroup).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class _Stopped(Exception):
    """Raised inside the group to cancel its tasks (never escapes `run_until`)."""


async def run_until(stop: asyncio.Event, *jobs: Coroutine[Any, Any, object]) -> None:
    """Run `jobs` (each a task named after its coroutine) until `stop` is set, then cancel them."""
    try:
        async with asyncio.TaskGroup() as tg:
            for job in jobs:
                tg.create_task(job, name=getattr(job, "__qualname__", None))
            await stop.wait()
            raise _Stopped
    except* _Stopped:
        pass
